"""What operators see, on the embedded twin: ``spane metrics``, ``spane workers``, the
dashboard's queries, bounded labels and masked URLs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import spane
from spane import cli, migrations
from spane.middleware.heartbeat import mask
from spane.middleware.instruments import Instruments
from spane.middleware.metric_files import TenantLabels, remove_stale
from spane.monitoring.state import StateCollector
from spane.runtime import Runtime
from spane.store import make_engine

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "spane.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def test_metrics_command_prints_state_once(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    spane.register_workflow(
        {"id": "doomed", "nodes": [{"id": "x", "type": "fail", "config": {"retryable": False}}]}
    )
    assert spane.run("doomed", None, timeout=30).status == "failed"
    spane.register_workflow(
        {"id": "held", "nodes": [{"id": "s", "type": "sleep", "config": {"seconds": 0.2}}]}
    )
    spane.pause(spane.enqueue_workflow("held", 1))
    capsys.readouterr()
    assert cli.main(["metrics"]) == 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(capsys.readouterr().out)
        for s in family.samples
    }
    assert samples[("spane_dead_letters_open", ())] == 1
    assert samples[("spane_executions_active", (("status", "paused"),))] == 1
    assert samples[("spane_executions_active", (("status", "running"),))] == 0


def test_the_embedded_worker_is_a_live_worker(rt: Runtime) -> None:
    rt.ensure_worker()
    (worker,) = spane.workers()
    assert worker.pid == os.getpid() and worker.threads == rt.settings.embedded_threads
    assert worker.lanes == ("high", "default", "low") and "echo" in worker.node_types


def test_every_metric_the_dashboard_queries_exists(rt: Runtime) -> None:
    families = [*Instruments().registry.collect(), *StateCollector(rt).collect()]
    names = {f.name + suffix for f in families for suffix in _SUFFIXES.get(f.type, ("",))}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\b(?:spane|dramatiq)_[a-z_]+\b", target["expr"])
    }
    assert len(queried) >= 20
    assert queried <= names, sorted(queried - names)


def test_tenant_labels_are_bounded() -> None:
    assert TenantLabels(())("acme") == "all"
    assert [TenantLabels(("acme",))(t) for t in ("acme", "zeta")] == ["acme", "other"]
    assert TenantLabels(("*",))("zeta") == "zeta"


def test_start_up_line_masks_passwords() -> None:
    assert mask("amqp://guest:s3cret@rabbit:5672/%2F") == "amqp://guest:***@rabbit:5672/%2F"
    assert (
        mask("postgresql+psycopg://spane:pw@db/spane") == "postgresql+psycopg://spane:***@db/spane"
    )
    assert mask("sqlite:///.spane/spane.db") == "sqlite:///.spane/spane.db"


def test_files_of_earlier_runs_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE
    )
    dead = gone.stdout.decode().strip()
    ours = tmp_path / str(os.getpid())
    ours.mkdir()
    (tmp_path / dead).mkdir()
    (ours / f"counter_{os.getpid()}.db").write_bytes(b"")
    (ours / f"counter_{dead}.db").write_bytes(b"")
    remove_stale(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ours.name]
    assert [p.name for p in ours.iterdir()] == [f"counter_{os.getpid()}.db"]


def test_readiness_knows_whether_the_schema_is_current(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert not migrations.is_current(engine)
    migrations.upgrade(engine)
    assert migrations.is_current(engine)
    engine.dispose()
