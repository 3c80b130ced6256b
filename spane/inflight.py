"""Node attempts held by this process, and how to take one away from its thread.

An attempt is *held* from its claim until its outcome is recorded; held attempts are
heartbeated (their lease renewed) by the sweeper, so a running lease can be short and a
dead worker's attempts are found quickly. While the attempt's thread is inside node
code, the attempt can be *fenced*: a timeout (``NodeTimeout``) or a draining worker
(``HandedBack``) takes it away from the thread and records its outcome from another
thread, at once, even when node code is blocked in C (``time.sleep``, a socket read)
and cannot be interrupted.

The thread itself gets the interrupt raised into it as well, which stops Python code
right away; code blocked in C keeps the thread until the call returns. Such a *stuck*
thread is harmless to the state of record (its attempt is superseded, and whatever it
returns is recorded as a stale result), but it is lost to the worker until then:
``stuck()`` counts them, and the worker stops taking work when too many are stuck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from dramatiq.middleware.threading import raise_thread_exception

log = structlog.get_logger("spane.inflight")

#: A fenced thread still inside node code this long after its fence counts as stuck.
STUCK_AFTER = 1.0
#: A received message is heartbeated at most this long: one its consumer dropped without
#: settling it (a connection error) must not keep its node from recovery forever. One
#: still waiting behind busy threads after that may get a second (harmless) message.
RECEIVED_TTL = 300.0


class Interrupted(BaseException):
    """Base of the interrupts raised into node code.

    A BaseException so that node code's ``except Exception`` does not swallow it.
    """


class NodeTimeout(Interrupted):
    """The attempt ran past its timeout."""


class HandedBack(Interrupted):
    """The worker is draining and handed this attempt back for another worker."""


@dataclass(eq=False)
class Entry:
    """One attempt held by this process.

    Attributes:
        fenced: The interrupt that took the attempt away from its thread, if any.
        outcome: What the fence recorded, once ``recorded`` is set.
    """

    thread_id: int
    claim: Any
    deadline: float | None = None
    in_code: bool = False
    on_timeout: Callable[[Entry], Any] | None = None
    fenced: type[Interrupted] | None = None
    fenced_at: float = 0.0
    outcome: Any = None
    recorded: threading.Event = field(default_factory=threading.Event)
    delivered: bool = False


class Inflight:
    """The attempts of this process; a watchdog thread fences those past their deadline."""

    def __init__(self, tick: float = 0.05) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._held: set[Entry] = set()
        self._received: dict[str, tuple[tuple[str, str, int], float]] = {}
        self._thread: threading.Thread | None = None

    def hold(self, claim: Any) -> Entry:
        """Record that the calling thread claimed an attempt (heartbeated from now on)."""
        entry = Entry(threading.get_ident(), claim)
        with self._lock:
            self._held.add(entry)
        return entry

    def release(self, entry: Entry) -> None:
        """Record that the attempt's outcome is recorded (or left to its lease)."""
        with self._lock:
            self._held.discard(entry)

    def enter(
        self,
        entry: Entry,
        timeout: float | None,
        on_timeout: Callable[[Entry], Any] | None = None,
    ) -> None:
        """Record that the entry's thread is about to run node code.

        Args:
            timeout: Seconds the code may run; then the attempt is fenced.
            on_timeout: Records the timeout; called from another thread with the entry,
                returns the outcome the attempt's thread reports.
        """
        with self._lock:
            entry.deadline = None if timeout is None else time.monotonic() + timeout
            entry.on_timeout = on_timeout
            entry.in_code = True
            if timeout is not None and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._watch, name="spane-watchdog")
                self._thread.daemon = True
                self._thread.start()

    def exit(self, entry: Entry) -> type[Interrupted] | None:
        """Record that node code returned; return the fence that took the attempt, if any."""
        with self._lock:
            entry.in_code = False
        if entry.fenced is not None and not entry.delivered:
            # The interrupt may still be pending in this thread: let it land here.
            try:
                until = time.monotonic() + 1.0
                while time.monotonic() < until:
                    pass
            except Interrupted:
                entry.delivered = True
        return entry.fenced

    def fence(self, entry: Entry, kind: type[Interrupted]) -> bool:
        """Take the attempt from its thread if the thread is still inside node code.

        The interrupt is raised in the thread too; whoever fences records the outcome
        and then sets ``entry.recorded``.
        """
        with self._lock:
            if not entry.in_code or entry.fenced is not None:
                return False
            entry.fenced = kind
            entry.fenced_at = time.monotonic()
            raise_thread_exception(entry.thread_id, kind)  # type: ignore[no-untyped-call]
            return True

    def running(self) -> list[Entry]:
        """Return the attempts inside node code and not fenced (drain hands them back)."""
        with self._lock:
            return [e for e in self._held if e.in_code and e.fenced is None]

    def received(self, message_id: str, key: tuple[str, str, int]) -> None:
        """Record a node message taken from the broker: heartbeated until it is settled.

        A worker may hold prefetched messages for a long time behind busy threads; the
        heartbeat tells recovery that they are not lost.
        """
        with self._lock:
            self._received[message_id] = (key, time.monotonic())

    def settled(self, message_id: str) -> None:
        """Record that a received message was acknowledged or rejected."""
        with self._lock:
            self._received.pop(message_id, None)

    def heartbeat_keys(self) -> list[tuple[str, str, int]]:
        """``(execution_id, node_id, attempt)`` of every attempt and message to heartbeat:
        attempts held and not fenced, and node messages received and not yet settled."""
        oldest = time.monotonic() - RECEIVED_TTL
        with self._lock:
            keys = {
                (e.claim.execution_id, e.claim.node_id, e.claim.attempt)
                for e in self._held
                if e.fenced is None
            }
            for message_id, (key, at) in list(self._received.items()):
                if at < oldest:
                    del self._received[message_id]
                else:
                    keys.add(key)
        return sorted(keys)

    def stuck(self) -> int:
        """Count threads still in node code well after their attempt was fenced."""
        now = time.monotonic()
        with self._lock:
            return sum(
                1
                for e in self._held
                if e.fenced is not None and e.in_code and now - e.fenced_at >= STUCK_AFTER
            )

    def _watch(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:
                due = [
                    e
                    for e in self._held
                    if e.in_code and e.fenced is None and e.deadline is not None
                    and e.deadline <= now
                ]  # fmt: skip
            for entry in due:
                if self.fence(entry, NodeTimeout):
                    # Recorded in a thread of its own: a slow database must not hold up
                    # the deadlines of other attempts.
                    threading.Thread(
                        target=self._record_timeout, args=(entry,), name="spane-fence", daemon=True
                    ).start()

    @staticmethod
    def _record_timeout(entry: Entry) -> None:
        try:
            if entry.on_timeout is not None:
                entry.outcome = entry.on_timeout(entry)
        except Exception as exc:
            # Left to the lease: the attempt is no longer heartbeated, so recovery
            # supersedes it once its lease runs out.
            log.error("could not record a timed-out attempt", error=str(exc))
        finally:
            entry.recorded.set()


inflight = Inflight()
