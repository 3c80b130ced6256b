"""Per-attempt timeouts: interrupt a worker thread whose node code overran.

Only node code is ever interrupted: an attempt arms the watchdog right before calling
the node function and disarms it right after, and a timeout that fires in between is
absorbed before the thread returns to Spane's own bookkeeping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from dramatiq.middleware.threading import raise_thread_exception


class NodeTimeout(BaseException):
    """Raised inside a thread whose node attempt ran past its timeout.

    A BaseException so that node code's ``except Exception`` does not swallow it.
    """


@dataclass(eq=False)
class _Entry:
    thread_id: int
    deadline: float
    fired: bool = False
    delivered: bool = field(default=False)


class Watchdog:
    """One background thread that enforces every armed deadline of this process."""

    def __init__(self, tick: float = 0.05) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._entries: set[_Entry] = set()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> _Entry:
        """Start the clock for the calling thread."""
        entry = _Entry(threading.get_ident(), time.monotonic() + seconds)
        with self._lock:
            self._entries.add(entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="spane-watchdog")
                self._thread.daemon = True
                self._thread.start()
        return entry

    def disarm(self, entry: _Entry) -> bool:
        """Stop the clock; return True if the deadline fired."""
        with self._lock:
            self._entries.discard(entry)
        if entry.fired and not entry.delivered:
            # The exception may still be pending in this thread: let it land here.
            try:
                until = time.monotonic() + 1.0
                while time.monotonic() < until:
                    pass
            except NodeTimeout:
                entry.delivered = True
        return entry.fired

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:
                for entry in list(self._entries):
                    if entry.deadline <= now and not entry.fired:
                        entry.fired = True
                        self._entries.discard(entry)
                        raise_thread_exception(entry.thread_id, NodeTimeout)


watchdog = Watchdog()
