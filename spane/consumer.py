"""Consumers that keep a worker serving when a queue holds bytes that are not a message,
and that tell recovery which node messages this worker holds.

The encoder turns such bytes into a message to ``spane.undecodable`` (which records a
dead letter); this wrapper gives that message the queue it was read from, so Dramatiq
acknowledges it on the right consumer, and on Redis the broker's own id for it, so the
acknowledgement removes the bytes from the queue for good.
"""

from __future__ import annotations

import base64
from typing import Any

from dramatiq import Broker
from dramatiq.broker import Consumer, MessageProxy

from .encoder import UNDECODABLE
from .inflight import inflight


class SafeConsumer(Consumer):
    """Wraps a broker's consumer; everything but undecodable messages passes through."""

    def __init__(self, inner: Consumer, broker: Broker, queue_name: str) -> None:
        self._inner = inner
        self._broker = broker
        self._queue_name = queue_name

    def __iter__(self) -> SafeConsumer:
        return self

    def __next__(self) -> MessageProxy | None:
        proxy = next(self._inner)
        if proxy is None:
            return None
        if proxy.actor_name != UNDECODABLE:
            key = _node_key(proxy)
            if key is not None:
                inflight.received(proxy.message_id, key)
            return proxy
        options = dict(proxy.options)
        options["redis_message_id"] = self._redis_id(proxy.kwargs["raw"]) or ""
        return MessageProxy(proxy._message.copy(queue_name=self._queue_name, options=options))

    def _redis_id(self, raw: str) -> str | None:
        client = getattr(self._broker, "client", None)
        namespace = getattr(self._broker, "namespace", None)
        if client is None or namespace is None:
            return None
        data = base64.b64decode(raw)
        for key, value in client.hscan_iter(f"{namespace}:{self._queue_name}.msgs"):
            if value == data:
                return str(key.decode() if isinstance(key, bytes) else key)
        return None

    def ack(self, message: MessageProxy) -> None:
        inflight.settled(message.message_id)
        self._inner.ack(message)

    def nack(self, message: MessageProxy) -> None:
        inflight.settled(message.message_id)
        self._inner.nack(message)

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        for message in messages:
            inflight.settled(message.message_id)
        self._inner.requeue(messages)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _node_key(proxy: MessageProxy) -> tuple[str, str, int] | None:
    """The attempt a node message is for, if it is a well-formed node message."""
    if not proxy.actor_name.startswith("spane.node."):
        return None
    kwargs = proxy.kwargs or {}
    execution_id, node_id, attempt = (kwargs.get(k) for k in ("execution_id", "node_id", "attempt"))
    if isinstance(execution_id, str) and isinstance(node_id, str) and type(attempt) is int:
        return execution_id, node_id, attempt
    return None


class SafeConsuming(Broker):
    """Mixed into a broker class (before it): every consumer is a ``SafeConsumer``."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Consumer:
        inner = super().consume(queue_name, prefetch, timeout)
        return SafeConsumer(inner, self, queue_name)
