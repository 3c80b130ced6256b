"""The worker's start-up, run when ``dramatiq spane.actors [user.modules ...]`` imports
the package.

Builds the runtime from the environment (which sets the global Dramatiq broker and
declares one actor per node type on its lane queue), then imports ``SPANE_MODULES``.
Node types registered later, by modules named on the dramatiq command line, are
declared as they register.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from types import FrameType

from .. import builtins as _builtins  # noqa: F401  (registers the built-in node types)
from .. import logs, outages
from .. import runtime as _runtime
from ..broker import check_broker
from ..errors import ConfigurationError, SpaneError
from ..settings import from_env


def _start() -> _runtime.Runtime:
    """Build the runtime of this worker process and check that its broker answers."""
    settings = from_env()
    logs.configure(settings.log_format, settings.log_level)
    if settings.embedded:
        # A worker process on the in-process broker would never see another process's work.
        raise ConfigurationError(
            "dramatiq spane.actors needs SPANE_BROKER_URL (redis://... or amqp://...) and "
            "SPANE_DATABASE_URL shared with the processes that enqueue; without a broker, "
            "run workflows embedded with `spane run FILE` or spane.run(...)"
        )
    runtime = _runtime.get()
    try:
        check_broker(runtime.broker)
    except outages.BROKER_DOWN as exc:
        raise ConfigurationError(outages.broker(runtime.settings, exc)) from None
    for module in runtime.settings.modules:
        importlib.import_module(module)
    return runtime


try:
    runtime = _start()
except SpaneError as _exc:
    # One line per worker process, not a traceback: the setting to fix is in it.
    print(f"spane worker: error: {_exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
broker = runtime.broker


def _drain_on_first_sigterm(grace: float) -> None:
    """Let a repeated SIGTERM during the drain grace period pass without killing.

    Supervisors such as honcho signal the whole process group, so a worker process gets
    SIGTERM twice (directly and forwarded by Dramatiq's main process), and Dramatiq takes
    the second as "kill now". Only a SIGTERM after the grace period does that here.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    first: list[float] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if first and now - first[0] < grace + 5:
            return
        first.append(now)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)


_drain_on_first_sigterm(runtime.settings.drain_seconds)
