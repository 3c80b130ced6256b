"""Broker construction: Redis, RabbitMQ, or Dramatiq's StubBroker when embedded."""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionFailed
from dramatiq.middleware import CurrentMessage, Retries

from .consumer import SafeConsuming
from .errors import ConfigurationError
from .messages import queue_name
from .registry import LANES
from .settings import Settings, mask_url

__all__ = ["check_broker", "make_broker", "queue_depths", "queue_name"]


class _StubBroker(SafeConsuming, StubBroker):
    """The in-process broker, its consumers guarded."""


def make_broker(settings: Settings, middleware: list[Middleware]) -> Broker:
    """Create the broker for ``settings`` with ``middleware``, lane queues declared.

    Its consumers survive bytes that are not a message (``consumer.SafeConsuming``).

    Args:
        settings: Which broker.
        middleware: Spane's middleware, built with what each needs, in stack order.
    """
    # Node failures are retried by Spane itself (per node policy, state in the database);
    # Dramatiq's Retries only covers infrastructure errors such as a database outage.
    stack: list[Middleware] = [
        Retries(max_retries=20, min_backoff=500, max_backoff=30_000),
        CurrentMessage(),
        *middleware,
    ]
    url = settings.broker_url
    broker: Broker
    if not url:
        broker = _StubBroker(middleware=stack)
    elif url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        class _RedisBroker(SafeConsuming, RedisBroker):
            """Redis, its consumers guarded."""

        broker = _RedisBroker(  # type: ignore[no-untyped-call]
            url=url, middleware=stack, namespace=settings.namespace
        )
    elif url.startswith(("amqp://", "amqps://")):
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker
        except ImportError:
            raise ConfigurationError(
                "RabbitMQ needs pika: pip install 'dramatiq[rabbitmq]'"
            ) from None

        class _RabbitmqBroker(SafeConsuming, RabbitmqBroker):
            """RabbitMQ, its consumers guarded."""

        broker = _RabbitmqBroker(url=url, middleware=stack)
    else:
        raise ConfigurationError(f"unsupported SPANE_BROKER_URL {mask_url(url)!r}")
    for lane in LANES:
        broker.declare_queue(queue_name(settings, lane))
    return broker


def check_broker(broker: Broker) -> None:
    """Make one round trip to the broker's server, so a worker that cannot reach it says
    so at start.

    Raises:
        One of ``outages.BROKER_DOWN`` if the server does not answer.
    """
    if isinstance(broker, StubBroker):
        return  # in this process: nothing to reach
    client = getattr(broker, "client", None)
    if client is not None:  # Redis
        client.ping()
    else:  # RabbitMQ: opening the connection (a property) is the check
        import pika.exceptions  # type: ignore[import-untyped]  # there with RabbitMQ

        try:
            broker.connection.process_data_events(0)  # type: ignore[attr-defined]
        except pika.exceptions.AMQPError as exc:
            raise ConnectionFailed(str(exc) or type(exc).__name__) from None  # type: ignore[no-untyped-call]


def ready_count(broker: Broker, queue: str) -> int:
    """Messages ready on ``queue`` (Redis, RabbitMQ, or the embedded StubBroker), read
    with a plain queue-length command, so asking never registers a consumer."""
    client: Any = getattr(broker, "client", None)
    if client is not None:  # Redis: a list of ready ids
        return int(client.llen(f"{broker.namespace}:{queue}"))  # type: ignore[attr-defined]
    if hasattr(broker, "get_queue_message_counts"):  # RabbitMQ
        return int(broker.get_queue_message_counts(queue)[0])
    found = getattr(broker, "queues", {}).get(queue)
    return 0 if found is None else int(found.qsize())


def queue_depths(broker: Broker, settings: Settings) -> dict[str, tuple[int, int]]:
    """Return ``{lane: (ready, delayed)}`` message counts of the lane queues.

    Read with plain queue-length commands, so asking never registers a consumer. The
    embedded broker lives in one process, so it reports nothing to anyone else.
    """
    from dramatiq.common import dq_name

    depths: dict[str, tuple[int, int]] = {}
    client = getattr(broker, "client", None)
    for lane in LANES:
        queue = queue_name(settings, lane)
        if client is not None:  # Redis: a list of ready ids, a hash of delayed messages
            prefix = f"{broker.namespace}:"  # type: ignore[attr-defined]
            delayed = int(client.hlen(f"{prefix}{dq_name(queue)}.msgs"))
            depths[lane] = (ready_count(broker, queue), delayed)
        elif hasattr(broker, "get_queue_message_counts"):  # RabbitMQ
            ready, delayed, _dead = broker.get_queue_message_counts(queue)
            depths[lane] = (int(ready), int(delayed))
    return depths
