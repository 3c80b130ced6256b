"""Shared fixtures: the embedded twin for logic tests, real services for integration.

Real-service fixtures skip when the service is missing, and fail under ``CI=true``.
Each test gets its own PostgreSQL database and its own Redis namespace.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import spane
from spane import logs
from spane import runtime as runtime_module
from spane.broker import queue_name
from spane.runtime import Runtime
from spane.settings import Settings
from tests.faults import client_runtime
from tests.history import BACKENDS
from tests.s3server import s3_bucket, s3_endpoint
from tests.workers import WorkerPool

CI = os.environ.get("CI", "").lower() == "true"
PG_HOST = "127.0.0.1"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Skip (or fail under CI) when a service is not listening on 127.0.0.1."""
    if not _reachable(port):
        message = f"{name} is not running on 127.0.0.1:{port}"
        if CI:
            pytest.fail(message + " (CI=true: services are required)")
        pytest.skip(message)


def embedded_settings(tmp_path: Path, **changes: object) -> Settings:
    """Settings of the embedded twin inside ``tmp_path``."""
    base = Settings(
        broker_url="",
        database_url=f"sqlite:///{tmp_path / 'spane.db'}",
        blob_url=str(tmp_path / "blobs"),
        sweep_interval=0.05,
    )
    return base.with_(**changes)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test configures logging anew (an in-process CLI call sets a quieter level)."""
    yield
    logs.reset()


@pytest.fixture(autouse=True)
def _piped_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's output as when piped: pytest-xdist workers set ``COLUMNS=80``, which the
    CLI honours; a test that wants a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    """An embedded runtime (SQLite, StubBroker, in-process worker), installed globally."""
    import tests.nodes  # noqa: F401  (registers the test node types)

    runtime = Runtime(embedded_settings(tmp_path))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


def _pg_user() -> str:
    return os.environ.get("SPANE_TEST_PG_USER", "postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL", 5432)
    import psycopg

    name = f"spane_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port=5432 user={_pg_user()} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{_pg_user()}@{PG_HOST}:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """The local Redis server."""
    require_service("Redis", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def amqp_url() -> str:
    """The local RabbitMQ server."""
    require_service("RabbitMQ", 5672)
    return "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def namespace() -> Iterator[str]:
    """A queue namespace of this test's own (Redis keys are removed afterwards)."""
    name = f"spanetest{uuid.uuid4().hex[:8]}"
    yield name
    if _reachable(6379):
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(f"{name}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def prod(tmp_path: Path, pg_url: str, redis_url: str, namespace: str) -> Iterator[Runtime]:
    """A client runtime on Redis + PostgreSQL (workers are started with ``workers``)."""
    import tests.nodes  # noqa: F401

    settings = Settings(
        broker_url=redis_url,
        database_url=pg_url,
        blob_url=str(tmp_path / "blobs"),
        namespace=namespace,
    )
    with client_runtime(settings) as runtime:
        yield runtime


@pytest.fixture
def rabbit(tmp_path: Path, pg_url: str, amqp_url: str, namespace: str) -> Iterator[Runtime]:
    """A client runtime on RabbitMQ + PostgreSQL; its queues are deleted afterwards."""
    import tests.nodes  # noqa: F401

    settings = Settings(
        broker_url=amqp_url,
        database_url=pg_url,
        blob_url=str(tmp_path / "blobs"),
        namespace=namespace,
    )
    with client_runtime(settings) as runtime:
        try:
            yield runtime
        finally:
            channel = runtime.broker.channel  # type: ignore[attr-defined]
            for lane in ("high", "default", "low"):
                name = queue_name(settings, lane)
                for queue in (name, f"{name}.DQ", f"{name}.XQ"):
                    channel.queue_delete(queue)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerPool]:
    """Starts real ``dramatiq spane.actors`` subprocesses; stops them (by pid) afterwards."""
    pool = WorkerPool(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


__all__ = ["embedded_settings", "require_service", "s3_bucket", "s3_endpoint", "spane"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Runtime:
    """The embedded twin, or a client runtime on Redis + PostgreSQL with one real worker."""
    if request.param == "embedded":
        runtime: Runtime = request.getfixturevalue("rt")
        return runtime
    runtime = request.getfixturevalue("prod")
    request.getfixturevalue("workers").start(runtime.settings, threads=8)
    return runtime
