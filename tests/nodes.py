"""Node types used by the tests (imported by test processes and by worker subprocesses)."""

from __future__ import annotations

import time
from typing import Any

import msgspec

import spane


class FailConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Fail the first ``times`` attempts (all when -1)."""

    times: int = -1
    retryable: bool = True
    message: str = "planned failure"


@spane.node_type("echo")
def echo(ctx: spane.NodeContext) -> Any:
    return ctx.input


@spane.node_type("add_one")
def add_one(ctx: spane.NodeContext) -> Any:
    return ctx.input + 1


@spane.node_type("fail", config=FailConfig, retry={"max_attempts": 3, "delay": "10ms"})
def fail(ctx: spane.NodeContext) -> Any:
    if ctx.config.times < 0 or ctx.attempt <= ctx.config.times:
        raise spane.NodeFailed(ctx.config.message, retryable=ctx.config.retryable)
    return {"attempt": ctx.attempt, "input": ctx.input}


@spane.node_type("sleep")
def sleep(ctx: spane.NodeContext) -> Any:
    time.sleep(float(ctx.config.get("seconds", 0.1)))
    return ctx.input


@spane.node_type("spin")
def spin(ctx: spane.NodeContext) -> Any:
    """Busy-loop (interruptible by a timeout) for ``seconds``."""
    until = time.monotonic() + float(ctx.config.get("seconds", 1.0))
    while time.monotonic() < until:
        pass
    return "finished"


@spane.node_type("falsy")
def falsy(ctx: spane.NodeContext) -> Any:
    return ctx.config.get("value")


@spane.node_type("router")
def router(ctx: spane.NodeContext) -> Any:
    return spane.Route(list(ctx.config.get("next", [])), ctx.input)


@spane.node_type("logger")
def logger(ctx: spane.NodeContext) -> Any:
    ctx.log.info("hello from node", value=ctx.input)
    return ctx.input


@spane.node_type("high_echo", lane="high")
def high_echo(ctx: spane.NodeContext) -> Any:
    return ctx.input


# -- added for tests/test_semantics.py and tests/test_logging.py ---------------------------

# (execution_id, node_id) -> wall-clock start of each attempt, in order.
ATTEMPT_STARTS: dict[tuple[str, str], list[float]] = {}


@spane.node_type("stamp_fail")
def stamp_fail(ctx: spane.NodeContext) -> Any:
    """No type-level retry: records when each attempt started, fails the first ``times``."""
    ATTEMPT_STARTS.setdefault((ctx.execution_id, ctx.node_id), []).append(time.time())
    times = int(ctx.config.get("times", -1))
    if times < 0 or ctx.attempt <= times:
        raise spane.NodeFailed("stamped failure")
    return ctx.attempt


@spane.node_type("log_flaky", retry={"max_attempts": 2, "delay": "10ms"})
def log_flaky(ctx: spane.NodeContext) -> Any:
    """Log through ``ctx.log`` on every attempt; fail the first one."""
    ctx.log.info("flaky attempt", value=ctx.input)
    if ctx.attempt == 1:
        raise spane.NodeFailed("first attempt fails")
    return ctx.input
