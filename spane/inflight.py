"""Node attempts running in this process, and how to interrupt one safely.

Only node code is ever interrupted: an attempt enters right before calling the node
function and exits right after, and an interrupt that lands in between is absorbed
before the thread returns to Spane's own bookkeeping. Used for per-attempt timeouts
(``NodeTimeout``), for handing work back on drain (``HandedBack``), and for lease
heartbeats (``claims``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware.threading import raise_thread_exception


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
    """One attempt inside node code."""

    thread_id: int
    claim: Any
    deadline: float | None
    fired: type[Interrupted] | None = None
    delivered: bool = False


class Inflight:
    """The attempts of this process; a watchdog thread enforces their deadlines."""

    def __init__(self, tick: float = 0.05) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._entries: set[Entry] = set()
        self._thread: threading.Thread | None = None

    def enter(self, claim: Any, timeout: float | None) -> Entry:
        """Record that the calling thread is about to run node code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        entry = Entry(threading.get_ident(), claim, deadline)
        with self._lock:
            self._entries.add(entry)
            if deadline is not None and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._watch, name="spane-watchdog")
                self._thread.daemon = True
                self._thread.start()
        return entry

    def exit(self, entry: Entry) -> type[Interrupted] | None:
        """Record that node code returned; return the interrupt that fired, if any."""
        with self._lock:
            self._entries.discard(entry)
        if entry.fired is not None and not entry.delivered:
            # The exception may still be pending in this thread: let it land here.
            try:
                until = time.monotonic() + 1.0
                while time.monotonic() < until:
                    pass
            except Interrupted:
                entry.delivered = True
        return entry.fired

    def interrupt(self, entry: Entry, kind: type[Interrupted]) -> bool:
        """Raise ``kind`` in the entry's thread if it is still inside node code."""
        with self._lock:
            if entry not in self._entries or entry.fired is not None:
                return False
            entry.fired = kind
            self._entries.discard(entry)
            raise_thread_exception(entry.thread_id, kind)  # type: ignore[no-untyped-call]
            return True

    def entries(self) -> list[Entry]:
        """Return the attempts currently inside node code."""
        with self._lock:
            return list(self._entries)

    def _watch(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            for entry in self.entries():
                if entry.deadline is not None and entry.deadline <= now:
                    self.interrupt(entry, NodeTimeout)


inflight = Inflight()
