"""Faults on real workers: the broker is only transport, the database is the source of truth.

Each test starts its own workers (``dramatiq spane.actors`` subprocesses) and, where the
fault needs it, its own private Redis or PostgreSQL; it stops exactly what it started, by
process id. After the fault, every execution must complete, every node must finish
exactly once (one completion event per node in ``spane_events``), and nothing may be
left queued, running or waiting.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import spane
import tests.nodes  # noqa: F401  (registers the test node types)
from spane.runtime import Runtime
from spane.settings import Settings
from spane.store.history import DeadLetter
from tests import faults
from tests.conftest import CI
from tests.faults import slow_chain as chain
from tests.workers import WorkerPool, WorkerProcess

pytestmark = pytest.mark.integration

#: Default leases and sweeps (recovery takes seconds at defaults); a short drain grace.
SHORT_DRAIN: dict[str, Any] = {"drain_seconds": 3.0}
RUNS = 50


def outputs(ids: list[str]) -> list[Any]:
    return [spane.get_execution(execution_id).output for execution_id in ids]


def require_binary(present: bool, what: str) -> None:
    """Skip when a server binary is missing (fail under ``CI=true``), like the fixtures."""
    if not present:
        message = f"{what} is not installed"
        if CI:
            pytest.fail(message + " (CI=true: services are required)")
        pytest.skip(message)


def assert_clean(rt: Runtime, count: int) -> None:
    found = faults.problems(rt.engine, count)
    assert not found, "\n".join(found[:20])


@pytest.fixture
def client(prod: Runtime) -> Iterator[Runtime]:
    """A client runtime on ``prod``'s services at default leases (see ``client_runtime``)."""
    with faults.client_runtime(prod.settings.with_(**SHORT_DRAIN)) as rt:
        yield rt


def test_worker_killed_mid_run(client: Runtime, workers: WorkerPool) -> None:
    """SIGKILL a worker holding running attempts: the lease runs out, a new attempt runs."""
    spane.register_workflow(chain("killed"))
    doomed = workers.start(client.settings, threads=8)
    workers.start(client.settings, threads=8)
    ids = [spane.enqueue_workflow("killed", i) for i in range(RUNS)]
    # More nodes running than the survivor has threads: the doomed worker holds some.
    faults.wait_until(
        lambda: (
            faults.event_count(client.engine, "completed") >= RUNS // 2
            and faults.node_count(client.engine, "running") > 8
        ),
        60,
        "the run to be under way on both workers",
    )
    workers.signal(doomed, signal.SIGKILL)
    doomed.proc.wait(timeout=10)

    faults.wait_all_ended(client.engine, RUNS)
    assert_clean(client, RUNS)
    assert outputs(ids) == [i + 4 for i in range(RUNS)]
    assert faults.event_count(client.engine, "lease_expired") >= 1


def test_worker_killed_mid_run_on_rabbitmq(rabbit: Runtime, workers: WorkerPool) -> None:
    """The same on RabbitMQ: it requeues the dead worker's unacknowledged messages, and
    the dead worker's running attempts are run again once their lease runs out."""
    runs = 20
    spane.register_workflow(chain("killed-amqp"))
    doomed = workers.start(rabbit.settings, threads=8)
    workers.start(rabbit.settings, threads=4)
    ids = [spane.enqueue_workflow("killed-amqp", i) for i in range(runs)]
    faults.wait_until(
        lambda: faults.node_count(rabbit.engine, "running") > 4,
        60,
        "the run to be under way on both workers",
    )
    workers.signal(doomed, signal.SIGKILL)
    doomed.proc.wait(timeout=10)

    faults.wait_all_ended(rabbit.engine, runs)
    assert_clean(rabbit, runs)
    assert outputs(ids) == [i + 4 for i in range(runs)]
    assert faults.event_count(rabbit.engine, "lease_expired") >= 1


def _freeze_outside_sweep(workers: WorkerPool, worker: WorkerProcess, rt: Runtime) -> None:
    """SIGSTOP a worker. If it held the sweeper lease, another worker takes the lease over
    once it expires (test_recovery_goes_on_while_the_sweep_lease_holder_is_stalled)."""
    workers.signal(worker, signal.SIGSTOP)


