"""Concurrency limits: the ``concurrency`` field of a node, and which limits an attempt
counts against, worked out from its definition.

A limit is a named counter with a maximum: ``type:<name>`` (``max_concurrency`` of the
node type), ``node:<workflow>:<node>`` (the node's ``max_concurrency``),
``key:<tenant>:<workflow>:<node>:<value>`` (its ``concurrency`` key),
``tenant:<tenant>`` (``SPANE_TENANT_MAX_IN_FLIGHT``) and ``execution:<id>`` (the
workflow's ``max_parallel``). Deciding whether a node has any limit reads only the
cached graph and settings: the fast path issues no statement.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath
import msgspec

from . import registry
from .definitions import Graph

if TYPE_CHECKING:
    from .settings import Settings

#: Longest key value kept as it is; longer ones are kept as their digest.
_MAX_VALUE = 120


@dataclass(frozen=True)
class Limit:
    """One limit an attempt counts against: at most ``max`` in flight under ``key``."""

    key: str
    max: int
    strategy: str = "queue"


@dataclass(frozen=True)
class Rules:
    """The limits that do not come from definitions (from the settings).

    Args:
        tenant_caps: ``(tenant, cap)`` pairs; ``*`` applies to every tenant not listed.
    """

    tenant_caps: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        """The rules ``settings`` ask for."""
        return cls(tenant_caps=settings.tenant_max_in_flight)

    def tenant_cap(self, tenant: str) -> int | None:
        """The in-flight cap of ``tenant``, or None when it has none."""
        caps = dict(self.tenant_caps)
        return caps.get(tenant, caps.get("*"))

    def applies(self, graph: Graph, node_id: str, tenant: str) -> bool:
        """Tell whether any limit covers ``node_id`` (no statement: the fast path)."""
        if graph.max_parallel is not None or (self.tenant_caps and self.tenant_cap(tenant)):
            return True
        node = graph.nodes[node_id]
        if node.max_concurrency is not None or node.concurrency is not None:
            return True
        node_type = registry.get(node.type)
        return node_type is not None and node_type.max_concurrency is not None

    def limits(
        self,
        graph: Graph,
        node_id: str,
        tenant: str,
        execution_id: str,
        node_input: Callable[[], Any],
    ) -> tuple[Limit, ...]:
        """Every limit of one attempt, sorted by key (the order their locks are taken).

        Args:
            node_input: Returns the node's input; called only for a ``concurrency`` key.
        """
        node = graph.nodes[node_id]
        found: list[Limit] = []
        node_type = registry.get(node.type)
        if node_type is not None and node_type.max_concurrency is not None:
            found.append(Limit(f"type:{node.type}", node_type.max_concurrency))
        if node.max_concurrency is not None:
            found.append(Limit(f"node:{graph.workflow_id}:{node_id}", node.max_concurrency))
        if node.concurrency is not None:
            value = key_value(node.concurrency.key, node_input(), node.config)
            key = f"key:{tenant}:{graph.workflow_id}:{node_id}:{value}"
            found.append(Limit(key, node.concurrency.max, node.concurrency.strategy))
        cap = self.tenant_cap(tenant)
        if cap is not None:
            found.append(Limit(f"tenant:{tenant}", cap))
        if graph.max_parallel is not None:
            found.append(Limit(f"execution:{execution_id}", graph.max_parallel))
        return tuple(sorted(found, key=lambda limit: limit.key))


@functools.lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def key_value(expression: str, node_input: Any, config: Any) -> str:
    """The concurrency key of a node: ``expression`` over ``{input, config}``, as JSON.

    A value that cannot be computed (the expression fails on this input) is ``null``:
    such attempts share one key rather than escaping the limit.
    """
    try:
        value = _compiled(expression).search({"input": node_input, "config": config})
    except Exception:
        value = None
    text = msgspec.json.encode(value, order="sorted").decode()
    if len(text) > _MAX_VALUE:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text
