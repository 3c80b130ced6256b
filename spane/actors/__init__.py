"""What a worker imports: ``dramatiq spane.actors [user.modules ...]``.

Builds the runtime from the environment (which sets the global Dramatiq broker and
declares one actor per node type on its lane queue), then imports ``SPANE_MODULES``.
Node types registered later, by modules named on the dramatiq command line, are
declared as they register.
"""

from __future__ import annotations

import importlib

from .. import builtins as _builtins  # noqa: F401  (registers the built-in node types)
from .. import runtime as _runtime

runtime = _runtime.get()
broker = runtime.broker

for _module in runtime.settings.modules:
    importlib.import_module(_module)
