"""What is kept of a failed attempt, and how its outcome reaches the database.

The retry policy's backoff (with jitter), the bounded traceback kept with a failure, and
the retry of a transition that met a database error while recording an outcome.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError

from .durations import parse_duration
from .registry import RetryPolicy

log = structlog.get_logger("spane.node")
T = TypeVar("T")


#: Retry waits are stretched by a random share of up to this much, so the nodes of a
#: fan-out that failed together do not all retry in the same instant.
JITTER = 0.25


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait before the attempt after ``attempt`` (1-based).

    Never shorter than the policy says: the jitter only lengthens the wait.
    """
    base = parse_duration(policy.delay)
    cap = parse_duration(policy.max_delay)
    if policy.backoff == "fixed":
        wait = min(base, cap)
    elif policy.backoff == "linear":
        wait = min(base * attempt, cap)
    else:
        wait = min(base * 2.0 ** (attempt - 1), cap)
    return wait * (1.0 + random.uniform(0.0, JITTER))


#: How long a worker keeps trying to record an attempt's outcome through database errors
#: (a restarting server, a killed connection) before leaving the attempt to its lease.
RECORD_PATIENCE = 60.0


def retry_database(action: Callable[[], T]) -> T:
    """Run ``action`` (one store transaction), retrying it on database errors.

    Used where a worker records an attempt's outcome: the worker that holds the attempt
    (heartbeated meanwhile) retries, instead of leaving the attempt running until its
    lease runs out. Every transition is guarded, so a retry after a commit that did land
    changes nothing.
    """
    deadline = time.monotonic() + RECORD_PATIENCE
    pause = 0.1
    while True:
        try:
            return action()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + pause > deadline:
                raise
            first = str(exc.orig or exc).strip().splitlines()
            log.warning(
                "recording the attempt failed on a database error; retrying",
                error=first[0] if first else type(exc).__name__,
                retry_in=pause,
            )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


#: The most of a traceback kept with a failed attempt (its end: the innermost frames
#: and the error line).
MAX_TRACEBACK_BYTES = 16 * 1024


def bounded_traceback(exc: BaseException, last_line: str) -> str:
    """The traceback of ``exc`` up to ``MAX_TRACEBACK_BYTES``, ending in ``last_line``.

    Spane's own frames (up to the executor's ``_call``) are left out: the story starts
    in node code. Where a traceback is cut, its start goes and a marker says so.
    """
    frames = list(traceback.extract_tb(exc.__traceback__))
    ours = next((i for i, f in enumerate(frames) if f.name == "_call"), None)
    if ours is not None:
        frames = frames[ours + 1 :]
    lines = traceback.format_list(frames)
    text = "Traceback (most recent call last):\n" + "".join(lines) + last_line
    data = text.encode()
    if len(data) <= MAX_TRACEBACK_BYTES:
        return text
    kept = data[-(MAX_TRACEBACK_BYTES - 40) :].decode(errors="ignore")
    return f"[traceback cut to its last {MAX_TRACEBACK_BYTES} bytes]\n…{kept}"
