"""Raw Dramatiq actors for the peer comparison (``bench.py compare``); nothing persisted.

The chain is a Dramatiq ``pipeline`` of no-op actors; the fan-out is a group of no-op
actors counting down in Redis, the last of which sends the join, as Spane's join does.
Configured by ``PEER_REDIS_URL`` and ``PEER_QUEUE``.
"""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/11")
QUEUE = os.environ.get("PEER_QUEUE", "peer")
broker = RedisBroker(url=URL, namespace=f"{QUEUE}-dq")
dramatiq.set_broker(broker)
client = redis.Redis.from_url(URL)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(*_args: object) -> None:
    """One step of a chain."""


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def done(key: str, *_args: object) -> None:
    """The end of a chain or a fan-in: count it where the client looks."""
    client.incr(key)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def branch(key: str, width: int) -> None:
    """One branch of a fan-out; the last one to finish runs the join."""
    if client.incr(f"{key}:left") == width:
        done.send(key)


def send_chain(key: str, length: int) -> None:
    """One pipeline of ``length`` steps whose last step counts it done."""
    steps = [noop.message()]
    steps += [noop.message_with_options(pipe_ignore=True) for _ in range(length - 2)]
    steps.append(done.message_with_options(args=(key,), pipe_ignore=True))
    dramatiq.pipeline(steps).run()


def send_fanout(key: str, width: int) -> None:
    """A 1 -> width -> 1 fan-out: the root sends the branches, the last branch the join."""
    dramatiq.group([branch.message(key, width) for _ in range(width)]).run()
