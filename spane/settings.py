"""Settings, read from the environment in exactly one place."""

from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .errors import ConfigurationError
from .registry import LANES

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

_HOME = Path(".spane")


@dataclass(frozen=True)
class Settings:
    """Everything Spane reads from the environment, each with a default.

    Attributes:
        broker_url: ``redis://...`` or ``amqp://...``; empty means the embedded broker.
        database_url: SQLAlchemy URL; defaults to SQLite at ``./.spane/spane.db``.
        blob_url: ``file:///...`` or ``s3://bucket/prefix``; defaults to ``./.spane/blobs``.
        claim_check_bytes: Values larger than this travel and rest as blob references.
        max_payload_bytes: Values larger than this are refused.
        log_format: ``console`` or ``json``.
        log_level: Minimum level of log lines printed.
        modules: User node-type modules that workers import.
        namespace: Prefix of queue names (and the Redis key namespace).
        lease_seconds: How long a running attempt may go without a heartbeat (its worker
            renews it every third of this) before recovery runs it again; also how
            long a queued node waits before recovery checks that the broker still has
            its message.
        sweep_interval: Seconds between two passes of the timer/recovery sweeper.
        drain_seconds: Grace period a draining worker gives in-flight nodes.
        embedded_threads: Worker threads of the embedded (in-process) worker.
        max_depth: Deepest nesting of sub-workflows.
        max_stuck_threads: Threads stuck in node code past their timeout that a worker
            tolerates before it stops taking work.
        schedule_grace: A schedule tick fired later than this (seconds) counts as missed
            and follows the schedule's ``catch_up`` policy.
        http_allowed_hosts: Hosts the ``http`` node type may call (``api.example.com``,
            ``*.example.com``, ``127.0.0.1:8080``); empty allows every host.
        traces_exporters: ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or ``none``
            (comma-separated); unset, nothing is traced.
        traces_file: With the console exporter, append spans (one JSON line each) to this
            file instead of standard output.
        otlp_protocol: ``grpc`` or ``http/protobuf``, from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
            or ``OTEL_EXPORTER_OTLP_PROTOCOL``.
        tracer_provider: An OpenTelemetry tracer provider to trace with instead (set by
            embedding apps and tests through ``spane.configure``; never from the environment).
        web_host: Address ``spane web`` binds (loopback unless opened on purpose).
        web_port: Port of ``spane web``.
        webhook_tolerance: Seconds a webhook signature's timestamp may differ from now.
        metrics_port: Port of a worker's ``/metrics``, ``/livez`` and ``/readyz``; 0 is off.
        metrics_host: Address that port binds to.
        metrics_dir: Where worker processes keep their metric files (one folder per run).
        metrics_tenants: Tenants that get their own metric label (``*``: all); others
            are counted as ``other``, and with none given every tenant is ``all``.
        worker_lease_seconds: A worker unheard of this long drops off ``spane workers``.
        lanes: The lanes a worker consumes (``SPANE_LANES=high,default``); empty serves
            every lane. The embedded worker always serves every lane.
        tenant_max_in_flight, tenant_weights: ``(tenant, n)``: nodes in flight per tenant
            (``*``: the others), and shares of a busy lane (others weigh 1).
        fair_queue_depth: A lane's queue depth from which ready nodes wait their turn.
    """

    broker_url: str = ""
    database_url: str = field(default_factory=lambda: f"sqlite:///{_HOME / 'spane.db'}")
    blob_url: str = field(default_factory=lambda: str((_HOME / "blobs").absolute()))
    claim_check_bytes: int = 51200
    max_payload_bytes: int = 256 * 1024 * 1024
    log_format: str = "console"
    log_level: str = "info"
    modules: tuple[str, ...] = ()
    namespace: str = "spane"
    lease_seconds: float = 15.0
    sweep_interval: float = 1.0
    drain_seconds: float = 30.0
    embedded_threads: int = 8
    max_depth: int = 10
    max_stuck_threads: int = 4
    schedule_grace: float = 60.0
    http_allowed_hosts: tuple[str, ...] = ()
    traces_exporters: tuple[str, ...] = ()
    traces_file: str = ""
    otlp_protocol: str = "http/protobuf"
    tracer_provider: TracerProvider | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    webhook_tolerance: float = 300.0
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    metrics_dir: str = field(
        default_factory=lambda: str(Path(tempfile.gettempdir(), "spane-metrics"))
    )
    metrics_tenants: tuple[str, ...] = ()
    worker_lease_seconds: float = 30.0
    lanes: tuple[str, ...] = ()
    tenant_max_in_flight: tuple[tuple[str, int], ...] = ()
    tenant_weights: tuple[tuple[str, float], ...] = ()
    fair_queue_depth: int = 1000

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: broker and worker run in this process."""
        return not self.broker_url

    def with_(self, **changes: object) -> Settings:
        """Return a copy with some settings changed (for tests and embedding apps)."""
        return replace(self, **changes)  # type: ignore[arg-type]


N = TypeVar("N", int, float)


def _positive(env: Mapping[str, str], name: str, default: N, kind: type[N], what: str) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _positive(env, name, default, int, "a whole number")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float, "a number of seconds")


#: Variables of these prefixes belong to Spane's own tests and benchmarks.
_OWN_PREFIXES = ("SPANE_TEST_", "SPANE_BENCH_")
#: Words people write for the ones settings use, so a "did you mean" finds the setting.
_SYNONYMS = {
    "DB": "DATABASE",
    "PG": "DATABASE",
    "POSTGRES": "DATABASE",
    "SQL": "DATABASE",
    "REDIS": "BROKER",
    "AMQP": "BROKER",
    "RABBITMQ": "BROKER",
    "S3": "BLOB",
}
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):[^@/\s]*@")
_SECRET_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token)=)[^&\s]*", re.I)


def mask_url(url: str) -> str:
    """Return ``url`` with its password (and any password-like query value) masked, for
    printing: ``redis+sentinel://:pw@host`` becomes ``redis+sentinel://:***@host``."""
    url = _USERINFO.sub(r"\g<head>:***@", url)
    return _SECRET_QUERY.sub(r"\g<head>***", url)


