"""Circuit breakers, rate limits and deferral: the logic, on the embedded twin and the
database backend (real workers and Redis are in ``test_protection_workers.py``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest
from dramatiq.rate_limits import WindowRateLimiter

import spane
from spane.cli import main
from spane.context import Defer
from spane.definitions import Graph, Workflow, build_graph
from spane.inflight import NodeTimeout
from spane.middleware.attempts import Attempt, AttemptOutcome, AttemptResult
from spane.middleware.circuit_breaker import CircuitBreaker
from spane.middleware.rate_limit import RateLimits
from spane.middleware.shared_state import DatabaseState, MemoryState, RedisState, SharedState
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.history import events, wait_for

TIMEOUT = 30
SERVICE: dict[str, Any] = {"up": False, "calls": 0}


@spane.node_type(
    "guarded_call",
    breaker=spane.Breaker(fail_max=2, reset_timeout="1s"),
    retry={"max_attempts": 1},
)
def guarded_call(ctx: spane.NodeContext) -> Any:
    SERVICE["calls"] += 1
    if not SERVICE["up"]:
        raise RuntimeError("service down")
    return {"attempt": ctx.attempt}


@spane.node_type("defers_once", retry={"max_attempts": 1})
def defers_once(ctx: spane.NodeContext) -> Any:
    if not events(ctx.execution_id, ctx.node_id, "deferred"):
        raise spane.Defer(time.time() + 0.3, "the service asked us to come back later")
    return {"attempt": ctx.attempt}


@pytest.fixture
def service() -> Iterator[dict[str, Any]]:
    SERVICE.update(up=False, calls=0)
    yield SERVICE
    SERVICE.update(up=False, calls=0)


def test_open_breaker_defers_without_spending_an_attempt(
    rt: Runtime, service: dict[str, Any]
) -> None:
    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "guarded_call"}]})
    for _ in range(2):
        assert spane.run("guarded", {}, timeout=TIMEOUT).status == "failed"
    (status,) = spane.breakers()
    assert (status.name, status.state, status.failures) == ("guarded_call", "open", 2)
    assert status.closes_at is not None and status.closes_at > time.time()

    service["up"] = True
    eid = spane.enqueue_workflow("guarded", {})
    deferred = wait_for(lambda: events(eid, "call", "deferred"), "a deferral", TIMEOUT)
    assert deferred[0].detail == "circuit breaker guarded_call is open"
    assert service["calls"] == 2  # the open breaker did not call the service
    done = spane.wait(eid, timeout=TIMEOUT)
    # max_attempts is 1: had the deferral spent an attempt, the node would have failed.
    assert done.status == "completed" and done.output == {"attempt": 1}
    assert not events(eid, "call", "retrying")
    assert spane.breakers()[0].state == "closed"


def test_breaker_state_is_exported_as_metrics(rt: Runtime, service: dict[str, Any]) -> None:
    from spane.monitoring.state import exposition

    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "guarded_call"}]})
    spane.run("guarded", {}, timeout=TIMEOUT)
    text = exposition(rt).decode()
    assert 'spane_circuit_breaker_state{breaker="guarded_call",state="closed"} 1.0' in text
    assert 'spane_circuit_breaker_failures{breaker="guarded_call"} 1.0' in text
    spane.run("guarded", {}, timeout=TIMEOUT)
    text = exposition(rt).decode()
    assert 'spane_circuit_breaker_state{breaker="guarded_call",state="open"} 1.0' in text
    assert 'spane_circuit_breaker_state{breaker="guarded_call",state="closed"} 0.0' in text


def test_node_code_may_defer_itself(rt: Runtime) -> None:
    spane.register_workflow({"id": "later", "nodes": [{"id": "a", "type": "defers_once"}]})
    started = time.time()
    eid = spane.enqueue_workflow("later", {})
    done = spane.wait(eid, timeout=TIMEOUT)
    assert done.status == "completed" and done.output == {"attempt": 1}
    (deferred,) = events(eid, "a", "deferred")
    assert deferred.detail == "the service asked us to come back later"
    assert done.finished_at is not None and done.finished_at - started >= 0.3


def test_reset_closes_a_breaker_and_unknown_names_are_refused(
    rt: Runtime, service: dict[str, Any]
) -> None:
    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "guarded_call"}]})
    for _ in range(2):
        spane.run("guarded", {}, timeout=TIMEOUT)
    assert spane.breakers()[0].state == "open"
    spane.reset_breaker("guarded_call")
    assert (spane.breakers()[0].state, spane.breakers()[0].failures) == ("closed", 0)
    with pytest.raises(spane.UnknownBreaker, match="spane breakers"):
        spane.reset_breaker("no-such-breaker")


def test_cli_lists_and_resets_breakers(
    rt: Runtime, service: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    spane.register_workflow({"id": "guarded", "nodes": [{"id": "call", "type": "guarded_call"}]})
    for _ in range(2):
        spane.run("guarded", {}, timeout=TIMEOUT)
    assert main(["breakers", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["state"], listed["failures"]) == ("guarded_call", "open", 2)
    assert main(["breakers"]) == 0
    table = capsys.readouterr().out
    assert "guarded_call" in table and "open" in table and "2/2" in table
    assert main(["breakers", "reset", "guarded_call"]) == 0
    assert "circuit breaker guarded_call is closed" in capsys.readouterr().out
    assert spane.breakers()[0].state == "closed"
    assert main(["breakers", "reset", "nope"]) == 2


# -- the middleware itself, on each shared-state twin -------------------------------------


def _graph(node: dict[str, Any]) -> Graph:
    workflow = {"id": "w", "nodes": [{"id": "n", "type": "http", **node}]}
    return build_graph(msgspec.convert(workflow, Workflow))


def _attempt(config: dict[str, Any]) -> Attempt:
    return Attempt(
        execution_id="e",
        workflow_id="w",
        version=1,
        node_id="n",
        node_type="http",
        lane="default",
        tenant="default",
        attempt=1,
        config=config,
        inline=False,
    )


def _shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    if request.param == "memory":
        yield MemoryState()
    elif request.param == "redis":
        url, namespace = request.getfixturevalue("redis_url"), request.getfixturevalue("namespace")
        yield RedisState(url, namespace)
    else:
        url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
        settings = embedded_settings(tmp_path, **({"database_url": url} if url else {}))
        runtime = Runtime(settings)
        try:
            yield DatabaseState(runtime.store)
        finally:
            runtime.close()


@pytest.fixture(params=["memory", "sqlite"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    """The embedded twins of the shared state: memory and the database (SQLite)."""
    yield from _shared(request, tmp_path)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def every_shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    """Every twin of the shared state: memory, SQLite, PostgreSQL, Redis."""
    yield from _shared(request, tmp_path)


def _run(breaker: CircuitBreaker, config: dict[str, Any], result: AttemptResult) -> None:
    attempt = _attempt(config)
    breaker.before_attempt(None, attempt)  # type: ignore[arg-type]
    breaker.after_attempt(None, attempt, result)  # type: ignore[arg-type]


def test_breaker_per_host_opens_lets_one_trial_through_and_closes(
    every_shared: SharedState,
) -> None:
    shared = every_shared
    # Redis keeps opened_at in whole seconds, so a breaker may half-open up to 1s early.
    graph = _graph({"breaker": {"fail_max": 2, "reset_timeout": 2, "key": "host(config.url)"}})
    breaker = CircuitBreaker(shared, lambda _w, _v: graph)
    down = {"url": "https://down.example.com/x"}
    failed = AttemptResult(AttemptOutcome.RETRIED, "503", spane.NodeFailed("503"))
    for _ in range(2):
        _run(breaker, down, failed)
    # Another host has a breaker of its own, still closed.
    _run(breaker, {"url": "http://up.example.com:8080/"}, AttemptResult(AttemptOutcome.COMPLETED))
    states = {s.name: s.state for s in breaker.status()}
    assert states == {"http:down.example.com": "open", "http:up.example.com:8080": "closed"}

    with pytest.raises(Defer) as deferred:
        breaker.before_attempt(None, _attempt(down))  # type: ignore[arg-type]
    assert deferred.value.reason == "circuit breaker http:down.example.com is open"
    assert 0 < deferred.value.until - time.time() <= 2.01

    time.sleep(max(0.0, deferred.value.until - time.time()) + 0.05)
    trial = _attempt(down)
    breaker.before_attempt(None, trial)  # type: ignore[arg-type]
    assert breaker.status()[0].state == "half-open"
    with pytest.raises(Defer, match="half-open; a trial is running"):
        breaker.before_attempt(None, _attempt(down))  # type: ignore[arg-type]
    breaker.after_attempt(None, trial, AttemptResult(AttemptOutcome.COMPLETED))  # type: ignore[arg-type]
    assert breaker.status()[0].state == "closed"
    breaker.before_attempt(None, _attempt(down))  # type: ignore[arg-type]


def test_failed_trial_opens_again(shared: SharedState) -> None:
    graph = _graph({"breaker": {"fail_max": 1, "reset_timeout": 1}})
    breaker = CircuitBreaker(shared, lambda _w, _v: graph)
    timeout = AttemptResult(AttemptOutcome.TIMED_OUT, "timed out", NodeTimeout())
    _run(breaker, {}, timeout)
    assert breaker.status()[0].state == "open"
    time.sleep(1.05)
    _run(breaker, {}, timeout)  # the trial
    assert breaker.status()[0].state == "open"
    with pytest.raises(Defer, match="circuit breaker http is open"):
        breaker.before_attempt(None, _attempt({}))  # type: ignore[arg-type]


def test_which_failures_count() -> None:
    spec = spane.Breaker(exclude=["KeyError", "tests.test_protection.Business"])
    assert spec.counts(RuntimeError("boom"))
    assert spec.counts(NodeTimeout())
    assert spec.counts(spane.NodeFailed("503"))
    assert not spec.counts(spane.NodeFailed("404", retryable=False))
    assert spane.Breaker(count_non_retryable=True).counts(spane.NodeFailed("x", retryable=False))
    assert not spec.counts(KeyError("k"))
    assert not spec.counts(Business())
    assert not spec.counts(spane.InputError("output is not JSON"))


class Business(Exception):
    """A failure of the request, not of the service."""


def test_uncounted_failures_count_as_success(shared: SharedState) -> None:
    graph = _graph({"breaker": {"fail_max": 2}})
    breaker = CircuitBreaker(shared, lambda _w, _v: graph)
    retry = AttemptResult(AttemptOutcome.RETRIED, "503", spane.NodeFailed("503"))
    _run(breaker, {}, retry)
    permanent = spane.NodeFailed("404", retryable=False)
    _run(breaker, {}, AttemptResult(AttemptOutcome.FAILED, "404", permanent))
    _run(breaker, {}, retry)
    assert (breaker.status()[0].state, breaker.status()[0].failures) == ("closed", 1)


def test_rate_limit_defers_to_the_next_window(shared: SharedState) -> None:
    graph = _graph({"rate_limit": {"limit": 3, "per": "1s", "key": "config.account"}})
    limits = RateLimits(shared, lambda _w, _v: graph, "test")
    # Start right after a second boundary so the whole test falls in one window.
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)
    for _ in range(3):
        limits.before_attempt(None, _attempt({"account": "a"}))  # type: ignore[arg-type]
    with pytest.raises(Defer) as deferred:
        limits.before_attempt(None, _attempt({"account": "a"}))  # type: ignore[arg-type]
    assert deferred.value.reason == "rate limit http:a (3 per 1s) reached"
    window_end = math.floor(time.time()) + 1
    assert window_end <= deferred.value.until <= window_end + 0.5
    limits.before_attempt(None, _attempt({"account": "b"}))  # type: ignore[arg-type]
    time.sleep(window_end - time.time() + 0.01)
    limits.before_attempt(None, _attempt({"account": "a"}))  # type: ignore[arg-type]


def test_concurrent_hits_never_exceed_the_limit(every_shared: SharedState) -> None:
    # Sixteen threads race for a window of ten: exactly ten win, whatever the backend.
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)
    limiter = WindowRateLimiter(every_shared.rate_backend, "race", limit=10, window=2)

    def hit(_: int) -> bool:
        with limiter.acquire(raise_on_failure=False) as acquired:
            return bool(acquired)

    with ThreadPoolExecutor(16) as pool:
        won = sum(pool.map(hit, range(16)))
    assert won == 10


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("redis", marks=pytest.mark.integration),
    ],
)
def test_workers_with_their_own_connections_share_a_breaker(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    graph = _graph({"breaker": {"fail_max": 2, "reset_timeout": 30}})
    runtimes: list[Runtime] = []

    def worker() -> CircuitBreaker:
        """A breaker middleware with its own connection, as another worker has."""
        state: SharedState
        if kind == "redis":
            state = RedisState(
                request.getfixturevalue("redis_url"), request.getfixturevalue("namespace")
            )
        else:
            url = request.getfixturevalue("pg_url") if kind == "postgresql" else ""
            runtimes.append(
                Runtime(embedded_settings(tmp_path, **({"database_url": url} if url else {})))
            )
            state = DatabaseState(runtimes[-1].store)
        return CircuitBreaker(state, lambda _w, _v: graph)

    try:
        a, b = worker(), worker()
        failed = AttemptResult(AttemptOutcome.FAILED, "503", spane.NodeFailed("503"))
        _run(a, {}, failed)
        _run(b, {}, failed)  # failures seen by either worker add up
        assert [s.state for s in b.status()] == ["open"]
        with pytest.raises(Defer, match="circuit breaker http is open"):
            a.before_attempt(None, _attempt({}))  # type: ignore[arg-type]
        b.reset("http")
        a.before_attempt(None, _attempt({}))  # type: ignore[arg-type]
    finally:
        for runtime in runtimes:
            runtime.close()
