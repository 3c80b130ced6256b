"""The same workflows on real workers: Redis + PostgreSQL, and RabbitMQ."""

from __future__ import annotations

from pathlib import Path

import pytest

import spane
from spane.runtime import Runtime
from spane.settings import Settings
from tests.workers import WorkerPool

pytestmark = pytest.mark.integration

MIXED = {
    "id": "mixed",
    "nodes": [
        {"id": "start", "type": "add_one"},
        {
            "id": "route",
            "type": "branch",
            "after": ["start"],
            "config": {"cases": [{"when": "@ > `5`", "next": ["big"]}], "default": ["small"]},
        },
        {"id": "big", "type": "echo", "after": ["route"]},
        {"id": "small", "type": "delay", "after": ["route"], "config": {"duration": "300ms"}},
        {"id": "flaky", "type": "fail", "after": ["start"], "config": {"times": 1}},
        {
            "id": "join",
            "type": "transform",
            "after": ["big", "small", "flaky"],
            "config": {"expression": "@"},
        },
    ],
}


def test_redis_postgres_workers_run_mixed_workflow(prod: Runtime, workers: WorkerPool) -> None:
    workers.start(prod.settings, processes=2, threads=4)
    spane.register_workflow(MIXED)
    small = spane.run("mixed", 1, timeout=60)
    big = spane.run("mixed", 10, timeout=60)
    assert small.status == "completed"
    assert small.output == {"small": 2, "flaky": {"attempt": 2, "input": 2}}
    assert small.nodes["big"].status == "skipped"
    assert small.nodes["flaky"].attempts == 2
    assert big.output == {"big": 11, "flaky": {"attempt": 2, "input": 11}}
    assert big.nodes["small"].status == "skipped"


def test_failing_node_fails_execution_on_workers(prod: Runtime, workers: WorkerPool) -> None:
    workers.start(prod.settings)
    spane.register_workflow(
        {
            "id": "doomed",
            "nodes": [
                {"id": "a", "type": "fail", "config": {"retryable": False}},
                {"id": "b", "type": "echo", "after": ["a"]},
            ],
        }
    )
    ex = spane.run("doomed", 1, timeout=60)
    assert ex.status == "failed"
    assert "planned failure" in (ex.error or "")
    assert ex.nodes["a"].attempts == 1
    assert ex.nodes["b"].status == "cancelled"


def test_rabbitmq_broker(
    tmp_path: Path, pg_url: str, amqp_url: str, namespace: str, workers: WorkerPool
) -> None:
    from spane import runtime as runtime_module

    settings = Settings(
        broker_url=amqp_url,
        database_url=pg_url,
        blob_url=str(tmp_path / "blobs"),
        namespace=namespace,
    )
    rt = Runtime(settings)
    old = runtime_module.install(rt)
    try:
        workers.start(settings)
        spane.register_workflow(MIXED)
        ex = spane.run("mixed", 10, timeout=60)
        assert ex.status == "completed"
        assert ex.output == {"big": 11, "flaky": {"attempt": 2, "input": 11}}
    finally:
        runtime_module.install(old)
        rt.close()
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for lane in ("high", "default", "low"):
            for suffix in ("", ".DQ", ".XQ", ".DQ.XQ"):
                channel.queue_delete(queue=f"{namespace}.{lane}{suffix}")
        connection.close()


FULL = {
    "id": "full",
    "nodes": [
        {"id": "start", "type": "add_one"},
        {
            "id": "route",
            "type": "branch",
            "after": ["start"],
            "config": {"cases": [{"when": "@ > `5`", "next": ["big"]}], "default": ["small"]},
        },
        {"id": "big", "type": "echo", "after": ["route"]},
        {"id": "small", "type": "delay", "after": ["route"], "config": {"duration": "200ms"}},
        {"id": "flaky", "type": "fail", "after": ["start"], "config": {"times": 2}},
        {
            "id": "broken",
            "type": "fail",
            "after": ["start"],
            "continue_on_fail": True,
            "retry": {"max_attempts": 2, "delay": "10ms"},
        },
        {
            "id": "join",
            "type": "transform",
            "after": ["big", "small", "flaky", "broken"],
            "config": {"expression": "@"},
        },
    ],
}


def _shape(ex: spane.Execution) -> tuple[object, ...]:
    nodes = {k: (v.status, v.attempts, v.output, v.error) for k, v in ex.nodes.items()}
    return ex.status, ex.output, nodes


def test_embedded_and_workers_agree(tmp_path: Path, prod: Runtime, workers: WorkerPool) -> None:
    """Branch, join, delay, retries and a failing node: the same result both ways."""
    from spane import runtime as runtime_module
    from tests.conftest import embedded_settings

    workers.start(prod.settings, threads=4)
    spane.register_workflow(FULL)
    on_workers = [_shape(spane.run("full", n, timeout=60)) for n in (1, 10)]
    embedded = Runtime(embedded_settings(tmp_path / "embedded"))
    previous = runtime_module.install(embedded)
    try:
        spane.register_workflow(FULL)
        in_process = [_shape(spane.run("full", n, timeout=60)) for n in (1, 10)]
    finally:
        runtime_module.install(previous)
        embedded.close()
    assert on_workers == in_process
    status, output, nodes = on_workers[0]
    assert status == "completed"
    assert nodes["broken"][0] == "failed"
    assert nodes["flaky"][1] == 3
    assert output["broken"] == {"error": "planned failure"}
