"""The node types known to this process, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from . import errors
from .protection import Breaker, RateLimit

LANES = ("high", "default", "low")


class RetryPolicy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How often and how soon a failed node attempt is tried again."""

    max_attempts: int = 3
    backoff: str = "exponential"  # exponential | fixed | linear
    delay: str | float = "1s"
    max_delay: str | float = "1m"


@dataclass(frozen=True)
class NodeType:
    """A registered node type: its code, lane and defaults."""

    name: str
    fn: Callable[[Any], Any]
    lane: str | None = None
    config: type[msgspec.Struct] | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    breaker: Breaker | None = None
    rate_limit: RateLimit | None = None
    #: At most so many attempts of this type in flight at once, across all workers.
    max_concurrency: int | None = None


_types: dict[str, NodeType] = {}
_listeners: list[Callable[[NodeType], None]] = []


def register(node_type: NodeType) -> NodeType:
    """Add (or replace) a node type and tell listeners, e.g. a broker declaring actors."""
    if node_type.lane is not None and node_type.lane not in LANES:
        raise errors.ConfigurationError(
            f"node type {node_type.name!r}: lane must be one of {', '.join(LANES)}, "
            f"got {node_type.lane!r}"
        )
    limit = node_type.max_concurrency
    if limit is not None and (type(limit) is not int or limit < 1):
        raise errors.ConfigurationError(
            f"node type {node_type.name!r}: max_concurrency must be a whole number of at "
            f"least 1 (or None for no limit), got {limit!r}"
        )
    _types[node_type.name] = node_type
    for listener in list(_listeners):
        listener(node_type)
    return node_type


def get(name: str) -> NodeType | None:
    """Return the node type called ``name``, or None."""
    return _types.get(name)


def names() -> list[str]:
    """Return the names of all registered node types, sorted."""
    return sorted(_types)


def all_types() -> list[NodeType]:
    """Return every registered node type."""
    return list(_types.values())


def on_register(listener: Callable[[NodeType], None]) -> None:
    """Call ``listener`` for every node type registered from now on."""
    _listeners.append(listener)


def remove_listener(listener: Callable[[NodeType], None]) -> None:
    """Stop calling ``listener`` (a closed runtime)."""
    if listener in _listeners:
        _listeners.remove(listener)
