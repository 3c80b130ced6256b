"""Starting work on Redis + PostgreSQL with real worker processes: a schedule fires
once per tick across two workers (one killed midway); a delayed start, and signals sent
before and after their ``wait_for`` node parks, outlive the broker's data; the start
actor runs from a process that has only the broker."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

import spane
from spane.runtime import Runtime
from spane.store.schema import locks
from tests.history import node_status, wait_for
from tests.workers import ROOT, WorkerPool, WorkerProcess

pytestmark = pytest.mark.integration

APPROVAL = {
    "id": "approval",
    "nodes": [
        {"id": "ask", "type": "wait_for", "config": {"signal": "approve"}},
        {"id": "done", "type": "echo", "after": ["ask"]},
    ],
}
ECHO = {
    "id": "echo",
    "input_schema": {"type": "object", "required": ["order_id"]},
    "nodes": [{"id": "echo", "type": "echo"}],
}
FAST = {"SPANE_SWEEP_INTERVAL": "0.2"}


def test_schedule_fires_once_per_tick_across_workers(prod: Runtime, workers: WorkerPool) -> None:
    spane.register_workflow(ECHO)
    first = workers.start(prod.settings, **FAST)
    second = workers.start(prod.settings, **FAST)
    spane.schedule("echo", {"order_id": 1}, every="1s", overlap="allow", schedule_id="beat")
    wait_for(lambda: len(prod.store.schedule_ticks("beat")) >= 4, "four ticks", timeout=60)
    holder = _sweeper(prod, [first, second])  # the worker firing the ticks dies
    workers.signal(holder, signal.SIGKILL)
    holder.proc.wait(timeout=10)
    wait_for(lambda: len(prod.store.schedule_ticks("beat")) >= 10, "ten ticks", timeout=60)
    spane.pause_schedule("beat")
    ticks = prod.store.schedule_ticks("beat")
    times = [t for t, _, _ in ticks]
    assert all(b - a == 1000 for a, b in itertools.pairwise(times)), times  # no miss
    started = [e for _, outcome, e in ticks if outcome == "started"]
    assert len(started) == len(set(started)) == len(ticks)  # no double
    assert {e.id for e in spane.list_executions(workflow_id="echo", limit=1000)} == set(started)
    for execution_id in started:
        assert spane.wait(execution_id, timeout=60).status == "completed"


def _sweeper(prod: Runtime, started: list[WorkerProcess]) -> WorkerProcess:
    """The worker whose process holds the sweeper lease (identity ``host:pid:...``)."""
    with prod.engine.connect() as conn:
        holder = conn.execute(select(locks.c.holder).where(locks.c.name == "sweeper")).scalar()
    pid = int(str(holder).split(":")[1])
    return next(w for w in started if os.getpgid(pid) == w.pid)


def test_delayed_start_and_signals_outlive_the_broker_data(
    prod: Runtime, workers: WorkerPool, namespace: str
) -> None:
    spane.register_workflow(ECHO)
    spane.register_workflow(APPROVAL)
    workers.start(prod.settings, **FAST)
    delayed = spane.enqueue_workflow("echo", {"order_id": 5}, delay="2s")
    early = spane.enqueue_workflow("approval", {"doc": 1})
    spane.signal(early, "approve", {"by": "early"})  # most likely before the node parks
    late = spane.enqueue_workflow("approval", {"doc": 2})
    wait_for(lambda: node_status(late, "ask") == "waiting", "the node to park", 60)
    client = redis.Redis.from_url(prod.settings.broker_url)
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)  # this test's share of a FLUSHALL
    client.close()
    spane.signal(late, "approve", {"by": "late"})
    assert spane.wait(delayed, timeout=60).output == {"order_id": 5}
    assert spane.wait(early, timeout=60).output == {"by": "early"}
    assert spane.wait(late, timeout=60).output == {"by": "late"}


PRODUCER = """
import sys
import spane

send = spane.actors.start_workflow
message = send.message("echo", {"order_id": 9, "blob": "x" * 80_000}, tenant="acme")
send.enqueue(message)
print(message.message_id, flush=True)
sys.stdin.readline()
send.enqueue(message)  # the same message again: delivered twice
send.send("echo", {"sku": 1}, tenant="acme")  # invalid: no order_id
print("sent", flush=True)
"""


def test_start_actor_from_a_process_with_only_the_broker(
    prod: Runtime, workers: WorkerPool, tmp_path: Path
) -> None:
    spane.register_workflow(ECHO)
    worker = workers.start(prod.settings, **FAST)
    producer_dir = tmp_path / "producer"
    producer_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(
        SPANE_BROKER_URL=prod.settings.broker_url,
        SPANE_NAMESPACE=prod.settings.namespace,
        SPANE_BLOB_URL=prod.settings.blob_url,
        PYTHONPATH=str(ROOT),
    )
    with subprocess.Popen(
        [sys.executable, "-c", PRODUCER],
        cwd=producer_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            message_id = proc.stdout.readline().strip()
            execution_id = wait_for(
                lambda: prod.store.find_start_by_key("acme", message_id), "the execution", 60
            )
            done = spane.wait(execution_id, timeout=60)
            assert done.output["order_id"] == 9 and len(done.output["blob"]) == 80_000
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "sent"
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    wait_for(lambda: "start message repeated" in worker.output(), "the redelivery", 60)
    letter = wait_for(lambda: spane.dead_letters(), "the refused start", 60)[0]
    assert "input.order_id" in letter.reason
    assert [e.id for e in spane.list_executions(workflow_id="echo")] == [execution_id]
    assert not (producer_dir / ".spane").exists()  # no database was opened
