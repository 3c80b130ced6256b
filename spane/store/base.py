"""What every layer of the store shares: the engine, payload packing, graphs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from ..definitions import Graph
from ..payloads import Payloads


class StoreBase:
    """Attributes set by ``Store.__init__`` and used by every layer.

    The store is built in layers, each in its own module and each using only the
    layers below it: History → Transitions → Recovery → Store.
    """

    engine: Engine
    payloads: Payloads
    lease_seconds: float
    graph: Callable[[str, int], Graph]
    _meta_cache: dict[str, Any]
