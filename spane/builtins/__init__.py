"""Built-in node types: ``transform``, ``branch``, ``delay``, ``subworkflow``, ``noop``,
``wait_for``, and ``http`` (in ``http.py``)."""

from __future__ import annotations

import time
from typing import Any

import jmespath

from ..context import AwaitSignal, NodeContext, Park, Route, Spawn
from ..durations import parse_duration
from ..registry import NodeType, register
from . import http as _http  # noqa: F401  (registers the ``http`` node type)
from .configs import (
    BranchConfig,
    DelayConfig,
    NoopConfig,
    SubworkflowConfig,
    TransformConfig,
    WaitForConfig,
)

__all__ = ["branch", "delay", "noop", "subworkflow", "transform", "wait_for"]


def transform(ctx: NodeContext) -> Any:
    """Output the JMESPath ``expression`` applied to the input."""
    return jmespath.search(ctx.config.expression, ctx.input)


def _truthy(value: Any) -> bool:
    # JMESPath truthiness: empty list/object/string, false and null are false.
    return value not in (None, False, "", [], {})


def branch(ctx: NodeContext) -> Route:
    """Run the successors of the first case whose ``when`` holds, else ``default``."""
    config: BranchConfig = ctx.config
    for case in config.cases:
        if _truthy(jmespath.search(case.when, ctx.input)):
            return Route(list(case.next), ctx.input)
    return Route(list(config.default), ctx.input)


def delay(ctx: NodeContext) -> Park:
    """Park on a durable timer for ``duration``, then pass the input on."""
    return Park(until=time.time() + parse_duration(ctx.config.duration), output=ctx.input)


def noop(ctx: NodeContext) -> Any:
    """Pass the input on unchanged."""
    return ctx.input


def subworkflow(ctx: NodeContext) -> Spawn:
    """Run another workflow as a child execution; this node waits for it, parked."""
    config: SubworkflowConfig = ctx.config
    value = jmespath.search(config.input, ctx.input) if config.input else ctx.input
    return Spawn(config.workflow, config.version, value, config.output)


def wait_for(ctx: NodeContext) -> AwaitSignal:
    """Park until the configured signal arrives (``spane.signal``); output its payload."""
    config: WaitForConfig = ctx.config
    until = time.time() + parse_duration(config.timeout) if config.timeout is not None else None
    return AwaitSignal(config.signal, until, config.on_timeout, config.default)


register(NodeType("transform", transform, config=TransformConfig))
register(NodeType("branch", branch, config=BranchConfig))
register(NodeType("delay", delay, config=DelayConfig))
register(NodeType("noop", noop, config=NoopConfig))
register(NodeType("subworkflow", subworkflow, config=SubworkflowConfig))
register(NodeType("wait_for", wait_for, config=WaitForConfig))
