"""Metrics, health endpoints and live workers, scraped over HTTP from real workers."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import spane
from spane import cli
from spane.runtime import Runtime
from tests.services import free_port
from tests.workers import WorkerPool

TIMEOUT = 60
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_env(port: int, folder: Path, **extra: str) -> dict[str, str]:
    return {
        "SPANE_METRICS_PORT": str(port),
        "SPANE_METRICS_HOST": "127.0.0.1",
        "SPANE_METRICS_DIR": str(folder),
        "SPANE_METRICS_TENANTS": "*",
        **extra,
    }


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"still false after {timeout}s"
            return result
        time.sleep(0.2)


def wait_serving(port: int) -> None:
    def up() -> bool:
        try:
            return get(port, "/livez")[0] == 200
        except OSError:
            return False

    eventually(up)


def test_metrics_move_as_the_run_says(
    prod: Runtime, workers: WorkerPool, tmp_path: Path, namespace: str
) -> None:
    port = free_port()
    # Two processes, serving every lane but low: a low-lane node stays ready and queued.
    env = metrics_env(port, tmp_path / "metrics")
    queues = (f"{namespace}.high", f"{namespace}.default")
    workers.start(prod.settings, processes=2, queues=queues, **env)
    wait_serving(port)
    spane.register_workflow(
        {
            "id": "metered",
            "nodes": [
                {"id": "big", "type": "cc_big", "config": {"size": 100_000}},
                {"id": "echo", "type": "echo", "after": ["big"]},
                {"id": "flaky", "type": "fail", "after": ["echo"], "config": {"times": 1}},
            ],
        }
    )
    spane.register_workflow({"id": "parked", "nodes": [{"id": "n", "type": "echo"}]})
    runs = 4
    ids = [spane.enqueue_workflow("metered", None, tenant="acme") for _ in range(runs)]
    for execution_id in ids:
        assert spane.wait(execution_id, timeout=TIMEOUT).status == "completed"
    spane.enqueue_workflow("parked", 1, tenant="zeta", priority="low")

    flaky = {"type": "fail", "lane": "default"}

    def settled() -> Samples | None:
        # A last attempt's hooks run just after its execution is seen completed, and blob
        # totals are copied every second: wait for both (and for the parked node).
        s = scrape(port)
        reads = value(s, "spane_blob_cache_hits_total") + value(s, "spane_blob_cache_misses_total")
        done = (
            value(s, "spane_node_attempts_total", **flaky, outcome="completed") == runs
            and reads >= runs
            and value(s, "spane_nodes_ready", lane="low", tenant="zeta") == 1
        )
        return s if done else None

    s = eventually(settled)
    completed = {"type": "echo", "lane": "default", "outcome": "completed"}
    assert value(s, "spane_executions_started_total", workflow="metered") == runs
    assert value(s, "spane_executions_finished_total", workflow="metered", status="completed") == (
        runs
    )
    assert value(s, "spane_node_attempts_total", **completed) == runs
    assert value(s, "spane_node_attempts_total", **flaky, outcome="retried") == runs
    assert value(s, "spane_node_retries_total", **flaky) == runs
    assert value(s, "spane_node_duration_seconds_count", **flaky) == 2 * runs
    assert value(s, "spane_node_queue_wait_seconds_count", **flaky) == 2 * runs
    le_inf = {"type": "echo", "lane": "default", "le": "+Inf"}
    assert value(s, "spane_node_duration_seconds_bucket", **le_inf) == runs
    assert value(s, "spane_blob_put_bytes_total") >= runs * 100_000
    # A read is a cache miss: the process that wrote a blob mostly finds it cached. Each
    # miss reads one ~100 KB value (less when the store compresses it).
    misses = value(s, "spane_blob_cache_misses_total")
    assert value(s, "spane_blob_read_bytes_total") >= 90_000 * misses
    assert (value(s, "spane_blob_read_bytes_total") > 0) == (misses > 0)
    # Dramatiq's own message metrics are kept.
    actor = {"queue_name": f"{namespace}.default", "actor_name": "spane.node.cc_big.default"}
    assert value(s, "dramatiq_messages_total", **actor) == runs
    # Cluster state from the broker and the database.
    assert value(s, "spane_queue_depth", lane="low") == 1
    assert 0 < value(s, "spane_lane_oldest_wait_seconds", lane="low", tenant="zeta") < 600
    assert value(s, "spane_executions_active", status="running") == 1
    assert value(s, "spane_state_source_up", source="database") == 1
    beats = [v for (name, _), v in s.items() if name == "spane_worker_heartbeat_timestamp_seconds"]
    assert len(beats) == 2 and all(time.time() - b < 30 for b in beats)
    assert get(port, "/livez")[0] == 200
    status, body = get(port, "/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"]["migrations"] == "ok"


def test_readiness_flips_on_sigterm_before_inflight_work_finishes(
    prod: Runtime, workers: WorkerPool, tmp_path: Path
) -> None:
    port = free_port()
    worker = workers.start(prod.settings, **metrics_env(port, tmp_path / "metrics"))
    wait_serving(port)
    assert get(port, "/readyz")[0] == 200
    spane.register_workflow(
        {"id": "slow", "nodes": [{"id": "s", "type": "sleep", "config": {"seconds": 8}}]}
    )
    execution_id = spane.enqueue_workflow("slow", 1)
    eventually(lambda: spane.get_execution(execution_id).nodes["s"].status == "running")
    eventually(lambda: value(scrape(port), "spane_attempts_inflight", tenant="default") == 1)
    assert value(scrape(port), "spane_lane_in_flight", lane="default", tenant="default") == 1
    workers.signal(worker, signal.SIGTERM)
    body = eventually(lambda: (r := get(port, "/readyz"))[0] == 503 and r[1], timeout=10)
    assert json.loads(body)["checks"]["draining"] != "ok"
    assert spane.get_execution(execution_id).nodes["s"].status == "running"
    assert get(port, "/livez")[0] == 200  # draining on purpose is still alive
    assert spane.wait(execution_id, timeout=TIMEOUT).status == "completed"


def test_workers_lists_live_workers_and_drops_a_killed_one(
    prod: Runtime, workers: WorkerPool, capsys: pytest.CaptureFixture[str]
) -> None:
    lease = {"SPANE_WORKER_LEASE_SECONDS": "2"}
    first = workers.start(prod.settings, threads=3, **lease)
    second = workers.start(prod.settings, threads=2, **lease)

    def listed() -> list[dict[str, Any]]:
        capsys.readouterr()
        assert cli.main(["workers", "--json"]) == 0
        rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
        return rows

    rows = eventually(lambda: len(r := listed()) == 2 and r)
    assert sorted(r["threads"] for r in rows) == [2, 3]
    for row in rows:
        assert row["lanes"] == ["high", "default", "low"]
        assert "echo" in row["node_types"] and row["version"] == spane.__version__
    serving = [
        json.loads(line) for line in first.output().splitlines() if '"worker serving"' in line
    ]
    assert serving and serving[0]["database"] == prod.settings.database_url
    assert serving[0]["lanes"] == ["high", "default", "low"] and serving[0]["threads"] == 3
    # Rows are worker processes, children of the ``dramatiq`` processes started here.
    assert sorted(parent(r["pid"]) for r in rows) == sorted([first.pid, second.pid])
    workers.signal(second, signal.SIGKILL)
    second.proc.wait(timeout=10)
    rows = eventually(lambda: len(r := listed()) == 1 and r)
    assert parent(rows[0]["pid"]) == first.pid


def parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
