"""Broker construction: Redis, RabbitMQ, or Dramatiq's StubBroker when embedded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dramatiq import Broker, Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries

from .errors import ConfigurationError
from .middleware import SharedState, default_middleware
from .registry import LANES
from .settings import Settings

if TYPE_CHECKING:
    from .definitions import Graph


def queue_name(settings: Settings, lane: str) -> str:
    """Return the queue that carries a lane's messages, e.g. ``spane.high``."""
    return f"{settings.namespace}.{lane}"


def make_broker(
    settings: Settings, shared: SharedState, graph: Callable[[str, int], Graph]
) -> Broker:
    """Create the broker for ``settings`` with Spane's middleware, lane queues declared.

    Args:
        settings: Which broker, and the middleware's settings.
        shared: Where circuit breakers and rate limits keep their shared state.
        graph: Returns the graph of a workflow version (for node declarations).
    """
    # Node failures are retried by Spane itself (per node policy, state in the database);
    # Dramatiq's Retries only covers infrastructure errors such as a database outage.
    middleware: list[Middleware] = [
        Retries(max_retries=20, min_backoff=500, max_backoff=30_000),
        CurrentMessage(),
    ]
    middleware += default_middleware(settings, shared, graph)
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
        raise ConfigurationError(f"unsupported SPANE_BROKER_URL {url!r}")
    for lane in LANES:
        broker.declare_queue(queue_name(settings, lane))
    return broker