def test_stalled_worker_late_results_are_fenced(client: Runtime, workers: WorkerPool) -> None:
    """A frozen worker's attempts are superseded after the lease; its late results are not."""
    spane.register_workflow(
        {
            "id": "stalled",
            "nodes": [
                {"id": "long", "type": "slow_add", "config": {"seconds": 3.0}},
                {"id": "short", "type": "slow_add", "after": ["long"], "config": {"seconds": 0.05}},
            ],
        }
    )
    frozen = workers.start(client.settings, threads=4, dramatiq_queue_prefetch="4")
    workers.start(client.settings, threads=4, dramatiq_queue_prefetch="4")
    ids = [spane.enqueue_workflow("stalled", i) for i in range(8)]
    faults.wait_until(
        lambda: faults.node_count(client.engine, "running") == 8,
        60,
        "both workers to run four long nodes each",
    )
    _freeze_outside_sweep(workers, frozen, client)
    try:
        faults.wait_until(
            lambda: faults.event_count(client.engine, "lease_expired") >= 4,
            60,
            "the frozen worker's attempts to be superseded",
        )
    finally:
        workers.signal(frozen, signal.SIGCONT)

    faults.wait_all_ended(client.engine, 8)
    # The frozen worker wakes up and reports its superseded attempts: each is recorded as a
    # stale result and changes nothing.
    faults.wait_until(
        lambda: faults.event_count(client.engine, "stale_result") >= 4,
        60,
        "the late results of the superseded attempts",
    )
    assert_clean(client, 8)
    assert outputs(ids) == [i + 2 for i in range(8)]


def test_redis_flushall_mid_run(
    tmp_path: Path, pg_url: str, namespace: str, workers: WorkerPool
) -> None:
    """Every message and timer in the broker vanishes; the database sends them again."""
    require_binary(shutil.which("redis-server") is not None, "redis-server")
    workflow = {
        "id": "flushed",
        "nodes": [
            {"id": "a", "type": "slow_add", "config": {"seconds": 0.3}},
            {"id": "wait", "type": "delay", "after": ["a"], "config": {"duration": "1s"}},
            {"id": "b", "type": "slow_add", "after": ["wait"], "config": {"seconds": 0.3}},
            {"id": "c", "type": "slow_add", "after": ["b"], "config": {"seconds": 0.3}},
        ],
    }
    with faults.private_redis(tmp_path) as redis_url:
        settings = Settings(
            broker_url=redis_url,
            database_url=pg_url,
            blob_url=str(tmp_path / "blobs"),
            namespace=namespace,
            **SHORT_DRAIN,
        )
        with faults.client_runtime(settings) as rt:
            try:
                spane.register_workflow(workflow)
                workers.start(settings, threads=8)
                workers.start(settings, threads=8)
                ids = [spane.enqueue_workflow("flushed", i) for i in range(RUNS)]
                faults.wait_until(
                    lambda: (
                        faults.node_count(rt.engine, "waiting") >= 5
                        and faults.node_count(rt.engine, "queued") >= 5
                    ),
                    60,
                    "timers parked and node messages queued",
                )
                faults.flushall(redis_url)

                faults.wait_all_ended(rt.engine, RUNS)
                assert_clean(rt, RUNS)
                assert outputs(ids) == [i + 3 for i in range(RUNS)]
                assert faults.event_count(rt.engine, "timer_fired") == RUNS
            finally:
                workers.stop_all()  # while their private Redis still runs


def test_postgres_restart_mid_run(
    tmp_path: Path, redis_url: str, namespace: str, workers: WorkerPool
) -> None:
    """The database goes away and comes back: workers reconnect, messages are retried."""
    require_binary((faults.PG_BIN / "initdb").exists(), f"PostgreSQL ({faults.PG_BIN})")
    with faults.private_postgres() as pg:
        settings = Settings(
            broker_url=redis_url,
            database_url=pg.url,
            blob_url=str(tmp_path / "blobs"),
            namespace=namespace,
            **SHORT_DRAIN,
        )
        with faults.client_runtime(settings) as rt:
            try:
                spane.register_workflow(chain("restarted"))
                first = workers.start(settings, threads=8)
                second = workers.start(settings, threads=8)
                ids = [spane.enqueue_workflow("restarted", i) for i in range(RUNS)]
                faults.wait_until(
                    lambda: faults.event_count(rt.engine, "completed") >= RUNS // 2,
                    60,
                    "the run to be under way",
                )
                pg.restart(down_seconds=1.0)

                faults.wait_all_ended(rt.engine, RUNS)
                assert_clean(rt, RUNS)
                assert outputs(ids) == [i + 4 for i in range(RUNS)]
                assert first.proc.poll() is None and second.proc.poll() is None
                # The outage did reach the workers.
                assert any("sweep failed" in w.output() for w in (first, second))
            finally:
                workers.stop_all()  # while their private PostgreSQL still runs


