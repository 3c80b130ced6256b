"""What a worker imports: ``dramatiq spane.actors [user.modules ...]``.

Under the ``dramatiq`` command this starts a worker (see ``worker``): it builds the
runtime from the environment, which declares the coordinator, the start actor and one
actor per node type and lane. Imported by any other process, it only offers
``start_workflow``, which sends start messages through the broker and needs no
database, so a web app that reaches only Redis can start workflows.
"""

from __future__ import annotations

import sys

from .. import builtins as _builtins  # noqa: F401  (registers the built-in node types)
from ..producer import start_workflow

__all__ = ["start_workflow"]

if "dramatiq.cli" in sys.modules:
    from .worker import broker, runtime

    __all__ += ["broker", "runtime"]
