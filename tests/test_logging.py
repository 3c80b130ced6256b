"""Log context (SPEC §8): every line inside node work carries the attempt's identifiers."""

from __future__ import annotations

from typing import Any

import structlog
from structlog.testing import capture_logs

import spane
from spane.runtime import Runtime

TIMEOUT = 30
FIELDS = ("execution_id", "workflow_id", "node_id", "tenant", "attempt")


def lines(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry.get("event") == event]


def test_node_log_lines_carry_the_attempt_context(rt: Runtime) -> None:
    definition = {
        "id": "logged",
        "nodes": [
            {"id": "first", "type": "echo"},
            {"id": "say", "type": "logger", "after": ["first"]},
        ],
    }
    # capture_logs replaces every configured processor, merge_contextvars included: put it back
    # so the captured entries look like the real ones.
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        done = spane.run(definition, {"n": 1}, tenant="acme", timeout=TIMEOUT)
    assert done.status == "completed"
    (line,) = lines(entries, "hello from node")
    assert line["value"] == {"n": 1}
    assert line["log_level"] == "info"
    assert {k: line[k] for k in FIELDS} == {
        "execution_id": done.id,
        "workflow_id": "logged",
        "node_id": "say",
        "tenant": "acme",
        "attempt": 1,
    }


def test_each_attempt_logs_its_own_attempt_number(rt: Runtime) -> None:
    definition = {"id": "flaky-logs", "nodes": [{"id": "f", "type": "log_flaky"}]}
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        done = spane.run(definition, "x", tenant="t2", timeout=TIMEOUT)
    assert done.status == "completed"
    attempts = lines(entries, "flaky attempt")
    assert [line["attempt"] for line in attempts] == [1, 2]
    for line in attempts:
        assert (line["execution_id"], line["workflow_id"], line["node_id"], line["tenant"]) == (
            done.id,
            "flaky-logs",
            "f",
            "t2",
        )
    # Spane's own line about the failed attempt carries the same context.
    (retrying,) = lines(entries, "node attempt failed; retrying")
    assert (retrying["node_id"], retrying["attempt"], retrying["tenant"]) == ("f", 1, "t2")


def test_context_does_not_leak_out_of_node_work(rt: Runtime) -> None:
    definition = {"id": "no-leak", "nodes": [{"id": "say", "type": "logger"}]}
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        spane.run(definition, None, timeout=TIMEOUT)
        structlog.get_logger("test").info("outside node work")
    (outside,) = lines(entries, "outside node work")
    assert not set(FIELDS) & set(outside)
    assert not set(FIELDS) & set(structlog.contextvars.get_contextvars())


def test_ctx_log_is_bound_to_the_attempt(rt: Runtime) -> None:
    definition = {"id": "bound", "nodes": [{"id": "say", "type": "logger"}]}
    with capture_logs() as entries:
        done = spane.run(definition, None, tenant="acme", timeout=TIMEOUT)
    (line,) = lines(entries, "hello from node")
    assert line.get("execution_id") == done.id
    assert line.get("node_id") == "say"
    assert line.get("tenant") == "acme"