class _Reads(Mapping[str, str]):
    """The environment, remembering which ``SPANE_*`` names were looked up."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)

    def unknown(self) -> list[str]:
        """``SPANE_*`` variables that are set but that no setting reads."""
        return sorted(
            name
            for name in self.env
            if name.startswith("SPANE_")
            and not name.startswith(_OWN_PREFIXES)
            and name not in self.read
        )


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in env.get(name, "").split(",") if m.strip())


def _lanes(env: Mapping[str, str]) -> tuple[str, ...]:
    lanes = tuple(n.lower() for n in _names(env, "SPANE_LANES"))
    unknown = [lane for lane in lanes if lane not in LANES]
    if unknown:
        raise ConfigurationError(
            f"SPANE_LANES must list lanes among {', '.join(LANES)}, got {unknown[0]!r}"
        )
    if not lanes and env.get("SPANE_LANES", "").strip():
        raise ConfigurationError(f"SPANE_LANES names no lane; list some of {', '.join(LANES)}")
    return tuple(dict.fromkeys(lanes))


def _tenant_map(env: Mapping[str, str], name: str, kind: type[N]) -> tuple[tuple[str, N], ...]:
    """Read ``tenant=value,...``; a lone value means ``*=value``."""
    pairs = [p.partition("=") if "=" in p else ("*", "=", p) for p in _names(env, name)]
    if any(not tenant.strip() for tenant, _, _ in pairs):
        raise ConfigurationError(f"{name} must list tenant=number pairs, e.g. acme=2,beta=1")
    what = "a positive number"
    return tuple((t.strip(), _positive({name: v}, name, kind(1), kind, what)) for t, _, v in pairs)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``).

    Raises:
        ConfigurationError: If a setting has a bad value, or a ``SPANE_*`` variable is set
            that is no setting (a misspelt name would otherwise be silently ignored).
    """
    reads = _Reads(os.environ if env is None else env)
    settings = _read(reads)
    for name in reads.unknown():
        spelt = "_".join(_SYNONYMS.get(word, word) for word in name.split("_"))
        known = sorted(reads.read)
        close = [n for n in known if n.startswith(spelt + "_")] or difflib.get_close_matches(
            spelt, known, n=1, cutoff=0.6
        )
        hint = f"; did you mean {close[0]}?" if close else "; unset it"
        raise ConfigurationError(f"{name} is not a Spane setting{hint}")
    return settings


