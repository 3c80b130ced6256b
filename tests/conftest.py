"""Shared fixtures: the embedded twin for logic tests, real services for integration.

Real-service fixtures skip when the service is missing, and fail under ``CI=true``.
Each test gets its own PostgreSQL database and its own Redis namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

import spane
from spane import logs
from spane.runtime import Runtime
from spane.settings import Settings
from tests.faults import client_runtime
from tests.history import BACKENDS
from tests.s3server import s3_bucket, s3_endpoint
from tests.services import (
    AMQP_URL,
    REDIS_URL,
    delete_rabbit_queues,
    private_database,
    private_namespace,
    reachable,
)
from tests.workers import WorkerPool

CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, port: int) -> None:
    """Skip (or fail under CI) when a service is not listening on 127.0.0.1."""
    if not reachable(port):
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

    with client_runtime(embedded_settings(tmp_path)) as runtime:
        yield runtime


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL", 5432)
    with private_database() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The local Redis server."""
    require_service("Redis", 6379)
    return REDIS_URL


@pytest.fixture
def amqp_url() -> str:
    """The local RabbitMQ server."""
    require_service("RabbitMQ", 5672)
    return AMQP_URL


@pytest.fixture
def namespace() -> Iterator[str]:
    """A queue namespace of this test's own (Redis keys are removed afterwards)."""
    with private_namespace() as name:
        yield name


def _client(
    tmp_path: Path, broker_url: str, pg_url: str, namespace: str
) -> AbstractContextManager[Runtime]:
    """A client runtime on ``broker_url`` + PostgreSQL, with the test node types."""
    import tests.nodes  # noqa: F401

    settings = Settings(
        broker_url=broker_url,
        database_url=pg_url,
        blob_url=str(tmp_path / "blobs"),
        namespace=namespace,
    )
    return client_runtime(settings)


@pytest.fixture
def prod(tmp_path: Path, pg_url: str, redis_url: str, namespace: str) -> Iterator[Runtime]:
    """A client runtime on Redis + PostgreSQL (workers are started with ``workers``)."""
    with _client(tmp_path, redis_url, pg_url, namespace) as runtime:
        yield runtime


@pytest.fixture
def rabbit(tmp_path: Path, pg_url: str, amqp_url: str, namespace: str) -> Iterator[Runtime]:
    """A client runtime on RabbitMQ + PostgreSQL; its queues are deleted afterwards."""
    with _client(tmp_path, amqp_url, pg_url, namespace) as runtime:
        try:
            yield runtime
        finally:
            delete_rabbit_queues(runtime.broker.channel, namespace)  # type: ignore[attr-defined]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerPool]:
    """Starts real ``dramatiq spane.actors`` subprocesses; stops them (by pid) afterwards."""
    with WorkerPool(tmp_path) as pool:
        yield pool


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
