"""The Procfile as a deployment runs it: ``release`` migrates, then honcho starts ``web``,
``worker`` and ``worker-high`` on Redis and PostgreSQL, and workflows go through the HTTP
API, one of them on the high lane.

Only the processes started here are stopped, by process group id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.services import free_port
from tests.workers import ROOT

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def wait(client: httpx.Client, execution_id: str, log: Path) -> dict[str, object]:
    """Poll an execution until it ends; return its body."""
    deadline = time.monotonic() + 60
    while (body := client.get(f"/api/v1/executions/{execution_id}").json())["status"] in (
        "running",
        "paused",
    ):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    result: dict[str, object] = body
    return result


def test_procfile_serves_the_api_and_runs_a_workflow(
    tmp_path: Path, pg_url: str, redis_url: str, namespace: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        SPANE_BROKER_URL=redis_url,
        SPANE_DATABASE_URL=pg_url,
        SPANE_BLOB_URL=str(tmp_path / "blobs"),
        SPANE_NAMESPACE=namespace,
        SPANE_MODULES="tests.nodes",
        SPANE_WEB_PORT=str(port),
        SPANE_DRAIN_SECONDS="5",
        SPANE_LOG_FORMAT="json",
    )
    honcho = [str(BIN / "honcho"), "-f", str(ROOT / "Procfile")]
    release = subprocess.run([*honcho, "start", "release"], env=env, capture_output=True)
    assert release.returncode == 0, release.stdout.decode() + release.stderr.decode()
    created = subprocess.run(
        [str(BIN / "spane"), "tokens", "create", "--admin", "--json"],
        env=env,
        capture_output=True,
        check=True,
    )
    token = json.loads(created.stdout)["token"]
    log = tmp_path / "honcho.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*honcho, "start", "web", "worker", "worker-high"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if client.get("/livez").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "web did not come up:\n" + log.read_text()
            time.sleep(0.2)
        definition = {
            "id": "procfile",
            "nodes": [
                {"id": "one", "type": "add_one"},
                {"id": "two", "type": "add_one", "after": ["one"]},
            ],
        }
        assert client.post("/api/v1/workflows", json=definition).status_code == 201
        started = client.post("/api/v1/executions", json={"workflow_id": "procfile", "input": 1})
        assert started.status_code == 201, started.text
        body = wait(client, started.json()["execution_id"], log)
        assert body["status"] == "completed" and body["output"] == 3, body
        # worker's two processes serve every lane, worker-high's one the high lane only.
        expected = [["high"], ["high", "default", "low"], ["high", "default", "low"]]
        deadline = time.monotonic() + 60
        while (
            served := sorted(w["lanes"] for w in client.get("/api/v1/workers").json()["items"])
        ) != expected:
            assert time.monotonic() < deadline, f"{served}\n{log.read_text()}"
            time.sleep(0.2)
        high = client.post(
            "/api/v1/executions",
            json={"workflow_id": "procfile", "input": 10, "priority": "high"},
        )
        assert high.status_code == 201, high.text
        body = wait(client, high.json()["execution_id"], log)
        assert body["status"] == "completed" and body["output"] == 12, body
    finally:
        client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
