"""Fault injection for tests and ``bench/faults.py``: private services, duplication, checks.

Everything here starts its own processes and stops exactly those, by process id, and
only ever talks to 127.0.0.1. The machine's shared Redis and PostgreSQL are never
flushed or restarted: the faults that need that get a private ``redis-server`` or a
private PostgreSQL cluster in a temporary folder.

Worker subprocesses may import this module (``modules=("tests.nodes", "tests.faults")``):
with ``SPANE_TEST_DUPLICATE=1`` in their environment, importing it makes the worker's
broker send every message twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spane
from spane import runtime as runtime_module
from spane.runtime import Runtime
from spane.settings import Settings
from spane.statuses import EXECUTION_TERMINAL, ExecutionStatus, NodeStatus
from tests.services import HOST, delete_keys, free_port

PG_BIN = Path(os.environ.get("SPANE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: Events that finish a node successfully: a node's code returned (``completed``), its
#: timer fired (``timer_fired``, ``delay``), or its child execution ended (``woken``).
DONE_EVENTS = ("completed", "timer_fired", "woken")


class FaultError(RuntimeError):
    """A private service could not be started, or a wait ran out."""


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``predicate`` until it holds; raise ``FaultError`` after ``timeout`` seconds.

    Exceptions from the predicate (a database that is restarting) count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise FaultError(f"timed out after {timeout:g}s waiting for {what} (last error: {last!r})")


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# -- private Redis -----------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """Run a throw-away ``redis-server`` on a free port; yield its URL; stop it by pid."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FaultError("redis-server is not installed")
    port = free_port()
    log = folder / f"redis-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary, "--port", str(port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--daemonize", "no",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        try:
            wait_until(lambda: bool(client.ping()), 15, f"private redis on port {port}")
        finally:
            client.close()
        yield url
    finally:
        _stop_process(proc)


def flushall(url: str) -> None:
    """``FLUSHALL`` a Redis server (only ever a private one)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


# -- private PostgreSQL ------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of our own, in a temporary folder."""

    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]
        result = subprocess.run(_as_postgres(command), capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            raise FaultError(
                f"pg_ctl {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
                f"\n{self.log_tail()}"
            )

    def log_tail(self) -> str:
        log = self.base / "postgres.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses={HOST} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._ctl("-o", options, "-l", str(self.base / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def restart(self, down_seconds: float = 1.0) -> None:
        """Stop the server (fast: connections are cut), stay down a while, start again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """``initdb`` a cluster into a temporary folder, start it, yield it; stop and remove it."""
    if not (PG_BIN / "initdb").exists():
        raise FaultError(f"PostgreSQL binaries not found in {PG_BIN}")
    # Short path: the Unix socket lives here too (socket paths are limited to ~100 bytes).
    base = Path(tempfile.mkdtemp(prefix="spanepg", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    cluster = PrivatePostgres(base, free_port())
    try:
        result = subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust",
                    "-U", "postgres", "--no-sync",
                ]
            ),
            capture_output=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise FaultError(f"initdb failed: {result.stderr.decode(errors='replace')}")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        pid = cluster.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


# -- client runtime ----------------------------------------------------------------------


@contextlib.contextmanager
def client_runtime(settings: Settings) -> Iterator[Runtime]:
    """A client runtime for ``settings``, installed as the process runtime meanwhile.

    Its lease matters: the entry nodes it queues carry its ``lease_seconds``, so it must
    be as short as the workers' for a lost entry message to be found as quickly.
    """
    runtime = Runtime(settings)
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


def slow_chain(workflow_id: str, length: int = 4, seconds: float = 0.3) -> dict[str, Any]:
    """``length`` nodes of ``slow_add`` in a row: the output is the input plus ``length``."""
    nodes: list[dict[str, Any]] = []
    for i in range(length):
        node: dict[str, Any] = {"id": f"n{i}", "type": "slow_add", "config": {"seconds": seconds}}
        if i:
            node["after"] = [f"n{i - 1}"]
        nodes.append(node)
    return {"id": workflow_id, "nodes": nodes}


# -- duplication -------------------------------------------------------------------------


def install_duplication(broker: Any) -> None:
    """Make ``broker`` enqueue every message twice (the copy with a new message id)."""
    if getattr(broker, "_spane_test_duplicating", False):
        return
    send = broker.enqueue

    def enqueue(message: Any, *, delay: int | None = None) -> Any:
        sent = send(message, delay=delay)
        send(message.copy(message_id=str(uuid.uuid4())), delay=delay)
        return sent

    broker.enqueue = enqueue
    broker._spane_test_duplicating = True


# -- raw broker messages -----------------------------------------------------------------


def push_raw(
    redis_url: str, namespace: str, queue: str, data: bytes, message_id: str | None = None
) -> str:
    """Put raw bytes on a Dramatiq Redis queue exactly as its ``enqueue`` script does.

    Dramatiq keeps a queue's messages in the hash ``{namespace}:{queue}.msgs`` keyed by a
    Redis message id, and pushes that id on the list ``{namespace}:{queue}``.
    """
    import redis

    message_id = message_id or str(uuid.uuid4())
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(f"{namespace}:{queue}.msgs", message_id, data)
        client.rpush(f"{namespace}:{queue}", message_id)
    finally:
        client.close()
    return message_id


def drop_queues(redis_url: str, namespace: str) -> int:
    """Delete every Redis key of one queue namespace (the broker "loses" its messages)."""
    return delete_keys(redis_url, f"{namespace}:*")


def stored_messages(redis_url: str, namespace: str, queue: str) -> int:
    """How many messages a Dramatiq Redis queue still holds (delivered or not, unacked)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.hlen(f"{namespace}:{queue}.msgs"))
    finally:
        client.close()


