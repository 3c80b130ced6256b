"""Tell a lost node message from one waiting its turn in the broker.

A queued node whose lease ran out either lost its message (a flushed Redis, a worker
killed with the message prefetched) or is still behind a long backlog. Queues are first
in, first out, so the oldest message still waiting on the node's queue decides: a node
queued after it is waiting its turn, however long the backlog; a node queued before it
had its message taken off the queue already, by a worker that still holds it (which
heartbeats it, so its lease does not run out) or by nobody, because it was lost. Only
those are sent again, so a long backlog is never duplicated wholesale.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Broker

#: Leeway between the moment a node is queued and its message's own timestamp (the
#: message is sent after the transaction commits, possibly from another machine).
SLACK_SECONDS = 5.0


def kind(broker: Broker) -> str:
    """``redis``, ``rabbitmq`` or ``stub``: which Dramatiq broker ``broker`` is built on
    (Spane's brokers subclass Dramatiq's, so the class's own name does not tell)."""
    names = {cls.__name__ for cls in type(broker).__mro__}
    if "RedisBroker" in names:
        return "redis"
    return "rabbitmq" if "RabbitmqBroker" in names else "stub"


def oldest_waiting(broker: Broker, queue_name: str) -> float | None:
    """Return when the oldest message waiting on ``queue_name`` was created (epoch seconds).

    None when nothing waits. RabbitMQ cannot be peeked without taking the message: a
    RabbitMQ queue that holds messages answers 0.0, as if the oldest were older than
    anything (RabbitMQ does not lose single messages; a purged queue is empty).
    """
    which = kind(broker)
    if which == "redis":
        return _redis_oldest(broker, queue_name)
    if which == "rabbitmq":
        ready = broker.get_queue_message_counts(queue_name)[0]  # type: ignore[attr-defined]
        return None if ready == 0 else 0.0
    queue = getattr(broker, "queues", {}).get(queue_name)  # the embedded StubBroker
    if queue is None:
        return None
    try:
        head = queue.queue[0]
    except IndexError:
        return None
    return _created(head)


def is_lost(oldest: float | None, queued_at: float) -> bool:
    """Tell whether a node queued at ``queued_at`` lost its message, given ``oldest``."""
    return oldest is None or oldest > queued_at + SLACK_SECONDS


def _redis_oldest(broker: Any, queue_name: str) -> float | None:
    key = f"{broker.namespace}:{queue_name}"
    head = broker.client.lrange(key, 0, 0)
    if not head:
        return None
    data = broker.client.hget(f"{key}.msgs", head[0])
    return 0.0 if data is None else _created(data)


def _created(data: bytes) -> float:
    # Bytes that are not a message decode as one with timestamp 0: the oldest possible,
    # so nothing is sent again until they are out of the way.
    message = dramatiq.get_encoder().decode(data)
    return float(message.get("message_timestamp") or 0) / 1000.0
