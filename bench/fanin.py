"""Peak memory of a fan-in of large outputs (run by hand; prints, asserts nothing).

    python bench/fanin.py [--parents 50] [--megabytes 10]

Each scenario runs embedded (SQLite, local blobs, in-process worker threads) in its own
process, so its peak RSS is its own: N parents each return the same large value, into
one join (``sinks=no``) or as the execution's ``{final_id: output}`` (``sinks=yes``).
Before composition from references, the sinks case encoded N x the value in one worker
and failed over SPANE_MAX_PAYLOAD_BYTES.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def scenario(parents: int, megabytes: int, sinks: bool) -> dict[str, Any]:
    import spane
    from spane.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="spane-fanin-"))
    spane.configure(
        **vars(Settings(database_url=f"sqlite:///{folder / 'db'}", blob_url=str(folder / "blobs")))
    )
    value = ["x" * 1000] * (megabytes * 1000)
    nodes: list[dict[str, Any]] = [
        {"id": f"p{i}", "type": "transform", "config": {"expression": "@"}} for i in range(parents)
    ]
    if not sinks:
        after = [f"p{i}" for i in range(parents)]
        expression = "length(keys(@))"
        nodes.append(
            {
                "id": "join",
                "type": "transform",
                "after": after,
                "config": {"expression": expression},
            }
        )
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    ex = spane.run({"id": "fan-in", "nodes": nodes}, value, timeout=600)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "status": ex.status,
        "error": ex.error,
        "seconds": round(elapsed, 2),
        "rss_before_mb": round(baseline / 1024),
        "peak_rss_mb": round(peak / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parents", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=10)
    parser.add_argument("--one", choices=["sinks", "join"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = scenario(args.parents, args.megabytes, args.one == "sinks")
        print(json.dumps(result))
        return
    for kind in ("sinks", "join"):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--parents",
                str(args.parents),
                "--megabytes",
                str(args.megabytes),
                "--one",
                kind,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{args.parents} parents x {args.megabytes} MB into {kind}: {result}")


if __name__ == "__main__":
    main()
