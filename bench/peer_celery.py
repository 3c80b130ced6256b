"""Celery canvas tasks for the peer comparison (``bench.py compare``).

The chain is ``chain(noop.si(), ...)``; the fan-out a ``chord`` of no-op tasks with a
join, on a Redis broker and result backend (a chord needs one). Configured by
``PEER_REDIS_URL`` and ``PEER_QUEUE``.
"""

from __future__ import annotations

import os

import redis
from celery import Celery, chain, chord

URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/11")
QUEUE = os.environ.get("PEER_QUEUE", "peer")
app = Celery("peer", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=f"{QUEUE}-celery",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
client = redis.Redis.from_url(URL)


@app.task
def noop(*_args: object) -> None:
    """One step of a chain or one branch of a chord."""


@app.task
def done(key: str, *_args: object) -> None:
    """The end of a chain or a chord's join: count it where the client looks."""
    client.incr(key)


def send_chain(key: str, length: int) -> None:
    """One canvas chain of ``length`` steps whose last step counts it done."""
    chain(*[noop.si() for _ in range(length - 1)], done.si(key)).apply_async()


def send_fanout(key: str, width: int) -> None:
    """A chord of ``width`` no-op tasks whose join counts it done."""
    chord([noop.si() for _ in range(width)])(done.si(key))
