"""Time definition validation of wide graphs (run by hand; prints, asserts nothing).

    python bench/validation.py [--parents 100000]

A join of N parents, and a fan-out of one node into N children, each checked the way
``register_workflow`` checks it. Validation is linear in the size of the definition.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import spane.builtins  # noqa: F401  (registers noop)
from spane import validation


def join(width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": f"p{i}", "type": "noop"} for i in range(width)]
    nodes.append({"id": "join", "type": "noop", "after": [f"p{i}" for i in range(width)]})
    return {"id": "wide-join", "nodes": nodes}


def fan_out(width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "root", "type": "noop"}]
    nodes += [{"id": f"c{i}", "type": "noop", "after": ["root"]} for i in range(width)]
    return {"id": "wide-fan-out", "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for name, build in (("join", join), ("fan-out", fan_out)):
        definition = build(args.parents)
        for _ in range(args.runs):
            wall, cpu = time.perf_counter(), time.process_time()
            validation.load_definition(definition)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name} of {args.parents}: {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
