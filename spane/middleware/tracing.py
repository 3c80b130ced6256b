"""OpenTelemetry tracing: one trace per execution, a span per node attempt.

The shape of a trace::

    execution <workflow>          root: opened around the transaction that creates the
    │                             execution; its traceparent is stored with the execution
    ├── node <id>                 one span per attempt, message or inline, whatever sent it
    │     events: retry, timer, exception
    └── node <subworkflow node>
          └── execution <child>   a child execution's root nests under the node that started it
                └── node ...

An attempt's parent is the stored traceparent (read with the execution's other fixed
fields, so it costs no query): an attempt re-sent by recovery, resumed, replayed or run
inline lands in the same trace as the first. Every message also carries the sender's
W3C ``traceparent`` in its options (untouched by the claim check, which only offloads
arguments); it is the current context while the message is processed, and a node
attempt links to it, so a retry links to the attempt that failed and a successor to the
node (or timer) that released it.

The attempt span is the current context while node code runs (``ctx.span``), so spans
that node code or auto-instrumentation (SQLAlchemy, Redis, httpx) opens nest under it.
Without a tracer provider every hook returns at once.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dramatiq import Broker
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..traces import build_provider
from .attempts import Attempt, AttemptMiddleware, AttemptOutcome, AttemptResult

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import Claim

#: The message options that carry the trace context (W3C Trace Context).
TRACE_OPTIONS = ("traceparent", "tracestate")
_W3C = TraceContextTextMapPropagator()
_FAILED = (AttemptOutcome.FAILED, AttemptOutcome.RETRIED, AttemptOutcome.TIMED_OUT)


class Tracing(AttemptMiddleware):
    """Spans for executions and node attempts, context carried in message options.

    Args:
        provider: The tracer provider spans go to; None turns tracing off.
    """

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("spane") if provider is not None else None
        self._message = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing:
        """Trace to ``settings.tracer_provider`` if given; else, when ``OTEL_TRACES_EXPORTER``
        names exporters, to the global tracer provider, built from the standard variables
        and installed unless the application installed its own (so node code's own spans
        and auto-instrumentation go to the same place); else not at all."""
        if settings.tracer_provider is not None:
            return cls(settings.tracer_provider)
        if not settings.traces_exporters or "none" in settings.traces_exporters:
            return cls()
        installed = trace.get_tracer_provider()
        if not isinstance(installed, trace.ProxyTracerProvider):
            return cls(installed)
        provider = build_provider(settings)
        trace.set_tracer_provider(provider)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        """True when spans are recorded somewhere."""
        return self.tracer is not None

    def flush(self) -> None:
        """Export the spans still buffered (a process about to stop calls this)."""
        flush = getattr(self.provider, "force_flush", None)
        if flush is not None:
            flush()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.flush()

    # -- executions ------------------------------------------------------------------

    @contextlib.contextmanager
    def execution(
        self,
        *,
        execution_id: str,
        workflow_id: str,
        version: int,
        tenant: str,
        lane: str,
        parent: Claim | None = None,
    ) -> Iterator[str | None]:
        """Open an execution's root span; yield its traceparent to store (None: untraced).

        The root nests under the current span: the ``subworkflow`` attempt that starts a
        child, or whatever span the caller of ``enqueue_workflow`` is in.
        """
        if self.tracer is None:
            yield None
            return
        attributes: dict[str, Any] = {
            "spane.execution.id": execution_id,
            "spane.workflow.id": workflow_id,
            "spane.workflow.version": version,
            "spane.tenant": tenant,
            "spane.lane": lane,
        }
        if parent is not None:
            attributes["spane.parent.execution.id"] = parent.execution_id
            attributes["spane.parent.node.id"] = parent.node_id
        with self.tracer.start_as_current_span(f"execution {workflow_id}", attributes=attributes):
            carrier: dict[str, str] = {}
            _W3C.inject(carrier)
            yield carrier.get("traceparent")

    # -- messages --------------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if self.tracer is None or "traceparent" in message.options:
            return  # a message sent again keeps the context it was first sent with
        _W3C.inject(message.options)

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.tracer is None or "traceparent" not in message.options:
            return
        carrier = {k: message.options[k] for k in TRACE_OPTIONS if k in message.options}
        self._message.token = otel_context.attach(_W3C.extract(carrier))

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        token = getattr(self._message, "token", None)
        if token is not None:
            self._message.token = None
            otel_context.detach(token)

    after_skip_message = after_process_message

    # -- attempts --------------------------------------------------------------------

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        if self.tracer is None:
            return
        parent = _execution_context(attempt)
        sender = trace.get_current_span().get_span_context()
        links = []
        if not attempt.inline and sender.is_valid and sender.span_id != _span_id(parent):
            links.append(Link(sender))
        span = self.tracer.start_span(
            f"node {attempt.node_id}",
            context=parent,
            links=links,
            attributes={
                "spane.execution.id": attempt.execution_id,
                "spane.workflow.id": attempt.workflow_id,
                "spane.workflow.version": attempt.version,
                "spane.node.id": attempt.node_id,
                "spane.node.type": attempt.node_type,
                "spane.lane": attempt.lane,
                "spane.tenant": attempt.tenant,
                "spane.attempt": attempt.attempt,
                "spane.inline": attempt.inline,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        attempt.state["tracing"] = (span, token)

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        entry = attempt.state.pop("tracing", None)
        if entry is None:
            return
        span, token = entry
        try:
            span.set_attribute("spane.outcome", str(result.outcome))
            if result.exception is not None and result.outcome is not AttemptOutcome.HANDED_BACK:
                span.record_exception(result.exception)
            if result.outcome in _FAILED:
                span.set_status(Status(StatusCode.ERROR, result.error))
            if result.retry_in is not None:
                span.add_event(
                    "retry", {"spane.retry_in": result.retry_in, "spane.error": result.error or ""}
                )
            if result.wake_at is not None:
                span.add_event("timer", {"spane.wake_at": result.wake_at})
        finally:
            otel_context.detach(token)
            span.end()


def _execution_context(attempt: Attempt) -> otel_context.Context:
    """The context an attempt's span starts in: its execution's root span.

    An execution created while tracing was off has no stored traceparent; its attempts
    still share one trace, whose id is the execution id (a UUID is 128 bits, as a
    trace id is).
    """
    if attempt.traceparent:
        return _stored_context(attempt.traceparent)
    number = int(attempt.execution_id.replace("-", ""), 16)
    root = SpanContext(
        trace_id=number,
        span_id=(number & 0xFFFF_FFFF_FFFF_FFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(root))


@functools.lru_cache(maxsize=4096)
def _stored_context(traceparent: str) -> otel_context.Context:
    """Parsed once per execution and process: contexts are immutable."""
    return _W3C.extract({"traceparent": traceparent})


def _span_id(context: otel_context.Context) -> int:
    return trace.get_current_span(context).get_span_context().span_id
