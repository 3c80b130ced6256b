"""The actors, one module per role, and what a worker imports:
``dramatiq spane.actors [user.modules ...]``.

- ``nodes``: one actor per node type and lane, running node attempts (``executor``);
- ``coordinator``: timers and child wake-ups (``spane.coordinator``);
- ``start``: executions asked for by start messages (``producer``);
- ``rejected``: messages that cannot run become dead letters.

The runtime declares them on its broker. Under the ``dramatiq`` command this package
starts a worker (see ``worker``): it builds the runtime from the environment. Imported
by any other process, it only offers ``start_workflow``, which sends start messages
through the broker and needs no database, so a web app that reaches only Redis can
start workflows.
"""

from __future__ import annotations

import sys

from .. import builtins as _builtins  # noqa: F401  (registers the built-in node types)
from ..producer import start_workflow

__all__ = ["start_workflow"]

if "dramatiq.cli" in sys.modules:
    from .worker import broker, runtime

    __all__ += ["broker", "runtime"]
