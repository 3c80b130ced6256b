"""A lost node message is sent again; a long backlog waiting in the broker is not.

No workers run here: the node messages stay in the broker, as behind busy workers, and
recovery is asked at a moment well past their lease, as if they had waited that long.
The first few messages are taken off the queue and lost, as by a worker killed right
after prefetching them. Every queued node must then have exactly one message in the
broker: the lost ones sent again, none of the waiting ones duplicated. (A message lost
from the middle of a backlog is found the same way once the queue moves past it.)
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import dramatiq
import pytest

import spane
from spane import backlog, recovery
from spane.broker import queue_name
from spane.inflight import inflight
from spane.runtime import Runtime
from tests import faults

BACKLOG = 300
LOST = 3


@pytest.fixture(autouse=True)
def short_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Less leeway between a node's queueing and its message, so the test waits less."""
    monkeypatch.setattr(backlog, "SLACK_SECONDS", 0.5)


def _backlog(rt: Runtime, lose: Callable[[], None] | None = None) -> list[str]:
    """Queue ``LOST`` nodes, let ``lose`` take their messages, then the rest of the backlog."""
    spane.register_workflow({"id": "backlog", "nodes": [{"id": "a", "type": "echo"}]})
    ids = [spane.enqueue_workflow("backlog", i) for i in range(LOST)]
    if lose is not None:
        lose()
    time.sleep(backlog.SLACK_SECONDS + 0.2)
    return ids + [spane.enqueue_workflow("backlog", i) for i in range(LOST, BACKLOG)]


def _later(rt: Runtime) -> float:
    """A moment when every queued node is past its lease."""
    return time.time() + 2 * rt.settings.lease_seconds


def _keys(payloads: list[bytes]) -> collections.Counter[str]:
    decode = dramatiq.get_encoder().decode
    return collections.Counter(decode(p)["kwargs"]["execution_id"] for p in payloads)


def _assert_one_message_each(ids: list[str], messages: collections.Counter[str]) -> None:
    assert set(messages) == set(ids)
    duplicated = [k for k, n in messages.items() if n > 1]
    assert duplicated == [], f"{len(duplicated)} of {len(ids)} nodes got a second message"


def test_redis_backlog_is_not_duplicated_and_lost_messages_are_sent(prod: Runtime) -> None:
    import redis

    client = redis.Redis.from_url(prod.settings.broker_url)
    key = f"{prod.settings.namespace}:{queue_name(prod.settings, 'default')}"

    def lose() -> None:
        assert client.llen(key) == LOST
        for _ in range(LOST):
            client.hdel(f"{key}.msgs", client.lpop(key))

    try:
        ids = _backlog(prod, lose)
        assert client.llen(key) == BACKLOG - LOST
        assert recovery.resend_lost(prod, _later(prod)) == BACKLOG
        _assert_one_message_each(ids, _keys(list(client.hvals(f"{key}.msgs"))))
    finally:
        client.close()


def test_embedded_backlog_is_not_duplicated_and_lost_messages_are_sent(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rt, "ensure_worker", lambda: None)  # the messages stay queued
    queue = rt.broker.queues[queue_name(rt.settings, "default")].queue
    ids = _backlog(rt, lambda: [queue.popleft() for _ in range(LOST)] and None)
    assert recovery.resend_lost(rt, _later(rt)) == BACKLOG
    _assert_one_message_each(ids, _keys(list(queue)))


def test_rabbitmq_backlog_is_not_duplicated_and_a_purged_queue_is_sent_again(
    rabbit: Runtime,
) -> None:
    _backlog(rabbit)
    queue = queue_name(rabbit.settings, "default")
    faults.wait_until(
        lambda: rabbit.broker.get_queue_message_counts(queue)[0] == BACKLOG,  # type: ignore[attr-defined]
        30,
        "the backlog to reach RabbitMQ",
    )
    later = _later(rabbit)
    assert recovery.resend_lost(rabbit, later) == BACKLOG
    assert rabbit.broker.get_queue_message_counts(queue)[0] == BACKLOG  # type: ignore[attr-defined]
    rabbit.broker.flush(queue)  # the broker loses every message
    assert recovery.resend_lost(rabbit, later + 2 * rabbit.settings.lease_seconds) == BACKLOG
    faults.wait_until(
        lambda: rabbit.broker.get_queue_message_counts(queue)[0] == BACKLOG,  # type: ignore[attr-defined]
        30,
        "the lost messages to be sent again",
    )


def test_messages_a_worker_holds_are_heartbeated(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker holding prefetched messages behind busy threads keeps their lease."""
    monkeypatch.setattr(rt, "ensure_worker", lambda: None)
    spane.register_workflow({"id": "held", "nodes": [{"id": "a", "type": "echo"}]})
    first, second = (spane.enqueue_workflow("held", i) for i in range(2))
    consumer = rt.broker.consume(queue_name(rt.settings, "default"), prefetch=1, timeout=100)
    message = next(consumer)
    assert message is not None and message.kwargs["execution_id"] == first
    assert (first, "a", 1) in inflight.heartbeat_keys()
    time.sleep(0.3)
    rt.store.renew_leases(inflight.heartbeat_keys())

    def lease(execution_id: str) -> float:
        query = "SELECT lease_until FROM spane_nodes WHERE execution_id = :e"
        return float(faults.scalar(rt.engine, query, e=execution_id))

    assert lease(first) > lease(second)
    consumer.ack(message)
    assert (first, "a", 1) not in inflight.heartbeat_keys()
    consumer.close()


def test_a_received_message_is_heartbeated_for_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message its consumer dropped without settling it stops holding its node's lease."""
    from spane import inflight as inflight_module

    inflight.received("dropped-message", ("e", "n", 1))
    assert ("e", "n", 1) in inflight.heartbeat_keys()
    monkeypatch.setattr(inflight_module, "RECEIVED_TTL", 0.0)
    assert ("e", "n", 1) not in inflight.heartbeat_keys()
