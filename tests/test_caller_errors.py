"""Every error a caller sees is a SpaneError or a one-line CLI message (exit code 2),
names the setting or value to fix, and leaves nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

import spane
from spane import runtime as runtime_module
from spane import validation
from spane.blobs import open_blob_store
from spane.cli import main
from spane.runtime import Runtime
from spane.settings import Settings, from_env, mask_url
from spane.store import make_engine
from tests.conftest import embedded_settings
from tests.history import wait_for
from tests.workers import WorkerPool, worker_env

ROOT = Path(__file__).resolve().parent.parent
ECHO = {"id": "echo-once", "nodes": [{"id": "a", "type": "echo"}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_rt(request: pytest.FixtureRequest) -> Runtime:
    """A runtime on SQLite (embedded) or on PostgreSQL (no workers needed)."""
    name = "rt" if request.param == "sqlite" else "prod"
    runtime: Runtime = request.getfixturevalue(name)
    return runtime


@pytest.fixture
def small_rt(tmp_path: Path) -> Iterator[Runtime]:
    """An embedded runtime whose payload limit is 1000 bytes."""
    runtime = Runtime(embedded_settings(tmp_path, max_payload_bytes=1000))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


def spane_command(folder: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m spane argv...`` in ``folder`` with only ``env`` of the SPANE_* kind."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    return subprocess.run(
        [sys.executable, "-m", "spane", *argv],
        cwd=folder,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- settings -------------------------------------------------------------------------


def test_a_misspelt_setting_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(spane.ConfigurationError, match="did you mean SPANE_DATABASE_URL"):
        from_env({"SPANE_DB_URL": "postgresql+psycopg://x@h/db"})
    with pytest.raises(spane.ConfigurationError, match="did you mean SPANE_LEASE_SECONDS"):
        from_env({"SPANE_LEASE": "3"})
    with pytest.raises(spane.ConfigurationError, match="SPANE_XYZZY is not a Spane setting"):
        from_env({"SPANE_XYZZY": "1"})
    with pytest.raises(spane.ConfigurationError, match="finite"):
        from_env({"SPANE_LEASE_SECONDS": "nan"})
    assert from_env({"SPANE_DATABASE_URL": "sqlite:///x.db"}).database_url == "sqlite:///x.db"
    done = spane_command(tmp_path, "list", SPANE_DB_URL="postgresql+psycopg://x@h/db")
    assert done.returncode == 2
    assert "did you mean SPANE_DATABASE_URL" in one_line(done.stderr)


def test_credentials_are_masked_in_printed_urls() -> None:
    assert mask_url("redis+sentinel://:pw@host:26379/0") == "redis+sentinel://:***@host:26379/0"
    assert mask_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("amqp://h/?password=pw&x=1") == "amqp://h/?password=***&x=1"
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with pytest.raises(spane.ConfigurationError) as caught:
        from_env({"SPANE_BROKER_URL": "http://user:hunter2@host"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(spane.ConfigurationError) as caught:
        make_engine("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)


def test_s3_without_credentials_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(spane.ConfigurationError, match=r"SPANE_BLOB_URL.*AWS_ACCESS_KEY_ID"):
        open_blob_store("s3://bucket/prefix")


@pytest.mark.parametrize("backend_url", ["sqlite", "postgresql"])
def test_failed_statements_do_not_show_their_parameters(
    backend_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'x.db'}"
        if backend_url == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = make_engine(url)
    try:
        with pytest.raises(Exception) as caught, engine.connect() as conn:
            conn.execute(text("SELECT nope FROM nowhere WHERE x = :v"), {"v": "secret-output"})
        assert "secret-output" not in str(caught.value)
    finally:
        engine.dispose()


# -- unreachable services -----------------------------------------------------------


def test_unreachable_database_is_one_line_from_the_cli(tmp_path: Path) -> None:
    url = "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"
    done = spane_command(tmp_path, "list", SPANE_DATABASE_URL=url)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "SPANE_DATABASE_URL" in line and "127.0.0.1:1" in line
    assert "hunter2" not in line


def _worker_failure(tmp_path: Path, **env: str) -> str:
    settings = embedded_settings(tmp_path, broker_url="redis://127.0.0.1:6379/0")
    command = [sys.executable, "-m", "dramatiq", "spane.actors", "--processes", "2"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=worker_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    return done.stderr


def test_unreachable_broker_or_database_is_one_line_per_worker_process(tmp_path: Path) -> None:
    err = _worker_failure(tmp_path, SPANE_BROKER_URL="redis://:hunter2@127.0.0.1:1/0")
    lines = [line for line in err.splitlines() if "spane worker: error" in line]
    assert lines and len(lines) <= 2
    assert "the broker redis://:***@127.0.0.1:1/0 (SPANE_BROKER_URL) cannot be reached" in lines[0]
    assert "hunter2" not in err
    err = _worker_failure(tmp_path, SPANE_BROKER_URL="amqp://guest:hunter2@127.0.0.1:1/%2F")
    assert "the broker amqp://guest:***@127.0.0.1:1/%2F (SPANE_BROKER_URL)" in err
    assert "hunter2" not in err
    err = _worker_failure(
        tmp_path, SPANE_DATABASE_URL="postgresql+psycopg://u:hunter2@127.0.0.1:1/x"
    )
    lines = [line for line in err.splitlines() if "spane worker: error" in line]
    assert lines and "(SPANE_DATABASE_URL) cannot be used" in lines[0]
    assert "hunter2" not in err


def test_python_dash_m_spane_runs_the_cli(tmp_path: Path) -> None:
    done = spane_command(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("spane ")


def test_start_with_the_broker_down_keeps_one_execution_and_sends_it_later(
    tmp_path: Path, pg_url: str, redis_url: str, namespace: str, workers: WorkerPool
) -> None:
    import tests.nodes  # noqa: F401

    down = Settings(
        broker_url="redis://127.0.0.1:1/0",
        database_url=pg_url,
        blob_url=str(tmp_path / "blobs"),
        namespace=namespace,
        lease_seconds=2,
    )
    runtime = Runtime(down)
    old = runtime_module.install(runtime)
    try:
        spane.register_workflow(ECHO)
        with capture_logs() as logs:
            execution_id = spane.enqueue_workflow("echo-once", {"n": 1}, idempotency_key="k1")
        assert "SPANE_BROKER_URL" in logs[0]["error"]
        assert spane.enqueue_workflow("echo-once", {"n": 1}, idempotency_key="k1") == execution_id
        assert [e.id for e in spane.list_executions()] == [execution_id]
        assert runtime.store.node_statuses(execution_id) == {"a": "queued"}
        # The broker is back: a worker's sweeper sends the node whose message never left.
        workers.start(down.with_(broker_url=redis_url, sweep_interval=0.2))
        ended = wait_for(
            lambda: runtime.store.execution_status(execution_id) == "completed" or None,
            "the stored execution to run once the broker is back",
            timeout=60,
        )
        assert ended
        assert [e.id for e in spane.list_executions()] == [execution_id]
    finally:
        runtime_module.install(old)
        runtime.close()


# -- inputs and identifiers ---------------------------------------------------------


def test_idempotency_keys_are_refused_alike_on_every_backend(store_rt: Runtime) -> None:
    spane.register_workflow(ECHO)
    for bad in ("k" * 201, "a\x00b", "line\nbreak", ""):
        with pytest.raises(spane.InputError, match="idempotency key"):
            spane.enqueue_workflow("echo-once", {}, idempotency_key=bad)
    assert spane.list_executions() == []
    first = spane.enqueue_workflow("echo-once", {}, idempotency_key="k" * 200)
    assert spane.enqueue_workflow("echo-once", {}, idempotency_key="k" * 200) == first


def test_numbers_beyond_a_database_integer_are_usage_errors(
    store_rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["dlq", "show", "99999999999999999999999"],
        ["list", "--limit", "1e23"],
        ["list", "--limit", str(2**64)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "expected a whole number" in err
    with pytest.raises(spane.SpaneError, match="no dead letter"):
        store_rt.store.dead_letter(10**22)
    with pytest.raises(spane.InputError, match="limit"):
        spane.list_executions(limit=10**23)


def test_input_file_reads_are_bounded(
    small_rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["start", "anything", "--input", "@/dev/zero"])
    assert code == 2
    assert "SPANE_MAX_PAYLOAD_BYTES=1000" in one_line(capsys.readouterr().err)


def test_deep_json_input_and_regex_patterns_are_input_errors(
    rt: Runtime, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    spane.register_workflow(ECHO)
    assert main(["start", "echo-once", "--input", f"@{deep}"]) == 2
    assert "nested too deeply" in one_line(capsys.readouterr().err)
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(spane.InputError, match="nested too deeply"):
        spane.enqueue_workflow("echo-once", value)
    spane.register_workflow(
        {
            "id": "patterned",
            "input_schema": {"properties": {"s": {"type": "string", "pattern": "^(a|a)*$"}}},
            "nodes": [{"id": "a", "type": "echo"}],
        }
    )
    with pytest.raises(spane.InputError, match="simplify the pattern"):
        spane.enqueue_workflow("patterned", {"s": "a" * 60 + "!"})
    assert [e.workflow_id for e in spane.list_executions()] == []
    assert spane.enqueue_workflow("patterned", {"s": "aaa"})


def test_deep_definitions_and_alias_bombs_are_definition_errors() -> None:
    import spane.builtins

    for source in (
        "id: x\nnodes: " + "[" * 50_000 + "]" * 50_000 + "\n",
        '{"id": "x", "nodes": ' + "[" * 50_000 + "]" * 50_000 + "}",
    ):
        with pytest.raises(spane.DefinitionError, match="nested too deeply"):
            validation.load_definition(source)
    schema: dict[str, object] = {}
    inner = schema
    for _ in range(5000):
        inner["items"] = {}
        inner = inner["items"]  # type: ignore[assignment]
    with pytest.raises(spane.DefinitionError, match="nested too deeply"):
        validation.load_definition(
            {"id": "x", "nodes": [{"id": "a", "type": "noop"}], "input_schema": schema}
        )
    bomb = "a: &a [" + ",".join(["x"] * 9) + "]\n"
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    with pytest.raises(spane.DefinitionError, match="aliases expand"):
        validation.load_definition(bomb + "id: x\n")
    shared = (
        "id: shared\nnodes:\n  - {id: a, type: noop, retry: &r {max_attempts: 2}}\n"
        "  - {id: b, type: noop, after: [a], retry: *r}\n"
    )
    assert validation.load_definition(shared).nodes[1].retry is not None
