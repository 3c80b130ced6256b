"""Node types used by the tests (imported by test processes and by worker subprocesses)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import msgspec

import spane
from spane import runtime as runtime_module


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


# -- added for tests/test_node_failures.py -----------------------------------------------


class Custom(BaseException):
    """A BaseException of node code's own."""


RAISED: dict[str, BaseException] = {
    "system_exit": SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt(),
    "generator_exit": GeneratorExit(),
    "custom": Custom("custom base exception"),
}


@spane.node_type("raise_base", retry={"max_attempts": 2, "delay": "10ms"})
def raise_base(ctx: spane.NodeContext) -> Any:
    """Raise a BaseException that is not an Exception (``config.kind`` picks which)."""
    raise RAISED[ctx.config["kind"]]


def _bad_output(kind: str) -> Any:
    if kind == "huge_int":
        return 10**5000
    if kind == "surrogate":
        return {"text": "\ud800"}
    if kind == "deep":
        value: list[Any] = []
        for _ in range(1200):
            value = [value]
        return value
    cycle: dict[str, Any] = {"name": "loop"}
    cycle["me"] = cycle
    return cycle


@spane.node_type("bad_output", retry={"max_attempts": 2, "delay": "10ms"})
def bad_output(ctx: spane.NodeContext) -> Any:
    """Return an output the encoder refuses (``config.kind`` picks which)."""
    return _bad_output(ctx.config["kind"])


#: Set by a test to let ``block`` nodes waiting on it return.
RELEASE = threading.Event()


@spane.node_type("block", retry={"max_attempts": 2, "delay": "10ms"}, timeout="1s")
def block(ctx: spane.NodeContext) -> Any:
    """Block in C, where no interrupt reaches: sleep, wait on an event, or read a socket."""
    seconds = float(ctx.config.get("seconds", 4.0))
    how = ctx.config.get("how", "sleep")
    if how == "event":
        RELEASE.wait(seconds)
    elif how == "socket":
        left, right = socket.socketpair()
        with left, right:
            left.settimeout(seconds)
            with contextlib.suppress(TimeoutError):
                left.recv(1)
    else:
        time.sleep(seconds)
    return "came back"


@spane.node_type("kill_backends")
def kill_backends(ctx: spane.NodeContext) -> Any:
    """Terminate every other PostgreSQL connection to this database (the worker's pooled
    ones too), so the completion that follows meets a dead connection."""
    import psycopg

    url = runtime_module.get().engine.url
    if url.get_backend_name() == "postgresql":
        # A connection of its own, outside the pool: every pooled one is terminated.
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    return ctx.input


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


def _route_of(order: dict[str, Any]) -> Any:
    return order["route"]


@spane.node_type("lookup", retry={"max_attempts": 1})
def lookup(ctx: spane.NodeContext) -> Any:
    """Fail with a KeyError two frames down (``config.depth`` more frames of recursion)."""

    # Two functions in turn: a traceback folds repeats of one line, not of two.
    def down(depth: int) -> Any:
        return _route_of({}) if depth == 0 else further(depth - 1)

    def further(depth: int) -> Any:
        return down(depth)

    return down(int(ctx.config.get("depth", 0)))


# -- added for tests/test_tracing.py -------------------------------------------------------


@spane.node_type("traced")
def traced(ctx: spane.NodeContext) -> Any:
    """Annotate the attempt's span, open a span of its own under it, and log."""
    from opentelemetry import trace

    ctx.span.set_attribute("tests.input", str(ctx.input))
    ctx.log.info("inside node code")
    with trace.get_tracer("tests").start_as_current_span("node code's own span"):
        ctx.log.info("inside node code's own span")
    return ctx.input


@spane.node_type("distinct_inputs")
def distinct_inputs(ctx: spane.NodeContext) -> Any:
    """How many distinct objects a join's input holds (parents that returned one stored
    value share one decoded object)."""
    return len({id(value) for value in ctx.input.values()})
