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


# -- added for tests/test_subworkflows.py and tests/test_control.py ------------------------


@spane.node_type("fail_while_file", retry={"max_attempts": 1})
def fail_while_file(ctx: spane.NodeContext) -> Any:
    """Fail while the file named by ``config.path`` exists; tests create and delete it,
    so the behaviour is steered from outside the worker process. Passes its input on."""
    import os

    path = str(ctx.config["path"])
    if os.path.exists(path):
        raise spane.NodeFailed(f"blocked while {path} exists")
    return ctx.input


# -- added for tests/test_properties.py ----------------------------------------------------


class PropConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Fail the first ``fail`` attempts (every attempt when -1), then succeed."""

    fail: int = 0
    retryable: bool = True


def prop_digest(value: Any) -> str:
    """A short, order-independent digest of a JSON value (what ``prop_step`` outputs)."""
    import hashlib
    import json

    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@spane.node_type("prop_step", config=PropConfig)
def prop_step(ctx: spane.NodeContext) -> Any:
    """Fully determined by config and input: fails as told, else outputs a digest of the input."""
    if ctx.config.fail < 0 or ctx.attempt <= ctx.config.fail:
        raise spane.NodeFailed(f"planned failure of {ctx.node_id}", retryable=ctx.config.retryable)
    return {"id": ctx.node_id, "h": prop_digest(ctx.input)}


# -- added for tests/test_faults.py and bench/faults.py ------------------------------------


@spane.node_type("slow_add")
def slow_add(ctx: spane.NodeContext) -> Any:
    """Sleep ``seconds`` (work in flight when a fault hits), then add one to the input."""
    time.sleep(float(ctx.config.get("seconds", 0.2)))
    return ctx.input + 1


# -- added for tests/test_claim_check.py ---------------------------------------------------


def cc_value(size: int, seed: int = 0, width: int = 4000) -> list[str]:
    """A random-ish JSON value (a list of hex strings) about ``size`` bytes when encoded."""
    import random

    rng = random.Random(seed)
    count = max(1, size // (width + 3))
    return [rng.randbytes(width // 2).hex() for _ in range(count)]


@spane.node_type("cc_big", retry={"max_attempts": 1})
def cc_big(ctx: spane.NodeContext) -> Any:
    """Output a fresh large value (``config.size`` bytes, ``config.seed``); reads no blob."""
    return cc_value(int(ctx.config["size"]), int(ctx.config.get("seed", 0)))


@spane.node_type("cc_gate", retry={"max_attempts": 1})
def cc_gate(ctx: spane.NodeContext) -> Any:
    """Wait until the file ``config.path`` exists (at most ``config.timeout`` s); pass input."""
    import os

    deadline = time.monotonic() + float(ctx.config.get("timeout", 30))
    while not os.path.exists(str(ctx.config["path"])):
        if time.monotonic() > deadline:
            raise spane.NodeFailed(f"{ctx.config['path']} did not appear", retryable=False)
        time.sleep(0.01)
    return ctx.input


@spane.node_type("cc_slice")
def cc_slice(ctx: spane.NodeContext) -> Any:
    """Output part ``config.index`` of ``config.parts`` of the input list."""
    index, parts, items = int(ctx.config["index"]), int(ctx.config["parts"]), ctx.input
    return items[index * len(items) // parts : (index + 1) * len(items) // parts]


@spane.node_type("cc_concat")
def cc_concat(ctx: spane.NodeContext) -> Any:
    """Concatenate the parents' lists in the order ``config.order`` names them."""
    return [item for parent in ctx.config["order"] for item in ctx.input[parent]]


@spane.node_type("fail_once_file", retry={"max_attempts": 1})
def fail_once_file(ctx: spane.NodeContext) -> Any:
    """Wait (up to a minute) until the file named by ``config.path`` exists, then fail
    for good: tests fail a node at the moment they choose, from outside the worker."""
    import os

    path = str(ctx.config["path"])
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    raise spane.NodeFailed(f"failed once {path} appeared", retryable=False)


@spane.node_type("distinct_inputs")
def distinct_inputs(ctx: spane.NodeContext) -> Any:
    """How many distinct objects a join's input holds (parents that returned one stored
    value share one decoded object)."""
    return len({id(value) for value in ctx.input.values()})
