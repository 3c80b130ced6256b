"""History retention: delete old finished executions, then blobs nothing can reach.

A blob is reachable from a stored row (an input or output, a schedule's or a signal's
value, an open dead letter's message) or from a message not yet acknowledged: the claim
check holds a message's blobs from the moment it is sent, delayed or not, until its
delivery is acknowledged (see ``payloads.Payloads.hold``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import runtime
from .errors import SpaneError


@dataclass(frozen=True)
class Collected:
    """What one collection removed."""

    executions: int
    blobs: int
    blob_bytes: int


def collect(older_than: float, *, grace: float = 3600.0) -> Collected:
    """Delete executions that ended more than ``older_than`` seconds ago, then orphan blobs.

    A blob is deleted only if no row and no undelivered message refers to it and it was
    last written more than ``grace`` seconds ago: a value being written right now (blob
    first, row or hold second) is never taken. Holds are released by the acknowledgement
    of their message, never here.

    Args:
        older_than: Age in seconds of the finished executions to delete.
        grace: Minimum age in seconds of an unreferenced blob before it is deleted.
    """
    if older_than < 0 or grace < 0:
        raise SpaneError("older_than and grace must not be negative")
    rt = runtime.get()
    now = time.time()
    executions = rt.store.delete_finished_before(now - older_than)
    rt.store.delete_start_history_before(now - older_than)
    blobs = rt.blobs
    # List blobs before reading references: a blob written after the listing is not
    # a candidate, and one written before it is either referenced now or old enough.
    candidates = list(blobs.iter_refs())
    holds, held = rt.payloads.held()
    referenced = rt.store.referenced_blobs() | held | holds
    removed = removed_bytes = 0
    for ref in candidates:
        if ref in referenced:
            continue
        try:
            if blobs.modified(ref) > now - grace:
                continue
            size = blobs.size(ref)
        except SpaneError:
            continue  # deleted meanwhile
        blobs.delete(ref)
        removed += 1
        removed_bytes += size
    return Collected(executions=executions, blobs=removed, blob_bytes=removed_bytes)