# -- checks on the state of record -------------------------------------------------------


def sql(engine: Any, query: str, **params: Any) -> list[Any]:
    """Run one read-only query; a list parameter expands (``WHERE id IN :ids``)."""
    from sqlalchemy import bindparam, text

    statement = text(query)
    for name, value in params.items():
        if isinstance(value, list):
            statement = statement.bindparams(bindparam(name, expanding=True))
    with engine.connect() as conn:
        return list(conn.execute(statement, params).all())


def scalar(engine: Any, query: str, **params: Any) -> Any:
    return sql(engine, query, **params)[0][0]


def node_count(engine: Any, status: str) -> int:
    return int(scalar(engine, "SELECT count(*) FROM spane_nodes WHERE status = :s", s=status))


def event_count(engine: Any, kind: str) -> int:
    return int(scalar(engine, "SELECT count(*) FROM spane_events WHERE kind = :k", k=kind))


def wait_all_ended(engine: Any, count: int, timeout: float = 120) -> None:
    """Wait until ``count`` executions exist and every one has ended."""

    def ended() -> bool:
        rows = sql(engine, "SELECT status, count(*) FROM spane_executions GROUP BY status")
        by_status = {status: n for status, n in rows}
        total = sum(by_status.values())
        return total >= count and all(s in EXECUTION_TERMINAL for s in by_status)

    wait_until(ended, timeout, f"{count} executions to end", interval=0.2)


def repeated_attempts(engine: Any) -> int:
    """How many node attempts started more than once: ``started`` events per node, minus 1."""
    return int(
        scalar(
            engine,
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM spane_events "
            "WHERE kind = 'started' GROUP BY execution_id, node_id) AS s",
        )
    )


def problems(engine: Any, count: int) -> list[str]:
    """Everything that breaks the guarantees, as readable lines (empty: all good).

    Every execution completed, exactly once; every node finished (completed or skipped)
    with exactly one finishing event; nothing left queued, running or waiting.
    """
    found: list[str] = []
    summaries = spane.list_executions(limit=max(count * 4, 100))
    top = [s for s in summaries if s.parent_id is None]
    if len(top) != count:
        found.append(f"expected {count} top-level executions, found {len(top)}")
    found += [
        f"execution {s.id} is {s.status}"
        for s in summaries
        if s.status != ExecutionStatus.COMPLETED
    ]
    for row in sql(
        engine,
        "SELECT e.id, count(v.id) FROM spane_executions e LEFT JOIN spane_events v "
        "ON v.execution_id = e.id AND v.kind = 'execution_completed' "
        "GROUP BY e.id HAVING count(v.id) <> 1",
    ):
        found.append(f"execution {row[0]} has {row[1]} execution_completed events")
    for row in sql(
        engine,
        "SELECT execution_id, node_id, status FROM spane_nodes "
        "WHERE status NOT IN ('completed', 'skipped')",
    ):
        found.append(f"node {row[0]}/{row[1]} is {row[2]}")
    done = ", ".join(f"'{k}'" for k in DONE_EVENTS)
    for row in sql(
        engine,
        "SELECT n.execution_id, n.node_id, n.status, "
        f"count(v.id) FILTER (WHERE v.kind IN ({done})), "
        "count(v.id) FILTER (WHERE v.kind = 'skipped') "
        "FROM spane_nodes n LEFT JOIN spane_events v "
        "ON v.execution_id = n.execution_id AND v.node_id = n.node_id "
        "GROUP BY n.execution_id, n.node_id, n.status",
    ):
        execution_id, node_id, status, completions, skips = row
        expected = (1, 0) if status == NodeStatus.COMPLETED else (0, 1)
        if (completions, skips) != expected:
            found.append(
                f"node {execution_id}/{node_id} ({status}) has {completions} completion "
                f"and {skips} skip events"
            )
    return found


if os.environ.get("SPANE_TEST_DUPLICATE") == "1":
    install_duplication(runtime_module.get().broker)
    print("tests.faults: this worker sends every message twice", file=sys.stderr, flush=True)
