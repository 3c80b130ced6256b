"""Live workers, as they register and heartbeat in the database."""

from __future__ import annotations

from . import runtime
from .store import WorkerInfo


def workers() -> list[WorkerInfo]:
    """Return the worker processes heard from within ``SPANE_WORKER_LEASE_SECONDS``.

    Each reports its host, pid, version, the lanes and node types it serves, its
    threads, the attempts it was running and when it last heartbeat.
    """
    rt = runtime.get()
    return rt.store.live_workers(rt.settings.worker_lease_seconds)