DUPLICATED = {
    "id": "duplicated",
    "nodes": [
        {"id": "start", "type": "add_one"},
        {
            "id": "route",
            "type": "branch",
            "after": ["start"],
            "config": {"cases": [{"when": "@ > `10`", "next": ["big"]}], "default": ["small"]},
        },
        {"id": "big", "type": "slow_add", "after": ["route"], "config": {"seconds": 0.1}},
        {"id": "small", "type": "delay", "after": ["route"], "config": {"duration": "300ms"}},
        {"id": "flaky", "type": "fail", "after": ["start"], "config": {"times": 1}},
        {"id": "sub", "type": "subworkflow", "after": ["start"], "config": {"workflow": "child"}},
        {
            "id": "join",
            "type": "transform",
            "after": ["big", "small", "flaky", "sub"],
            "config": {"expression": "@"},
        },
    ],
}
CHILD = {
    "id": "child",
    "nodes": [
        {"id": "x", "type": "slow_add", "config": {"seconds": 0.1}},
        {"id": "y", "type": "add_one", "after": ["x"]},
    ],
}


def test_every_message_delivered_twice(client: Runtime, workers: WorkerPool) -> None:
    """With every message sent twice, results equal a clean run's; no node runs twice."""
    spane.register_workflow(CHILD)
    spane.register_workflow(DUPLICATED)
    inputs = list(range(20))

    clean_worker = workers.start(client.settings, threads=8)
    clean_ids = [spane.enqueue_workflow("duplicated", i) for i in inputs]
    faults.wait_all_ended(client.engine, len(inputs) * 2)  # each has one child execution
    clean = outputs(clean_ids)
    workers.stop(clean_worker)

    faults.install_duplication(client.broker)
    duplicating = workers.start(
        client.settings,
        modules=("tests.nodes", "tests.faults"),
        threads=8,
        SPANE_TEST_DUPLICATE="1",
    )
    ids = [spane.enqueue_workflow("duplicated", i) for i in inputs]
    faults.wait_all_ended(client.engine, len(inputs) * 4)
    assert "sends every message twice" in duplicating.output()

    assert outputs(ids) == clean
    assert clean[0] == {"small": 1, "flaky": {"attempt": 2, "input": 1}, "sub": 3}
    assert_clean(client, len(inputs) * 2)
    # Every node attempt started once: duplicates were dropped, not run.
    retried = faults.event_count(client.engine, "retrying")
    assert faults.repeated_attempts(client.engine) == retried == len(inputs) * 2


def _worker_process_ids(worker: WorkerProcess) -> list[int]:
    """Process ids of a worker's Dramatiq worker processes (children of its main process)."""
    found = re.findall(r"\[PID (\d+)\] \[MainThread\] \[dramatiq\.WorkerProcess", worker.output())
    return sorted({int(pid) for pid in found})


def _drain(client: Runtime, workers: WorkerPool, *, whole_group: bool) -> None:
    """Two busy workers; SIGTERM one: it hands back what its grace cannot finish."""
    spane.register_workflow(
        {
            "id": "drained",
            "nodes": [
                {"id": "long", "type": "slow_add", "config": {"seconds": 4.0}},
                {"id": "short", "type": "slow_add", "after": ["long"], "config": {"seconds": 0.05}},
            ],
        }
    )
    settings = client.settings.with_(drain_seconds=1.0)
    # Prefetch no more than the threads: each worker holds only what it runs.
    draining = workers.start(settings, threads=4, dramatiq_queue_prefetch="4")
    workers.start(settings, threads=4, dramatiq_queue_prefetch="4")
    ids = [spane.enqueue_workflow("drained", i) for i in range(8)]
    faults.wait_until(
        lambda: faults.node_count(client.engine, "running") == 8,
        60,
        "both workers to run four long nodes each",
    )
    if whole_group:
        # What a process-group SIGTERM does, in the order it usually lands: the worker
        # process gets it directly, then once more forwarded by the main process. (When
        # both arrive before Python runs the handler they coalesce into one, so sending
        # to the group itself would only sometimes show the problem.)
        for pid in _worker_process_ids(draining):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)
    draining.proc.send_signal(signal.SIGTERM)

    faults.wait_all_ended(client.engine, 8)
    draining.proc.wait(timeout=30)
    assert_clean(client, 8)
    assert outputs(ids) == [i + 2 for i in range(8)]
    assert faults.node_count(client.engine, "running") == 0
    assert faults.event_count(client.engine, "handed_back") == 4, draining.output()[-3000:]


def test_sigterm_hands_back_long_nodes(client: Runtime, workers: WorkerPool) -> None:
    """SIGTERM to the worker's main process, as Kubernetes and Docker send it."""
    _drain(client, workers, whole_group=False)


def test_sigterm_to_process_group_hands_back_long_nodes(
    client: Runtime, workers: WorkerPool
) -> None:
    """SIGTERM to the worker's whole process group, as honcho (the Procfile) sends it."""
    _drain(client, workers, whole_group=True)


