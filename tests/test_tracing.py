"""Tracing on the embedded twin, spans caught by an in-memory exporter."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dramatiq
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode, format_span_id, format_trace_id
from structlog.testing import capture_logs

import spane
from spane import logs
from spane import runtime as runtime_module
from spane.errors import ConfigurationError
from spane.middleware.tracing import Tracing
from spane.runtime import Runtime
from spane.settings import from_env
from spane.traces import build_provider, exporter
from tests.conftest import embedded_settings
from tests.history import node_status, wait_for

TIMEOUT = 30

CHILD = {"id": "traced-child", "nodes": [{"id": "inner", "type": "add_one"}]}
PARENT = {
    "id": "traced-parent",
    "nodes": [
        {"id": "start", "type": "echo"},
        {
            "id": "route",
            "type": "branch",
            "after": ["start"],
            "config": {"cases": [{"when": "@ > `0`", "next": ["sub"]}], "default": ["never"]},
        },
        {
            "id": "sub",
            "type": "subworkflow",
            "after": ["route"],
            "config": {"workflow": "traced-child"},
        },
        {"id": "never", "type": "noop", "after": ["route"]},
        {"id": "flaky", "type": "fail", "after": ["sub"], "config": {"times": 1}},
        {"id": "wait", "type": "delay", "after": ["flaky"], "config": {"duration": "50ms"}},
        {"id": "end", "type": "echo", "after": ["wait"]},
    ],
}


@pytest.fixture
def spans(tmp_path: Path) -> Iterator[InMemorySpanExporter]:
    """An embedded runtime tracing into memory; yields the exporter."""
    import tests.nodes  # noqa: F401

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = Runtime(embedded_settings(tmp_path, tracer_provider=provider))
    old = runtime_module.install(runtime)
    try:
        yield exporter
    finally:
        runtime_module.install(old)
        runtime.close()
        provider.shutdown()


def by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_one_connected_trace_per_execution(spans: InMemorySpanExporter) -> None:
    spane.register_workflow(CHILD)
    spane.register_workflow(PARENT)
    done = spane.run("traced-parent", 1, tenant="acme", timeout=TIMEOUT)
    assert done.status == "completed", done.error
    found = spans.get_finished_spans()
    (root,) = by_name(found, "execution traced-parent")
    assert {s.context.trace_id for s in found} == {root.context.trace_id}
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["spane.execution.id"] == done.id
    assert root.attributes["spane.tenant"] == "acme"

    # Every attempt of the parent is a child of its root; the skipped branch has none.
    for node_id in ("start", "route", "sub", "flaky", "wait", "end"):
        for span in by_name(found, f"node {node_id}"):
            assert parent_of(span) == root.context.span_id, node_id
    assert by_name(found, "node never") == []

    # The child execution nests under the attempt of the node that started it.
    (sub,) = by_name(found, "node sub")
    (child_root,) = by_name(found, "execution traced-child")
    assert parent_of(child_root) == sub.context.span_id
    (inner,) = by_name(found, "node inner")
    assert parent_of(inner) == child_root.context.span_id
    assert sub.attributes is not None and sub.attributes["spane.outcome"] == "parked"

    # The retry: two attempts, the first failed with its exception and a retry event;
    # the second links to the first (its message was sent from the failed attempt).
    first, second = sorted(by_name(found, "node flaky"), key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert (first.attributes["spane.attempt"], second.attributes["spane.attempt"]) == (1, 2)
    assert first.attributes["spane.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception", "retry"]
    assert first.events[0].attributes is not None
    assert first.events[0].attributes["exception.type"] == "spane.errors.NodeFailed"
    assert second.attributes["spane.outcome"] == "completed"
    assert [link.context.span_id for link in second.links] == [first.context.span_id]

    # The timer: an event on the parked attempt. The successor links to it when the
    # coordinator's timer message fired it, not when the sweeper did (from the database).
    (wait,) = by_name(found, "node wait")
    (timer,) = [e for e in wait.events if e.name == "timer"]
    assert timer.attributes is not None and timer.attributes["spane.wake_at"] > 0
    (end,) = by_name(found, "node end")
    assert [link.context.span_id for link in end.links] in ([], [wait.context.span_id])

    attributes = dict(second.attributes)
    assert {k: attributes[k] for k in ("spane.execution.id", "spane.node.id", "spane.tenant")} == {
        "spane.execution.id": done.id,
        "spane.node.id": "flaky",
        "spane.tenant": "acme",
    }
    assert attributes["spane.workflow.id"] == "traced-parent"
    assert attributes["spane.workflow.version"] == 1
    assert attributes["spane.node.type"] == "fail"
    assert attributes["spane.lane"] == "default"


def test_node_code_and_logs_see_the_attempt_span(spans: InMemorySpanExporter) -> None:
    definition = {"id": "traced-code", "nodes": [{"id": "work", "type": "traced"}]}
    with capture_logs(
        processors=[structlog.contextvars.merge_contextvars, logs.add_trace_ids]
    ) as entries:
        done = spane.run(definition, 7, timeout=TIMEOUT)
    assert done.status == "completed", done.error
    (work,) = by_name(spans.get_finished_spans(), "node work")
    assert work.attributes is not None and work.attributes["tests.input"] == "7"
    (line,) = [e for e in entries if e.get("event") == "inside node code"]
    assert line["trace_id"] == format_trace_id(work.context.trace_id)
    assert line["span_id"] == format_span_id(work.context.span_id)
    assert line["node_id"] == "work"


def test_an_execution_created_untraced_still_gets_one_trace(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime_module.current()
    assert isinstance(rt, Runtime)
    # As if created before the migration, or by a process with tracing off.
    monkeypatch.setattr(rt.store.starts, "trace_execution", lambda **_: contextlib.nullcontext())
    definition = {
        "id": "late-traced",
        "nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "echo", "after": ["a"]}],
    }
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "completed"
    found = spans.get_finished_spans()
    assert by_name(found, "execution late-traced") == []
    (a,) = by_name(found, "node a")
    (b,) = by_name(found, "node b")
    assert format_trace_id(a.context.trace_id) == done.id.replace("-", "")
    assert a.context.trace_id == b.context.trace_id
    assert parent_of(a) == parent_of(b) is not None


def test_untraced_by_default(rt: Runtime) -> None:
    assert not rt.tracing.enabled
    done = spane.run({"id": "plain", "nodes": [{"id": "x", "type": "traced"}]}, 1)
    assert done.status == "completed"
    with rt.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT traceparent FROM spane_executions").scalar()
    assert stored is None


def test_trace_context_travels_in_options_past_the_claim_check(
    spans: InMemorySpanExporter,
) -> None:
    rt = runtime_module.current()
    assert isinstance(rt, Runtime)
    seen: list[tuple[SpanContext, int]] = []

    def receive(big: str) -> None:
        seen.append((trace.get_current_span().get_span_context(), len(big)))

    actor = dramatiq.Actor(
        receive,
        broker=rt.broker,
        actor_name="tests.traced_receive",
        queue_name="tests.traced",
        priority=0,
        options={},
    )
    big = "x" * (rt.settings.claim_check_bytes + 1)
    assert rt.tracing.tracer is not None
    with rt.tracing.tracer.start_as_current_span("sender") as sender:
        message = actor.send(big=big)
    assert message.options["traceparent"].split("-")[2] == format_span_id(
        sender.get_span_context().span_id
    )
    assert message.kwargs["big"] != big  # offloaded to the blob store, a small reference
    worker = dramatiq.Worker(rt.broker, queues={"tests.traced"}, worker_threads=1)
    worker.start()
    try:
        wait_for(lambda: seen, "the message to be processed")
    finally:
        worker.stop()
    (context, size) = seen[0]
    assert size == len(big)
    assert (context.trace_id, context.span_id) == (
        sender.get_span_context().trace_id,
        sender.get_span_context().span_id,
    )


def test_exporters_come_from_the_standard_variables(tmp_path: Path) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console,otlp", "SPANE_TRACES_FILE": str(tmp_path / "t")}
    settings = from_env(env)
    assert settings.traces_exporters == ("console", "otlp")
    assert settings.otlp_protocol == "http/protobuf"
    assert type(exporter("otlp", settings)).__module__.endswith("proto.http.trace_exporter")
    console = exporter("console", settings)
    assert isinstance(console, ConsoleSpanExporter)
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER"):
        from_env({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(ConfigurationError, match="grpc or http/protobuf"):
        from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert not Tracing.from_settings(from_env({"OTEL_TRACES_EXPORTER": "none"})).enabled
    assert not Tracing.from_settings(from_env({})).enabled


def test_a_missing_otlp_exporter_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(
        ConfigurationError, match="pip install opentelemetry-exporter-otlp-proto-grpc"
    ):
        exporter("otlp", settings)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'spane\[otel\]'"):
        exporter("otlp", settings.with_(otlp_protocol="http/protobuf"))


def test_otlp_exports_to_the_endpoint_of_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-worker")
        provider = build_provider(from_env({"OTEL_TRACES_EXPORTER": "otlp"}))
        with provider.get_tracer("tests").start_as_current_span("sent over otlp"):
            pass
        assert provider.force_flush()
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    ((path, body),) = received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "orders-worker"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["sent over otlp"]


def test_a_resumed_execution_continues_its_trace(spans: InMemorySpanExporter) -> None:
    definition = {
        "id": "traced-pause",
        "nodes": [
            {"id": "slow", "type": "sleep", "config": {"seconds": 0.3}},
            {"id": "after", "type": "echo", "after": ["slow"]},
        ],
    }
    spane.register_workflow(definition)
    execution_id = spane.enqueue_workflow("traced-pause", 1)
    wait_for(lambda: node_status(execution_id, "slow") == "running", "the slow node to start")
    spane.pause(execution_id)
    wait_for(lambda: node_status(execution_id, "after") == "queued", "the successor to queue")
    spane.resume(execution_id)  # sends the successor again, from a thread with no span
    assert spane.wait(execution_id, timeout=TIMEOUT).status == "completed"
    found = spans.get_finished_spans()
    (root,) = by_name(found, "execution traced-pause")
    (after,) = by_name(found, "node after")
    assert parent_of(after) == root.context.span_id
    assert after.context.trace_id == root.context.trace_id
