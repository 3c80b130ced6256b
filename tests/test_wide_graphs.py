"""Graphs wider than one SQL statement's parameter limit (65,535 on PostgreSQL), and
validation of wide definitions (linear; its timing is printed by bench/validation.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

import spane
from bench.validation import fan_out, join
from spane import starts, validation
from spane.runtime import Runtime

#: Just wider than each database's bound parameters per statement.
WIDER = {"sqlite": 33_000, "postgresql": 66_000}


@pytest.fixture(params=["sqlite", "postgresql"])
def wide(request: pytest.FixtureRequest) -> tuple[Runtime, int]:
    """A runtime on SQLite (embedded) or on PostgreSQL (nothing is sent to workers), and
    a width over that database's limit of bound parameters in one statement."""
    runtime: Runtime = request.getfixturevalue("rt" if request.param == "sqlite" else "prod")
    return runtime, WIDER[request.param]


def _start(rt: Runtime, definition: dict[str, Any]) -> str:
    workflow_id, _ = spane.register_workflow(definition)
    execution_id, _ = starts.create(rt, workflow_id, None, version=None, tenant="t", lane=None)
    return execution_id


def _sql(rt: Runtime, statement: str, **params: Any) -> None:
    with rt.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_fan_out_and_its_sinks_wider_than_one_statement(wide: tuple[Runtime, int]) -> None:
    rt, width = wide
    execution_id = _start(rt, fan_out(width))
    root = rt.store.claim_node(execution_id, "root", 1)
    assert root is not None
    outcome = rt.store.complete_node(root, "go")
    assert len(outcome.dispatches) == width  # every child queued by one transition
    # Every child but one finishes (as workers would), then the last one completes the
    # execution, whose output gathers all the sinks.
    _sql(
        rt,
        "UPDATE spane_nodes SET status = 'completed', output = '1' "
        "WHERE execution_id = :e AND node_id NOT IN ('root', 'c0')",
        e=execution_id,
    )
    _sql(rt, "UPDATE spane_executions SET remaining = 1 WHERE id = :e", e=execution_id)
    last = rt.store.claim_node(execution_id, "c0", 1)
    assert last is not None
    assert rt.store.complete_node(last, 0).ended == "completed"
    output = spane.get_execution(execution_id).output
    assert len(output) == width and output["c0"] == 0 and output[f"c{width - 1}"] == 1


def test_a_join_wider_than_one_statement_reads_every_parent(wide: tuple[Runtime, int]) -> None:
    rt, width = wide
    execution_id = _start(rt, join(width))
    _sql(
        rt,
        "UPDATE spane_nodes SET status = 'completed', output = '2' "
        "WHERE execution_id = :e AND node_id != 'join'",
        e=execution_id,
    )
    _sql(
        rt,
        "UPDATE spane_nodes SET status = 'queued', attempt = 1, waiting_on = 0 "
        "WHERE execution_id = :e AND node_id = 'join'",
        e=execution_id,
    )
    claim = rt.store.claim_node(execution_id, "join", 1)
    assert claim is not None
    value = rt.store.node_input(claim)
    assert len(value) == width and set(value.values()) == {2}


def test_wide_definitions_report_every_problem() -> None:
    import spane.builtins

    definition = join(20_000)
    after = definition["nodes"][-1]["after"]
    after[:25] = [f"q{i}" for i in range(25)]  # 25 typos
    after.append("p100")  # listed twice
    with pytest.raises(spane.DefinitionError) as caught:
        validation.load_definition(definition)
    problems = caught.value.problems
    missing = [p for p in problems if "no node" in p.message]
    assert len(missing) == 25
    # A suggestion scans every id, so only the first typos get one.
    assert not any("did you mean" in p.message for p in missing[20:])
    twice = [p.path for p in problems if "listed twice" in p.message]
    assert twice == ["nodes[20000].after[20000]"]
    assert len(validation.load_definition(join(20_000)).nodes) == 20_001
