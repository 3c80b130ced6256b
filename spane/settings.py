"""Settings, read from the environment in exactly one place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .errors import ConfigurationError

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
        lease_seconds: How long a queued or running node may go unheard before recovery.
        sweep_interval: Seconds between two passes of the timer/recovery sweeper.
        drain_seconds: Grace period a draining worker gives in-flight nodes.
        embedded_threads: Worker threads of the embedded (in-process) worker.
        max_depth: Deepest nesting of sub-workflows.
        metrics_port: Port of a worker's ``/metrics``, ``/livez`` and ``/readyz``; 0 is off.
        metrics_host: Address that port binds to.
        metrics_dir: Where worker processes keep their metric files (one folder per run).
        metrics_tenants: Tenants that get their own metric label (``*``: all); others
            are counted as ``other``, and with none given every tenant is ``all``.
        worker_lease_seconds: A worker unheard of this long drops off ``spane workers``.
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
    lease_seconds: float = 300.0
    sweep_interval: float = 1.0
    drain_seconds: float = 30.0
    embedded_threads: int = 8
    max_depth: int = 10
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    metrics_dir: str = field(
        default_factory=lambda: str(Path(tempfile.gettempdir(), "spane-metrics"))
    )
    metrics_tenants: tuple[str, ...] = ()
    worker_lease_seconds: float = 30.0

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
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _positive(env, name, default, int, "a whole number")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float, "a number of seconds")


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in env.get(name, "").split(",") if m.strip())


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    defaults = Settings()
    log_format = env.get("SPANE_LOG_FORMAT", defaults.log_format).lower()
    if log_format not in ("console", "json"):
        raise ConfigurationError(f"SPANE_LOG_FORMAT must be console or json, got {log_format!r}")
    broker_url = env.get("SPANE_BROKER_URL", "")
    if broker_url and not broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ConfigurationError(
            "SPANE_BROKER_URL must start with redis:// or amqp:// (or be unset), "
            f"got {broker_url!r}"
        )
    modules = _names(env, "SPANE_MODULES")
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
        metrics_port=_int(env, "SPANE_METRICS_PORT", defaults.metrics_port),
        metrics_host=env.get("SPANE_METRICS_HOST") or defaults.metrics_host,
        metrics_dir=env.get("SPANE_METRICS_DIR") or defaults.metrics_dir,
        metrics_tenants=_names(env, "SPANE_METRICS_TENANTS"),
        worker_lease_seconds=_float(
            env, "SPANE_WORKER_LEASE_SECONDS", defaults.worker_lease_seconds
        ),
    )
