"""Liveness and readiness of a ``dramatiq`` run, for Kubernetes probes.

Live: every worker process heartbeats (its consumer and worker threads are running,
or it is draining on purpose). Ready: not draining, the database answers and its
schema is current, the broker answers. Each check is reported by name so a failing
probe says which one failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from .. import migrations
from ..broker import queue_depths

if TYPE_CHECKING:
    from ..services import Services

HEARTBEAT = "spane_worker_heartbeat_timestamp_seconds"
DRAINING = "spane_worker_draining"

#: A worker process unheard of this long is not live (it heartbeats every second).
STALE_SECONDS = 15.0


@dataclass
class Verdict:
    """A probe's answer and, per check, ``"ok"`` or what is wrong."""

    ok: bool = True
    checks: dict[str, str] = field(default_factory=dict)

    def check(self, name: str, problem: str | None) -> None:
        self.checks[name] = problem or "ok"
        self.ok = self.ok and problem is None


def worker_gauges(folder: Path) -> dict[str, list[float]]:
    """Return the live worker gauges of the run's folder: ``{name: [value per process]}``."""
    files = [str(p) for p in folder.glob("gauge_live*.db")]
    values: dict[str, list[float]] = {}
    merged = MultiProcessCollector.merge(files, accumulate=False)  # type: ignore[no-untyped-call]
    for metric in merged:
        for sample in metric.samples:
            values.setdefault(sample.name, []).append(sample.value)
    return values


def liveness(folder: Path) -> Verdict:
    """Every worker process of the run heartbeat within ``STALE_SECONDS``."""
    verdict = Verdict()
    beats = worker_gauges(folder).get(HEARTBEAT, [])
    now = time.time()
    stale = sum(1 for b in beats if now - b > STALE_SECONDS)
    if not beats:
        verdict.check("workers", "no worker process has reported yet")
    elif stale:
        verdict.check("workers", f"{stale} of {len(beats)} worker processes stopped heartbeating")
    else:
        verdict.check("workers", None)
    return verdict


def readiness(runtime: Services, folder: Path, *, draining: bool) -> Verdict:
    """Not draining, database reachable and migrated, broker reachable."""
    verdict = Verdict()
    draining = draining or any(v > 0 for v in worker_gauges(folder).get(DRAINING, []))
    verdict.check("draining", "the worker is draining (SIGTERM)" if draining else None)
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        verdict.check("database", None)
        current = migrations.is_current(runtime.engine)
        verdict.check("migrations", None if current else "run `spane db upgrade`")
    except Exception as exc:
        verdict.check("database", f"unreachable: {exc}")
    try:
        queue_depths(runtime.broker, runtime.settings)
        verdict.check("broker", None)
    except Exception as exc:
        verdict.check("broker", f"unreachable: {exc}")
    return verdict