def _read(env: Mapping[str, str]) -> Settings:
    defaults = Settings()
    log_format = env.get("SPANE_LOG_FORMAT", defaults.log_format).lower()
    if log_format not in ("console", "json"):
        raise ConfigurationError(f"SPANE_LOG_FORMAT must be console or json, got {log_format!r}")
    broker_url = env.get("SPANE_BROKER_URL", "")
    if broker_url and not broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ConfigurationError(
            "SPANE_BROKER_URL must start with redis:// or amqp:// (or be unset), "
            f"got {mask_url(broker_url)!r}"
        )
    modules = _names(env, "SPANE_MODULES")
    exporters = tuple(n.lower() for n in _names(env, "OTEL_TRACES_EXPORTER"))
    unknown = [e for e in exporters if e not in ("otlp", "console", "none")]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER must list otlp, console or none, got {unknown[0]!r}"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or defaults.otlp_protocol
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got {protocol!r}"
        )
    return Settings(
        broker_url=broker_url,
        database_url=env.get("SPANE_DATABASE_URL") or defaults.database_url,
        blob_url=env.get("SPANE_BLOB_URL") or defaults.blob_url,
        claim_check_bytes=_int(env, "SPANE_CLAIM_CHECK_BYTES", defaults.claim_check_bytes),
        max_payload_bytes=_int(env, "SPANE_MAX_PAYLOAD_BYTES", defaults.max_payload_bytes),
        log_format=log_format,
        log_level=env.get("SPANE_LOG_LEVEL", defaults.log_level).lower(),
        modules=modules,
        namespace=env.get("SPANE_NAMESPACE", defaults.namespace),
        lease_seconds=_float(env, "SPANE_LEASE_SECONDS", defaults.lease_seconds),
        sweep_interval=_float(env, "SPANE_SWEEP_INTERVAL", defaults.sweep_interval),
        drain_seconds=_float(env, "SPANE_DRAIN_SECONDS", defaults.drain_seconds),
        embedded_threads=_int(env, "SPANE_EMBEDDED_THREADS", defaults.embedded_threads),
        max_depth=_int(env, "SPANE_MAX_DEPTH", defaults.max_depth),
        max_stuck_threads=_int(env, "SPANE_MAX_STUCK_THREADS", defaults.max_stuck_threads),
        schedule_grace=_float(env, "SPANE_SCHEDULE_GRACE", defaults.schedule_grace),
        http_allowed_hosts=tuple(
            h.strip().lower()
            for h in env.get("SPANE_HTTP_ALLOWED_HOSTS", "").split(",")
            if h.strip()
        ),
        traces_exporters=exporters,
        traces_file=env.get("SPANE_TRACES_FILE", ""),
        otlp_protocol=protocol,
        web_host=env.get("SPANE_WEB_HOST") or defaults.web_host,
        web_port=_int(env, "SPANE_WEB_PORT", defaults.web_port),
        webhook_tolerance=_float(env, "SPANE_WEBHOOK_TOLERANCE", defaults.webhook_tolerance),
        metrics_port=_int(env, "SPANE_METRICS_PORT", defaults.metrics_port),
        metrics_host=env.get("SPANE_METRICS_HOST") or defaults.metrics_host,
        metrics_dir=env.get("SPANE_METRICS_DIR") or defaults.metrics_dir,
        metrics_tenants=_names(env, "SPANE_METRICS_TENANTS"),
        worker_lease_seconds=_float(
            env, "SPANE_WORKER_LEASE_SECONDS", defaults.worker_lease_seconds
        ),
        lanes=_lanes(env),
        tenant_max_in_flight=_tenant_map(env, "SPANE_TENANT_MAX_IN_FLIGHT", int),
        tenant_weights=_tenant_map(env, "SPANE_TENANT_WEIGHTS", float),
        fair_queue_depth=_int(env, "SPANE_FAIR_QUEUE_DEPTH", defaults.fair_queue_depth),
    )


def secret(name: str) -> str | None:
    """Return the secret in the environment variable ``name`` (``${env:NAME}`` in an
    ``http`` node), read at the moment it is used and never kept."""
    return os.environ.get(name)