def _message(queue: str, actor: str, redis_message_id: str) -> dict[str, Any]:
    """A well-formed Dramatiq message as it rests in Redis."""
    return {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": {"anything": 1},
        "options": {"redis_message_id": redis_message_id},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }


def _letters() -> list[DeadLetter]:
    return [d for d in spane.dead_letters(status=None) if d.kind == "message"]


def _run_small_workflow(timeout: float = 60) -> None:
    spane.register_workflow(chain("small", length=2, seconds=0.05))
    ex = spane.run("small", 1, timeout=timeout)
    assert ex.status == "completed" and ex.output == 3


def test_garbage_and_unknown_actor_messages_are_dead_lettered(
    client: Runtime, workers: WorkerPool
) -> None:
    """A message that cannot be decoded, or names no actor, becomes a dead letter."""
    redis_url, namespace = client.settings.broker_url, client.settings.namespace
    queue = f"{namespace}.default"
    workers.start(client.settings, threads=4)

    faults.push_raw(redis_url, namespace, queue, b"\xff\xfe this is not a message {")
    faults.wait_until(lambda: len(_letters()) == 1, 60, "a dead letter for the garbage")
    (garbage,) = _letters()
    assert "could not be decoded" in garbage.reason

    unknown = "spane.no_such_actor"
    redis_id = str(uuid.uuid4())
    message = msgspec.json.encode(_message(queue, unknown, redis_id))
    faults.push_raw(redis_url, namespace, queue, message, redis_id)
    faults.wait_until(lambda: len(_letters()) == 2, 60, "a dead letter for the unknown actor")
    letter = next(d for d in _letters() if d.actor == unknown)
    assert letter.queue == queue

    _run_small_workflow()  # the worker still serves
    assert_clean(client, 1)


# -- faults that once broke the engine -------------------------------------------------


def test_recovery_goes_on_while_the_sweep_lease_holder_is_stalled(
    client: Runtime, workers: WorkerPool
) -> None:
    spane.register_workflow(chain("orphaned", length=2, seconds=0.05))
    # A worker that took the sweeper lease and then stopped responding.
    assert client.store.take_lease("sweeper", "stalled-worker", 5.0)
    execution_id = spane.enqueue_workflow("orphaned", 1)
    # The broker loses the entry node's message (our own namespace's keys only).
    faults.drop_queues(client.settings.broker_url, client.settings.namespace)
    workers.start(client.settings, threads=2)
    assert spane.wait(execution_id, timeout=30).status == "completed"
    holders = faults.sql(client.engine, "SELECT holder FROM spane_locks WHERE name = 'sweeper'")
    assert [row[0] for row in holders] != ["stalled-worker"]


def test_garbage_message_does_not_kill_a_worker_thread(
    client: Runtime, workers: WorkerPool
) -> None:
    redis_url, namespace = client.settings.broker_url, client.settings.namespace
    workers.start(client.settings, threads=1)
    faults.push_raw(redis_url, namespace, f"{namespace}.default", b"not a message")
    faults.wait_until(lambda: len(_letters()) == 1, 60, "a dead letter for the garbage")
    _run_small_workflow(timeout=15)


def test_garbage_with_nul_bytes_is_dead_lettered(client: Runtime, workers: WorkerPool) -> None:
    redis_url, namespace = client.settings.broker_url, client.settings.namespace
    workers.start(client.settings, threads=4)
    faults.push_raw(redis_url, namespace, f"{namespace}.default", b"\x00\x01binary\x00")
    faults.wait_until(lambda: len(_letters()) == 1, 15, "a dead letter for the garbage")


def test_message_missing_fields_is_dead_lettered(client: Runtime, workers: WorkerPool) -> None:
    redis_url, namespace = client.settings.broker_url, client.settings.namespace
    queue = f"{namespace}.default"
    workers.start(client.settings, threads=4)
    redis_id = str(uuid.uuid4())
    shape = _message(queue, "spane.node.slow_add.default", redis_id)
    del shape["args"]
    faults.push_raw(redis_url, namespace, queue, msgspec.json.encode(shape), redis_id)
    faults.wait_until(lambda: len(_letters()) == 1, 15, "a dead letter for the bad message")


def test_garbage_message_is_removed_from_the_broker(client: Runtime, workers: WorkerPool) -> None:
    redis_url, namespace = client.settings.broker_url, client.settings.namespace
    queue = f"{namespace}.default"
    workers.start(client.settings, threads=4)
    faults.push_raw(redis_url, namespace, queue, b"not a message either")
    faults.wait_until(lambda: len(_letters()) == 1, 60, "a dead letter for the garbage")
    faults.wait_until(
        lambda: faults.stored_messages(redis_url, namespace, queue) == 0,
        10,
        "the garbage to leave Redis",
    )
