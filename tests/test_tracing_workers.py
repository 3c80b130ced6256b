"""One connected trace per execution across real worker processes (Redis + PostgreSQL).

The workers export with ``OTEL_TRACES_EXPORTER=console`` to a file (``SPANE_TRACES_FILE``);
the client enqueuing the execution (where its root span is opened) traces into memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spane
from spane import runtime as runtime_module
from spane.runtime import Runtime
from tests.history import wait_for
from tests.test_tracing import CHILD, PARENT
from tests.workers import WorkerPool

pytestmark = pytest.mark.integration
TIMEOUT = 60


@pytest.fixture
def client(prod: Runtime) -> Iterator[tuple[Runtime, InMemorySpanExporter]]:
    """A client runtime on the same services as ``prod``, tracing into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = Runtime(prod.settings.with_(tracer_provider=provider), migrate=False)
    old = runtime_module.install(runtime)
    try:
        yield runtime, exporter
    finally:
        runtime_module.install(old)
        runtime.close()
        provider.shutdown()


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_trace_connects_client_and_worker_processes(
    client: tuple[Runtime, InMemorySpanExporter], workers: WorkerPool, tmp_path: Path
) -> None:
    rt, exporter = client
    spans_file = tmp_path / "spans.jsonl"
    workers.start(
        rt.settings,
        processes=2,
        threads=4,
        OTEL_TRACES_EXPORTER="console",
        SPANE_TRACES_FILE=str(spans_file),
        OTEL_SERVICE_NAME="spane-test-worker",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    spane.register_workflow(CHILD)
    # The last node opens a span of its own (through the global tracer provider).
    end_node = {"id": "end", "type": "traced", "after": ["wait"]}
    parent = dict(PARENT, nodes=[*PARENT["nodes"][:-1], end_node])  # type: ignore[index]
    spane.register_workflow(parent)
    done = spane.run("traced-parent", 1, tenant="acme", timeout=TIMEOUT)
    assert done.status == "completed", done.error

    expected = sorted(
        [f"node {n}" for n in ("start", "route", "sub", "flaky", "flaky", "wait", "end", "inner")]
        + ["node code's own span", "execution traced-child"]
    )

    def worker_spans() -> list[dict[str, Any]]:
        # Each worker process exports in its own batches: wait for all of them.
        found = read_spans(spans_file)
        return found if sorted(s["name"] for s in found) == expected else []

    found = wait_for(worker_spans, "the workers' spans", timeout=TIMEOUT)
    found += [json.loads(s.to_json()) for s in exporter.get_finished_spans()]
    ids = {s["context"]["span_id"]: s for s in found}

    def named(name: str) -> list[dict[str, Any]]:
        return [s for s in found if s["name"] == name]

    def parent_name(span: dict[str, Any]) -> str:
        return str(ids[span["parent_id"]]["name"])

    (root,) = named("execution traced-parent")
    assert root["parent_id"] is None
    assert {s["context"]["trace_id"] for s in found} == {root["context"]["trace_id"]}
    assert {s["resource"]["attributes"]["service.name"] for s in read_spans(spans_file)} == {
        "spane-test-worker"
    }

    for node_id in ("start", "route", "sub", "flaky", "wait", "end"):
        assert {parent_name(s) for s in named(f"node {node_id}")} == {root["name"]}, node_id
    assert named("node never") == []
    (child_root,) = named("execution traced-child")
    assert parent_name(child_root) == "node sub"
    (inner,) = named("node inner")
    assert inner["parent_id"] == child_root["context"]["span_id"]
    (own,) = named("node code's own span")
    (end,) = named("node end")
    assert parent_name(own) == "node end"
    # The worker's log lines inside node work carry the ids of the span they were logged in.
    logged = [
        json.loads(line)
        for line in workers.started[0].output().splitlines()
        if line.startswith("{")
    ]
    lines = {entry.get("event"): entry for entry in logged if isinstance(entry, dict)}
    assert lines["inside node code"]["trace_id"] == root["context"]["trace_id"][2:]
    assert lines["inside node code"]["span_id"] == end["context"]["span_id"][2:]
    assert lines["inside node code's own span"]["span_id"] == own["context"]["span_id"][2:]

    flaky = sorted(named("node flaky"), key=lambda s: s["attributes"]["spane.attempt"])
    assert [s["attributes"]["spane.outcome"] for s in flaky] == ["retried", "completed"]
    assert flaky[0]["status"]["status_code"] == "ERROR"
    assert [e["name"] for e in flaky[0]["events"]] == ["exception", "retry"]
    assert [link["context"]["span_id"] for link in flaky[1]["links"]] == [
        flaky[0]["context"]["span_id"]
    ]
    (wait,) = named("node wait")
    assert [e["name"] for e in wait["events"]] == ["timer"]
    # The coordinator's timer message links the successor to the parked attempt; when the
    # sweeper fired the timer first (from the database), there is no sender to link to.
    assert [link["context"]["span_id"] for link in end["links"]] in (
        [],
        [wait["context"]["span_id"]],
    )

    # A replay, sent by this client with no span open, continues the same trace.
    spane.replay(done.id, from_node="end")
    assert spane.wait(done.id, timeout=TIMEOUT).status == "completed"
    again = wait_for(
        lambda: [s for s in read_spans(spans_file) if s["name"] == "node end"][1:],
        "the replayed attempt's span",
        timeout=TIMEOUT,
    )
    assert again[0]["parent_id"] == root["context"]["span_id"]
    assert again[0]["context"]["trace_id"] == root["context"]["trace_id"]
