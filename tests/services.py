"""The local services, for the tests and ``bench/``: reachability, private databases and
queue namespaces, free ports, and a Redis peak-memory probe.

Only 127.0.0.1 is touched. A database or namespace made here is removed by the same
context manager that made it; the shared Redis is never flushed, only our keys deleted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Self

HOST = "127.0.0.1"
REDIS_URL = f"redis://{HOST}:6379/0"
AMQP_URL = f"amqp://guest:guest@{HOST}:5672/%2F"
PG_PORT, REDIS_PORT, AMQP_PORT = 5432, 6379, 5672


def pg_user() -> str:
    """The PostgreSQL role for private databases: ``SPANE_TEST_PG_USER`` (the tests) or
    ``SPANE_BENCH_PG_USER`` (the benchmarks), else postgres."""
    return os.environ.get("SPANE_TEST_PG_USER") or os.environ.get("SPANE_BENCH_PG_USER", "postgres")


def pg_admin_dsn() -> str:
    """A libpq DSN of the shared server's maintenance database."""
    return f"host={HOST} port={PG_PORT} user={pg_user()} dbname=postgres connect_timeout=5"


def reachable(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def private_database(prefix: str = "spane_test") -> Iterator[str]:
    """A fresh, empty database ``PREFIX_<random>`` on the shared server; dropped afterwards.

    Yields its SQLAlchemy URL.
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{pg_user()}@{HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_keys(redis_url: str, pattern: str) -> int:
    """Delete the Redis keys matching ``pattern`` (never the whole database)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(pattern, count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


@contextlib.contextmanager
def private_namespace(prefix: str = "spanetest", redis_url: str = REDIS_URL) -> Iterator[str]:
    """A queue namespace of our own; its Redis keys are deleted afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        import redis

        with contextlib.suppress(redis.RedisError):  # no Redis: there is nothing to delete
            delete_keys(redis_url, f"{name}*")


def delete_rabbit_queues(channel: Any, namespace: str) -> None:
    """Delete every RabbitMQ queue of a namespace: each lane's, its delay and dead queues."""
    from spane.registry import LANES

    for lane in LANES:
        for suffix in ("", ".DQ", ".XQ", ".DQ.XQ"):
            channel.queue_delete(queue=f"{namespace}.{lane}{suffix}")


class Poller:
    """Calls ``poll`` every ``interval`` seconds in a thread while in a ``with`` block."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """After the last poll: release what the poller holds."""

    def _loop(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.close()


class PeakMemory(Poller):
    """Polls Redis ``used_memory``; ``delta`` is the peak over the level at the start."""

    def __init__(self, url: str = REDIS_URL, interval: float = 0.002) -> None:
        import redis

        super().__init__(interval)
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.baseline = self.peak = self._used()

    def _used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def poll(self) -> None:
        self.peak = max(self.peak, self._used())

    def close(self) -> None:
        self.poll()
        self.client.close()

    @property
    def delta(self) -> int:
        return self.peak - self.baseline
