"""The store's parts: the hot path's statement count, retries that do not nest, one
requeue path, and parts that use only each other's public names."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

import spane.store
from spane.runtime import Runtime
from spane.statuses import NodeStatus
from spane.store import Store, base
from tests.conftest import embedded_settings

STORE = Path(spane.store.__file__).parent
FAN_OUT = {
    "id": "fan",
    "nodes": [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "noop", "after": ["a"]},
        {"id": "c", "type": "noop", "after": ["a"]},
    ],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The store of an embedded runtime whose worker is never started."""
    runtime = Runtime(embedded_settings(tmp_path))
    runtime.store.save_workflow("fan", "digest", json.dumps(FAN_OUT))
    try:
        yield runtime.store
    finally:
        runtime.close()


def start(store: Store) -> str:
    lanes = dict.fromkeys(("a", "b", "c"), "default")
    store.graph("fan", 1)
    execution_id, _ = store.create_execution(
        workflow_id="fan", version=1, tenant="t", lane="default", node_lanes=lanes, input="1"
    )
    return execution_id


def test_the_hot_path_keeps_its_statement_count(store: Store) -> None:
    execution_id = start(store)
    statements: list[str] = []
    event.listen(
        store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql)
    )
    claim = store.claim_node(execution_id, "a", 1)
    assert claim is not None
    claimed, statements[:] = statements[1:], []  # after BEGIN
    # claim, its event, the execution's fixed fields (read once per process), its input
    assert len(claimed) == 4
    outcome = store.complete_node(claim, 5)
    assert {d.node_id for d in outcome.dispatches} == {"b", "c"}
    # lock, complete, event, children counted down, their events, execution counted down
    assert len(statements[1:]) == 6
    assert statements[1].startswith("UPDATE spane_executions SET updated_at")


class Conflict(Exception):
    sqlstate = "40001"  # a serialization failure, as psycopg reports it


def test_only_the_outermost_operation_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.time, "sleep", lambda _: None)
    calls = {"outer": 0, "inner": 0}

    @base.retry_conflicts
    def inner() -> None:
        calls["inner"] += 1
        raise OperationalError("UPDATE", {}, Conflict())

    @base.retry_conflicts
    def outer() -> None:
        calls["outer"] += 1
        inner()

    with pytest.raises(OperationalError):
        outer()
    assert calls == {"outer": 8, "inner": 8}
    with pytest.raises(OperationalError):
        inner()  # the outermost call again: it retries
    assert calls["inner"] == 16


def test_a_hand_back_after_the_execution_ended_closes_the_node(store: Store) -> None:
    execution_id = start(store)
    claim = store.claim_node(execution_id, "a", 1)
    assert claim is not None
    store.cancel_execution(execution_id)
    assert store.hand_back(claim, "draining") is None
    assert store.node_statuses(execution_id)["a"] == NodeStatus.CANCELLED
    kinds = [(e.node_id, e.kind) for e in store.history(execution_id)]
    assert kinds[-1] == ("a", "cancelled")


def test_a_hand_back_queues_a_new_attempt_not_counted(store: Store) -> None:
    execution_id = start(store)
    claim = store.claim_node(execution_id, "a", 1)
    assert claim is not None
    dispatch = store.hand_back(claim, "draining")
    assert dispatch is not None and dispatch.attempt == 2
    again = store.claim_node(execution_id, "a", 2)
    assert again is not None and again.tries == claim.tries
    assert store.claim_node(execution_id, "a", 1) is None  # the old message is stale


def private_uses(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``, and imports of ``_name`` from a sibling."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner: Any = node.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            # ``Row._mapping`` is SQLAlchemy's public way to read a row as a mapping.
            if not own and node.attr not in ("_mapping", "__dataclass_fields__", "__dict__"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.level:
            found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name[0] == "_"]
    return found


def test_no_part_of_the_store_reaches_into_another_s_private_names() -> None:
    assert [use for path in sorted(STORE.glob("*.py")) for use in private_uses(path)] == []
