"""Fan-in of large outputs is composed from references: a join reads one shared value,
and an execution's ``{final_id: output}`` is never encoded whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import spane
from spane import runtime as runtime_module
from spane.runtime import Runtime
from spane.store.schema import executions
from tests.conftest import embedded_settings

PARENTS = 20
LARGE = ["x" * 1000] * 1000  # about 1 MB encoded


def fan_in(with_join: bool) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": f"p{i}", "type": "transform", "config": {"expression": "@"}} for i in range(PARENTS)
    ]
    if with_join:
        after = [f"p{i}" for i in range(PARENTS)]
        nodes.append({"id": "join", "type": "distinct_inputs", "after": after})
    return {"id": "fan-in-join" if with_join else "fan-in-sinks", "nodes": nodes}


def stored_output(runtime: Runtime, execution_id: str) -> str:
    with runtime.engine.connect() as conn:
        text = conn.execute(
            select(executions.c.output).where(executions.c.id == execution_id)
        ).scalar_one()
    return str(text)


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[Runtime]:
    """An embedded runtime whose payload limit (3 MB) is far below the fan-in's 20 MB."""
    import tests.nodes  # noqa: F401

    runtime = Runtime(embedded_settings(tmp_path, max_payload_bytes=3_000_000))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


def test_large_fan_in_completes_under_a_tight_payload_limit(tight: Runtime) -> None:
    ex = spane.run(fan_in(with_join=False), LARGE, timeout=120)
    assert ex.status == "completed", ex.error
    assert set(ex.output) == {f"p{i}" for i in range(PARENTS)}
    assert all(value is ex.output["p0"] for value in ex.output.values())  # held once
    assert ex.output["p0"] == LARGE
    stored = stored_output(tight, ex.id)
    assert stored.startswith("&") and len(stored) < 5000  # references, not 20 MB

    joined = spane.run(fan_in(with_join=True), LARGE, timeout=120)
    assert joined.status == "completed", joined.error
    assert joined.output == 1  # the join's 20 parents gave it one shared object


def test_a_child_whose_output_is_a_large_fan_in_completes_its_parent(tight: Runtime) -> None:
    spane.register_workflow(fan_in(with_join=False))
    parent = spane.run(
        {
            "id": "calls-fan-in",
            "nodes": [
                {"id": "call", "type": "subworkflow", "config": {"workflow": "fan-in-sinks"}},
                {"id": "count", "type": "distinct_inputs", "after": ["call"]},
            ],
        },
        LARGE,
        timeout=120,
    )
    assert parent.status == "completed", parent.error
    assert parent.output == 1  # the 20 members the child returned are one shared object


def test_large_fan_in_on_every_backend(backend: Runtime) -> None:
    for with_join in (False, True):
        ex = spane.run(fan_in(with_join), LARGE, timeout=180)
        assert ex.status == "completed", ex.error
        if with_join:
            assert ex.output == 1
        else:
            assert len(ex.output) == PARENTS and ex.output["p3"] == LARGE
            stored = stored_output(backend, ex.id)
            assert stored.startswith("&") and len(stored) < 5000


def test_a_node_output_over_the_limit_does_not_say_pass_a_smaller_value(
    tight: Runtime,
) -> None:
    ex = spane.run(
        {
            "id": "too-big",
            "nodes": [
                {
                    "id": "grow",
                    "type": "transform",
                    "config": {"expression": "[@, @, @, @]"},
                }
            ],
        },
        LARGE,
        timeout=60,
    )
    assert ex.status == "failed"
    error = ex.nodes["grow"].error or ""
    assert "SPANE_MAX_PAYLOAD_BYTES" in error and "return less" in error
    assert "pass a smaller" not in error
    with pytest.raises(spane.InputError, match="pass a smaller input"):
        spane.enqueue_workflow("too-big", [LARGE, LARGE, LARGE, LARGE])


def test_retention_keeps_blobs_of_composed_outputs(tight: Runtime) -> None:
    ex = spane.run(fan_in(with_join=False), LARGE, timeout=120)
    refs = tight.store.referenced_blobs()
    stored = stored_output(tight, ex.id)
    assert set(tight.payloads.refs(stored)) <= refs and refs
