"""Broker construction: Redis, RabbitMQ, or Dramatiq's StubBroker when embedded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dramatiq import Broker, Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionFailed
from dramatiq.middleware import CurrentMessage, Retries

from .errors import ConfigurationError
from .middleware import SharedState, Tracing, default_middleware
from .registry import LANES
from .settings import Settings, mask_url

if TYPE_CHECKING:
    from .definitions import Graph
    from .payloads import Payloads


def queue_name(settings: Settings, lane: str) -> str:
    """Return the queue that carries a lane's messages, e.g. ``spane.high``."""
    return f"{settings.namespace}.{lane}"


def make_broker(
    settings: Settings,
    shared: SharedState,
    graph: Callable[[str, int], Graph],
    tracing: Tracing,
    payloads: Payloads,
) -> Broker:
    """Create the broker for ``settings`` with Spane's middleware, lane queues declared.

    Args:
        settings: Which broker, and the middleware's settings.
        shared: Where circuit breakers and rate limits keep their shared state.
        graph: Returns the graph of a workflow version (for node declarations).
        tracing: The tracing middleware (see ``default_middleware``).
        payloads: Packs message arguments (the claim check).
    """
    # Node failures are retried by Spane itself (per node policy, state in the database);
    # Dramatiq's Retries only covers infrastructure errors such as a database outage.
    middleware: list[Middleware] = [
        Retries(max_retries=20, min_backoff=500, max_backoff=30_000),
        CurrentMessage(),
    ]
    middleware += default_middleware(settings, shared, graph, tracing, payloads)
    url = settings.broker_url
    broker: Broker
    if not url:
        broker = StubBroker(middleware=middleware)
    elif url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=url, middleware=middleware, namespace=settings.namespace
        )
    elif url.startswith(("amqp://", "amqps://")):
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker
        except ImportError:
            raise ConfigurationError(
                "RabbitMQ needs pika: pip install 'dramatiq[rabbitmq]'"
            ) from None
        broker = RabbitmqBroker(url=url, middleware=middleware)
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
            depths[lane] = (
                int(client.llen(prefix + queue)),
                int(client.hlen(f"{prefix}{dq_name(queue)}.msgs")),
            )
        elif hasattr(broker, "get_queue_message_counts"):  # RabbitMQ
            ready, delayed, _dead = broker.get_queue_message_counts(queue)
            depths[lane] = (int(ready), int(delayed))
    return depths
