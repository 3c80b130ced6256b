"""The tracer provider and span exporters the standard ``OTEL_*`` variables ask for.

Spane reads the variables that choose exporters (``spane/settings.py``); the SDK reads its
own for everything else. The OTLP exporter is an optional extra, imported only when asked
for.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

    from .settings import Settings


class _AppendFile:
    """A file that spans are appended to, one JSON line per write.

    Each line is one ``write`` system call on a file opened for appending, so worker
    processes sharing the file never interleave their lines.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, text: str) -> int:
        return os.write(self.fd, text.encode())

    def flush(self) -> None:
        """Nothing is buffered."""


_ENCODER = msgspec.json.Encoder()


def span_line(span: ReadableSpan) -> str:
    """One span as one JSON line, with the fields of the SDK's ``ReadableSpan.to_json``.

    Encoded with msgspec: the SDK's own formatting costs more than recording the span,
    and a worker exports a span per node attempt.
    """
    parent = span.parent
    status = span.status
    return (
        _ENCODER.encode(
            {
                "name": span.name,
                "context": _context(span.context),
                "kind": str(span.kind),
                "parent_id": f"0x{parent.span_id:016x}" if parent is not None else None,
                "start_time": _iso(span.start_time),
                "end_time": _iso(span.end_time),
                "status": {"status_code": status.status_code.name}
                | ({"description": status.description} if status.description else {}),
                "attributes": dict(span.attributes or {}),
                "events": [
                    {
                        "name": event.name,
                        "timestamp": _iso(event.timestamp),
                        "attributes": dict(event.attributes or {}),
                    }
                    for event in span.events
                ],
                "links": [
                    {"context": _context(link.context), "attributes": dict(link.attributes or {})}
                    for link in span.links
                ],
                "resource": _resource(span.resource),
            }
        ).decode()
        + "\n"
    )


@functools.lru_cache(maxsize=8)
def _resource(resource: Any) -> msgspec.Raw:
    """A process has one resource: encode it once."""
    return msgspec.Raw(
        _ENCODER.encode(
            {"attributes": dict(resource.attributes), "schema_url": resource.schema_url}
        )
    )


def _context(context: SpanContext | None) -> dict[str, str] | None:
    if context is None:
        return None
    return {"trace_id": f"0x{context.trace_id:032x}", "span_id": f"0x{context.span_id:016x}"}


def _iso(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return f"{_second(seconds)}.{rest // 1000:06d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    """Spans of a batch start and end within a few seconds: format each second once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def build_provider(settings: Settings) -> TracerProvider:
    """A tracer provider exporting, in batches, to each of ``settings.traces_exporters``.

    The SDK reads its own standard variables: ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` (the service is ``spane`` unless named),
    ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*`` and ``OTEL_TRACES_SAMPLER``.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "spane"}))
    provider = TracerProvider(resource=resource)
    for name in settings.traces_exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter(name, settings)))
    return provider


def exporter(name: str, settings: Settings) -> SpanExporter:
    """The span exporter ``name`` of ``OTEL_TRACES_EXPORTER`` stands for.

    Raises:
        ConfigurationError: If the OTLP exporter is not installed (``spane[otel]``).
    """
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        out: Any = _AppendFile(settings.traces_file) if settings.traces_file else sys.stdout
        return ConsoleSpanExporter(out=out, formatter=span_line)
    transport = "grpc" if settings.otlp_protocol == "grpc" else "http"
    try:
        module = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter"
        )
    except ImportError:
        package = f"opentelemetry-exporter-otlp-proto-{transport}"
        hint = "'spane[otel]'" if transport == "http" else package
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER=otlp ({settings.otlp_protocol}) needs {package}: "
            f"pip install {hint}"
        ) from None
    otlp: SpanExporter = module.OTLPSpanExporter()
    return otlp
