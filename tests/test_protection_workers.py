"""Breakers, rate limits and Retry-After across real worker processes on Redis and
PostgreSQL, calling a real HTTP service on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

import spane
from spane.runtime import Runtime
from tests.history import events, wait_for
from tests.httpserver import Service, downstream
from tests.workers import WorkerPool

__all__ = ["downstream"]
pytestmark = pytest.mark.integration
TIMEOUT = 60


def _caller(workflow_id: str, url: str, lane: str = "default", **node: Any) -> dict[str, Any]:
    call = {"id": "call", "type": "http", "config": {"url": url}, **node}
    return {"id": workflow_id, "lane": lane, "nodes": [call]}


def test_breaker_opened_in_one_worker_is_open_in_the_other(
    prod: Runtime, workers: WorkerPool, downstream: Service
) -> None:
    # Worker A serves only the high lane, worker B only the default lane: the failures
    # are seen by A alone, and B must find the breaker open.
    ns = prod.settings.namespace
    a = workers.start(prod.settings, threads=2, queues=(f"{ns}.high",))
    workers.start(prod.settings, threads=2, queues=(f"{ns}.default",))
    breaker = {"fail_max": 3, "reset_timeout": "5s", "key": "host(config.url)"}
    once = {"retry": {"max_attempts": 1}, "breaker": breaker}
    spane.register_workflow(_caller("pay-a", downstream.url + "/pay", "high", **once))
    spane.register_workflow(_caller("pay-b", downstream.url + "/pay", "default", **once))
    name = f"http:{downstream.url.removeprefix('http://')}"

    downstream.set("/pay", status=503)
    for _ in range(3):
        assert spane.run("pay-a", {}, timeout=TIMEOUT).status == "failed"
    (status,) = spane.breakers()
    assert (status.name, status.state, status.failures) == (name, "open", 3)
    assert "circuit breaker opened" in a.output()

    downstream.set("/pay", status=200)
    eid = spane.enqueue_workflow("pay-b", {})
    (deferred, *_) = wait_for(lambda: events(eid, "call", "deferred"), "a deferral", TIMEOUT)
    assert deferred.detail == f"circuit breaker {name} is open"
    assert len(downstream.requests("/pay")) == 3  # B did not call the service

    # After the reset timeout B's trial runs, succeeds, and closes the breaker for all.
    done = spane.wait(eid, timeout=TIMEOUT)
    assert done.status == "completed", done.error
    assert not events(eid, "call", "retrying") and not events(eid, "call", "failed")
    assert spane.breakers()[0].state == "closed"
    assert spane.run("pay-a", {}, timeout=TIMEOUT).status == "completed"


def test_rate_limit_is_held_across_two_workers(
    prod: Runtime, workers: WorkerPool, downstream: Service
) -> None:
    first = workers.start(prod.settings, threads=8)
    second = workers.start(prod.settings, threads=8)
    limit = {"limit": 10, "per": "1s"}
    spane.register_workflow(_caller("limited", downstream.url + "/limited", rate_limit=limit))
    ids = [spane.enqueue_workflow("limited", {}) for _ in range(125)]
    wait_for(lambda: len(downstream.requests("/limited")) >= 110, "110 requests", TIMEOUT)
    times = sorted(s.at for s in downstream.requests("/limited"))
    in_ten_seconds = sum(1 for t in times if t < times[0] + 10)
    print(f"\nrate limit 10/s, two workers: {in_ten_seconds} requests in 10 s")
    assert 90 <= in_ten_seconds <= 110
    for worker in (first, second):
        assert "http response" in worker.output()  # both workers took part
    assert any(events(eid, "call", "deferred") for eid in ids)


def test_429_with_retry_after_defers_the_node(
    prod: Runtime, workers: WorkerPool, downstream: Service
) -> None:
    workers.start(prod.settings, threads=2)
    downstream.set("/busy", status=429, retry_after="2", times=1)
    spane.register_workflow(_caller("busy", downstream.url + "/busy", retry={"max_attempts": 1}))
    ex = spane.run("busy", {}, timeout=TIMEOUT)
    assert ex.status == "completed", ex.error
    (deferred,) = events(ex.id, "call", "deferred")
    assert deferred.detail == "HTTP 429 from 127.0.0.1: Retry-After 2s"
    first, second = (s.at for s in downstream.requests("/busy"))
    print(f"\n429 with Retry-After: 2 -> next request {second - first:.2f} s later")
    assert 2.0 <= second - first < 2.0 + 10  # the broker's delay, on a loaded machine
