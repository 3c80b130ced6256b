"""Property-based tests (hypothesis) of SPEC §5 on random workflows, every message sent twice.

Random DAGs (routers choosing random successors, nodes failing as their config says, some
with ``continue_on_fail``) run on the embedded engine while the broker delivers every
message twice. A pure-Python reference model of SPEC §5 says what each workflow must do;
the final statuses, outputs and execution output must match it, and the recorded history
must show each transition once and in dependency order. The same workflows must give the
same results on SQLite and PostgreSQL. A second family nests sub-workflows and throws
random pause/resume/cancel commands at the parent while it runs. Every status a node or
execution row takes in these runtimes is logged by database triggers and checked against
the transition table of ``spane.statuses``; a last family throws random operations
(signals, replays, dead-letter retries among them) at executions for that check alone.

Some fixtures only change timing, never semantics, to make rare interleavings likely:
``racy_rt`` holds race windows of sub-workflows open, and ``LockStep`` holds PostgreSQL
transactions at interleavings that once deadlocked; their minimal examples stay as
explicit ``@example`` regression cases.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import text

import spane
from spane import runtime as runtime_module
from spane import starts as spane_starts
from spane.runtime import Runtime
from spane.statuses import (
    EXECUTION_INITIAL,
    EXECUTION_TERMINAL,
    EXECUTION_TRANSITIONS,
    NODE_INITIAL,
    NODE_TERMINAL,
    NODE_TRANSITIONS,
    ExecutionStatus,
    NodeStatus,
    execution_guard,
    node_guard,
)
from spane.store import Dispatch
from spane.store.history import Event
from tests import nodes as test_nodes
from tests.conftest import embedded_settings

PROPERTY = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WAIT = 60  # seconds an execution may take to end
# Node events that finish a node (a sub-workflow node finishes with ``woken``).
FINISHING = ("completed", "failed", "skipped", "woken", "timer_fired")
# Node events that must happen at most once per attempt.
ONCE_PER_ATTEMPT = ("queued", "started", "retrying", "waiting_on_child", "woken")


def exact(value: Any) -> bytes:
    """JSON text of a value, keys sorted, so ``0``, ``False`` and ``0.0`` stay distinct."""
    return msgspec.json.encode(value, order="sorted")


# -- runtimes whose broker sends every message twice -----------------------------------


@contextlib.contextmanager
def duplicating_runtime(tmp_path: Path, **changes: Any) -> Iterator[Runtime]:
    """An embedded runtime that sends every message at least twice.

    ``dispatch`` runs twice (so a successor the worker thread keeps to run inline is also
    sent through the broker), and the broker enqueues every message (node, timer,
    wake-up) twice; delayed messages are duplicated again when their delay runs out.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(embedded_settings(tmp_path, **changes))
    send = runtime.broker.enqueue
    dispatch = runtime.dispatch
    sent = Counter[str]()

    def enqueue_twice(message: Any, *, delay: int | None = None) -> Any:
        sent[message.actor_name] += 1
        send(message, delay=delay)
        return send(message, delay=delay)

    def dispatch_twice(dispatches: Iterable[Dispatch]) -> None:
        dispatches = list(dispatches)
        dispatch(dispatches)
        dispatch(dispatches)

    runtime.broker.enqueue = enqueue_twice  # type: ignore[method-assign]
    runtime.dispatch = dispatch_twice  # type: ignore[method-assign]
    runtime.sent = sent  # type: ignore[attr-defined]
    log_status_moves(runtime)
    old = runtime_module.install(runtime)
    try:
        yield runtime
        check_status_moves(runtime)
    finally:
        runtime_module.install(old)
        runtime.close()


# -- every status a row takes, logged by the database --------------------------------------

MOVES = "test_status_moves"
TABLES = {"node": "spane_nodes", "execution": "spane_executions"}
PG_LOG = f"""
CREATE FUNCTION test_log_move() RETURNS trigger AS $$ BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {MOVES} VALUES (TG_ARGV[0], NULL, NEW.status);
  ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
    INSERT INTO {MOVES} VALUES (TG_ARGV[0], OLD.status, NEW.status);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""


def log_status_moves(runtime: Runtime) -> None:
    """Have the database log every status a node or execution row is inserted with or
    moved to, whichever statement of the store does it."""
    engine = runtime.store.engine
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {MOVES} (entity TEXT, old TEXT, new TEXT)"))
        if engine.dialect.name == "postgresql":
            conn.execute(text(PG_LOG))
        for entity, table in TABLES.items():
            if engine.dialect.name == "postgresql":
                conn.execute(
                    text(
                        f"CREATE TRIGGER {table}_moves AFTER INSERT OR UPDATE ON {table} "
                        f"FOR EACH ROW EXECUTE FUNCTION test_log_move('{entity}')"
                    )
                )
                continue
            conn.execute(
                text(
                    f"CREATE TRIGGER {table}_born AFTER INSERT ON {table} BEGIN "
                    f"INSERT INTO {MOVES} VALUES ('{entity}', NULL, NEW.status); END"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER {table}_moved AFTER UPDATE OF status ON {table} "
                    f"WHEN OLD.status <> NEW.status BEGIN "
                    f"INSERT INTO {MOVES} VALUES ('{entity}', OLD.status, NEW.status); END"
                )
            )


def allowed(entity: str, old: str | None, new: str) -> bool:
    """Whether the transition table allows a row of ``entity`` to take ``new`` from ``old``
    (None: inserted)."""
    if entity == "node":
        if old is None:
            return new in NODE_INITIAL
        return new in NODE_TRANSITIONS[NodeStatus(old)]
    if old is None:
        return new in EXECUTION_INITIAL
    return new in EXECUTION_TRANSITIONS[ExecutionStatus(old)]


def check_status_moves(runtime: Runtime) -> Counter[tuple[str, str | None, str]]:
    """Take the logged moves, assert the table allows each, and return them counted."""
    with runtime.store.engine.begin() as conn:
        rows = conn.execute(text(f"SELECT entity, old, new FROM {MOVES}")).all()
        conn.execute(text(f"DELETE FROM {MOVES}"))
    moves = Counter((r.entity, r.old, r.new) for r in rows)
    wrong = sorted((m for m in moves if not allowed(*m)), key=str)
    assert not wrong, f"moves outside the transition table: {wrong}"
    return moves


@pytest.fixture
def dup_rt(tmp_path: Path) -> Iterator[Runtime]:
    """One duplicating SQLite runtime shared by every example of a property."""
    with duplicating_runtime(tmp_path) as runtime:
        yield runtime


@pytest.fixture
def twin_rts(tmp_path: Path, pg_url: str) -> Iterator[tuple[Runtime, Runtime]]:
    """Duplicating runtimes on SQLite and on PostgreSQL (both with the embedded broker)."""
    with (
        duplicating_runtime(tmp_path / "sqlite") as lite,
        duplicating_runtime(tmp_path / "pg", database_url=pg_url) as pg,
    ):
        pg.lock_step = LockStep(pg)  # type: ignore[attr-defined]
        yield lite, pg


# -- workflow specs and the reference model ----------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One generated node; its behaviour is fully determined by these fields."""

    id: str
    after: tuple[str, ...] = ()
    kind: str = "step"  # step (prop_step) | router | sleep | sub (subworkflow)
    fail: int = 0  # step: fail the first ``fail`` attempts (-1: all)
    retryable: bool = True
    max_attempts: int = 1
    continue_on_fail: bool = False
    next: tuple[str, ...] = ()  # router: the successors it chooses
    seconds: float = 0.0  # sleep
    target: str = ""  # sub: symbolic name of the child workflow

    def definition(self, prefix: str) -> dict[str, Any]:
        node: dict[str, Any] = {"id": self.id, "after": list(self.after)}
        if self.kind == "router":
            return node | {"type": "router", "config": {"next": list(self.next)}}
        if self.kind == "sleep":
            return node | {"type": "sleep", "config": {"seconds": self.seconds}}
        if self.kind == "sub":
            return node | {"type": "subworkflow", "config": {"workflow": f"{prefix}-{self.target}"}}
        return node | {
            "type": "prop_step",
            "config": {"fail": self.fail, "retryable": self.retryable},
            "retry": {"max_attempts": self.max_attempts, "backoff": "fixed", "delay": "1ms"},
            "continue_on_fail": self.continue_on_fail,
        }

    def outcome(self) -> tuple[bool, int]:
        """``(fails for good, attempts it takes)`` of a ``step``."""
        if self.fail == 0:
            return False, 1
        if not self.retryable:
            return True, 1
        if self.fail < 0 or self.fail >= self.max_attempts:
            return True, self.max_attempts
        return False, self.fail + 1


def workflow(workflow_id: str, specs: Sequence[Spec], prefix: str) -> dict[str, Any]:
    return {"id": workflow_id, "nodes": [s.definition(prefix) for s in specs]}


def parents_of(specs: Sequence[Spec]) -> dict[str, tuple[str, ...]]:
    return {s.id: s.after for s in specs}


@dataclass
class Expected:
    """What SPEC §5 says an execution of a workflow does."""

    status: dict[str, str]  # completed | failed | skipped | cancelled (after a fatal failure)
    output: dict[str, Any]  # of completed nodes and failed continue_on_fail nodes
    attempts: dict[str, int]  # of nodes that ran
    fatal: set[str]  # nodes that fail for good without continue_on_fail
    result: Any  # the execution output, if it completes


def routed(route: set[str] | None, node_id: str) -> bool:
    """Whether a parent that chose ``route`` (None: no Route) runs ``node_id``."""
    return route is None or node_id in route


def expect(
    specs: Sequence[Spec], value: Any, library: dict[str, list[Spec]] | None = None
) -> Expected:
    """The reference model: run ``specs`` on ``value`` in topological (definition) order."""
    status: dict[str, str] = {}
    output: dict[str, Any] = {}
    attempts: dict[str, int] = {}
    routes: dict[str, set[str] | None] = {}
    fatal: set[str] = set()
    children: dict[str, list[str]] = {s.id: [] for s in specs}
    for s in specs:
        for p in s.after:
            children[p].append(s.id)
    for s in specs:
        if s.after:
            if any(status[p] == "cancelled" or p in fatal for p in s.after):
                status[s.id] = "cancelled"  # the execution failed before this could start
                continue
            # A node runs once every parent finished and at least one edge into it is live:
            # the parent completed (or failed with continue_on_fail) and did not route away.
            live = any(
                status[p] in ("completed", "failed") and routed(routes[p], s.id) for p in s.after
            )
            if not live:
                status[s.id] = "skipped"
                continue
            # The input maps every parent that completed (routed here or not) to its output.
            done = {p: output[p] for p in s.after if status[p] in ("completed", "failed")}
            value_in = done[s.after[0]] if len(s.after) == 1 else done
        else:
            value_in = value
        routes[s.id] = None
        attempts[s.id] = 1
        if s.kind == "router":
            routes[s.id] = set(s.next)
            out = value_in
        elif s.kind == "sleep":
            out = value_in
        elif s.kind == "sub":
            assert library is not None
            out = expect(library[s.target], value_in, library).result
        else:
            fails, attempts[s.id] = s.outcome()
            if fails:
                status[s.id] = "failed"
                if s.continue_on_fail:
                    output[s.id] = {"error": f"planned failure of {s.id}"}
                else:
                    fatal.add(s.id)
                continue
            out = {"id": s.id, "h": test_nodes.prop_digest(value_in)}
        status[s.id] = "completed"
        output[s.id] = out
    sinks = [s.id for s in specs if not children[s.id]]
    ended = {n: output[n] for n in sinks if status[n] in ("completed", "failed") and n in output}
    result = ended.get(sinks[0]) if len(sinks) == 1 else ended
    return Expected(status, output, attempts, fatal, result)


# -- strategies --------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "x", [], {}]),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 2), max_size=2),
)


@st.composite
def dags(
    draw: st.DrawFn,
    kinds: Sequence[str],
    *,
    max_parents: int = 4,
    failures: bool = True,
    targets: Sequence[str] = (),
) -> list[Spec]:
    """A DAG of ``len(kinds)`` nodes; node i depends on a random subset of earlier nodes."""
    afters: list[tuple[str, ...]] = []
    for i in range(len(kinds)):
        picked = (
            draw(st.lists(st.integers(0, i - 1), max_size=min(i, max_parents), unique=True))
            if i
            else []
        )
        afters.append(tuple(f"n{p}" for p in picked))
    children: dict[str, list[str]] = defaultdict(list)
    for i, after in enumerate(afters):
        for p in after:
            children[p].append(f"n{i}")
    specs = []
    for i, (kind, after) in enumerate(zip(kinds, afters, strict=True)):
        node_id = f"n{i}"
        if kind == "router":
            kids = children[node_id]
            chosen = draw(st.lists(st.sampled_from(kids), unique=True)) if kids else []
            specs.append(Spec(node_id, after, "router", next=tuple(chosen)))
        elif kind == "sleep":
            seconds = draw(st.sampled_from([0.0, 0.02, 0.05, 0.1]))
            specs.append(Spec(node_id, after, "sleep", seconds=seconds))
        elif kind == "sub":
            specs.append(Spec(node_id, after, "sub", target=draw(st.sampled_from(targets))))
        elif not failures:
            specs.append(Spec(node_id, after))
        else:
            specs.append(
                Spec(
                    node_id,
                    after,
                    fail=draw(st.sampled_from([0] * 8 + [1, 2, -1])),
                    retryable=draw(st.sampled_from([True, True, True, False])),
                    max_attempts=draw(st.integers(1, 3)),
                    continue_on_fail=draw(st.sampled_from([True] * 5 + [False])),
                )
            )
    return specs


def random_dags(max_nodes: int) -> st.SearchStrategy[list[Spec]]:
    kind = st.sampled_from(["step"] * 3 + ["router"] * 2)
    kinds = st.integers(1, max_nodes).flatmap(lambda n: st.lists(kind, min_size=n, max_size=n))
    return kinds.flatmap(lambda ks: dags(ks))


# -- running and checking ----------------------------------------------------------------


def settled(execution_id: str, timeout: float = WAIT) -> spane.Execution:
    """Wait for the execution to end and for its in-flight nodes to finish too."""
    ex = spane.wait(execution_id, timeout=timeout)
    deadline = time.monotonic() + 5
    while any(n.status not in NODE_TERMINAL for n in ex.nodes.values()):
        assert time.monotonic() < deadline, f"nodes never settled: {statuses(ex)}"
        time.sleep(0.01)
        ex = spane.get_execution(execution_id)
    return ex


def statuses(ex: spane.Execution) -> dict[str, str]:
    return {node_id: state.status for node_id, state in ex.nodes.items()}


def run_workflow(
    specs: Sequence[Spec], value: Any, prefix: str | None = None, timeout: float = WAIT
) -> tuple[spane.Execution, list[Event]]:
    """Register the specs under a fresh id, run them on ``value``, return the settled result."""
    prefix = prefix or f"prop-{uuid.uuid4().hex[:12]}"
    workflow_id, _ = spane.register_workflow(workflow(prefix, specs, prefix))
    execution_id = spane.enqueue_workflow(workflow_id, value)
    ex = settled(execution_id, timeout)
    return ex, spane.history(execution_id)


def check_history(
    ex: spane.Execution, events: list[Event], parents: dict[str, tuple[str, ...]]
) -> dict[str, list[Event]]:
    """Each transition once per node and attempt; no node starts before its parents finished."""
    by_node: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.node_id is not None:
            by_node[e.node_id].append(e)
    per_attempt = Counter(
        (e.node_id, e.kind, e.attempt) for e in events if e.kind in ONCE_PER_ATTEMPT
    )
    twice = sorted(key for key, count in per_attempt.items() if count > 1)
    assert not twice, f"transitions recorded more than once: {twice}"
    finished: dict[str, int] = {}
    for node_id, node_events in by_node.items():
        ends = [e.kind for e in node_events if e.kind in FINISHING]
        assert len(ends) <= 1, f"node {node_id} finished more than once: {ends}"
        if ends:
            finished[node_id] = next(e.id for e in node_events if e.kind in FINISHING)
        started = sum(e.kind == "started" for e in node_events)
        assert started <= ex.nodes[node_id].attempts, (
            f"node {node_id} started {started} times in {ex.nodes[node_id].attempts} attempts"
        )
    for node_id, node_events in by_node.items():
        first = next((e.id for e in node_events if e.kind == "started"), None)
        if first is None:
            continue
        for parent in parents[node_id]:
            assert parent in finished and finished[parent] < first, (
                f"node {node_id} started (event {first}) before its parent {parent} finished "
                f"(event {finished.get(parent)})"
            )
    ends = [
        e.kind
        for e in events
        if e.node_id is None
        and e.kind in ("execution_completed", "execution_failed", "execution_cancelled")
    ]
    assert ends == [f"execution_{ex.status}"], f"execution ended {ends}, status {ex.status}"
    return by_node


def check_against_model(
    specs: Sequence[Spec], value: Any, ex: spane.Execution, events: list[Event]
) -> Expected:
    """Compare a settled execution with the reference model."""
    model = expect(specs, value)
    by_node = check_history(ex, events, parents_of(specs))
    started = {n: sum(e.kind == "started" for e in evs) for n, evs in by_node.items()}
    if not model.fatal:
        assert ex.status == "completed", f"execution {ex.status}: {ex.error}"
        assert statuses(ex) == model.status
        for node_id, state in ex.nodes.items():
            if node_id in model.output:
                assert exact(state.output) == exact(model.output[node_id]), node_id
                assert started.get(node_id, 0) == model.attempts[node_id], node_id
            else:
                assert state.output is None and started.get(node_id, 0) == 0, node_id
        assert exact(ex.output) == exact(model.result)
        return model
    # A node failed for good without continue_on_fail: the execution fails; what had
    # finished before agrees with the model; nothing new is queued or started after.
    assert ex.status == "failed", f"execution {ex.status}, expected failed ({model.fatal})"
    assert ex.output is None
    culprits = [n for n in model.fatal if ex.nodes[n].status == "failed"]
    assert culprits, f"no fatal node failed: {statuses(ex)}"
    assert any((ex.error or "").startswith(f"node {n!r} failed") for n in culprits), ex.error
    for node_id, state in ex.nodes.items():
        assert state.status in NODE_TERMINAL, (node_id, state.status)
        if state.status == "cancelled":
            continue
        assert state.status == model.status[node_id], (node_id, state.status)
        if node_id in model.output:
            assert exact(state.output) == exact(model.output[node_id]), node_id
        if state.status != "skipped":
            assert started.get(node_id, 0) == model.attempts[node_id], node_id
    end = next(e.id for e in events if e.kind == "execution_failed")
    queued_before = {
        (e.node_id, e.attempt if e.kind == "queued" else (e.attempt or 0) + 1)
        for e in events
        if e.id < end and e.kind in ("queued", "retrying", "handed_back", "lease_expired")
    }
    for e in events:
        if e.id > end:
            assert e.kind not in ("queued", "retrying", "skipped"), f"{e.kind} after failure"
            if e.kind == "started":
                assert (e.node_id, e.attempt) in queued_before, f"{e.node_id} started after failure"
    return model


# -- 1-5: random DAGs under duplicated messages ----------------------------------------------


@settings(PROPERTY, max_examples=60)
@given(specs=random_dags(30), value=VALUES)
def test_random_dags_match_the_model_under_duplicated_messages(
    dup_rt: Runtime, specs: list[Spec], value: Any
) -> None:
    ex, events = run_workflow(specs, value)
    model = check_against_model(specs, value, ex, events)
    event(f"{len(specs) // 10 * 10}+ nodes, {ex.status}")
    event(f"some skipped: {'skipped' in model.status.values()}")
    assert sum(dup_rt.sent.values()) > 0  # type: ignore[attr-defined]


# -- 6: SQLite and PostgreSQL agree ------------------------------------------------------------


class LockStep:
    """Holds PostgreSQL transactions at legal but unlucky interleavings (timing only).

    Two interleavings, each waited for at most a fraction of a second, so the hooks alone
    never hang anything:

    - fatal (workflows in ``fatal``): a node finishing has updated its children's rows
      (``Advance.settle``, just before it records their ``queued``/``skipped`` events) and
      has not yet counted itself on the execution row, while a sibling records a failure
      without ``continue_on_fail`` (``fail_node`` locks the execution row, then cancels
      the nodes not started);
    - pairs (workflows in ``pairs``): two siblings finishing at once both hold the row of
      the first child they updated before either updates its next child.
    """

    def __init__(self, runtime: Runtime, hold: float = 0.15, pair_hold: float = 0.05) -> None:
        self.hold, self.pair_hold = hold, pair_hold
        self.fatal: set[str] = set()
        self.pairs: set[str] = set()
        self.failing: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.settling: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.locked: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.arrived: Counter[str] = Counter()
        self.paired = threading.Condition()
        self.local = threading.local()
        self.workflow_of: dict[str, str] = {}
        store = self.store = runtime.store
        fail_node, record_events = store.fail_node, store.event_log.record_events
        lock_execution = store.execution_row.lock

        def held_fail_node(claim: Any, error: str, *, continue_on_fail: bool, **more: Any) -> Any:
            if continue_on_fail:
                return fail_node(claim, error, continue_on_fail=continue_on_fail, **more)
            self.failing[claim.execution_id].set()
            self.settling[claim.execution_id].wait(self.hold)
            self.local.failing = True
            try:
                return fail_node(claim, error, continue_on_fail=continue_on_fail, **more)
            finally:
                self.local.failing = False

        def held_record_events(conn: Any, rows: list[Any]) -> None:
            settle = [r[0] for r in rows if r[2] in ("queued", "skipped")]
            if settle and self.workflow(settle[0]) in self.fatal:
                execution_id = settle[0]
                self.settling[execution_id].set()
                if self.failing[execution_id].wait(self.hold):
                    self.locked[execution_id].wait(self.hold)
            record_events(conn, rows)

        def held_lock_execution(conn: Any, execution_id: str, now: float, **more: Any) -> Any:
            row = lock_execution(conn, execution_id, now, **more)
            if getattr(self.local, "failing", False):  # the failure's lock, not a settle's
                self.locked[execution_id].set()
            return row

        store.fail_node = held_fail_node  # type: ignore[method-assign]
        store.event_log.record_events = held_record_events  # type: ignore[method-assign]
        store.execution_row.lock = held_lock_execution  # type: ignore[method-assign]
        sa_event.listen(store.engine, "begin", self._begin)
        sa_event.listen(store.engine, "after_cursor_execute", self._after_execute)

    def workflow(self, execution_id: str) -> str | None:
        """The execution's workflow id (None while the execution is not committed yet)."""
        if execution_id not in self.workflow_of:
            with self.store.engine.connect() as conn:
                found = conn.execute(
                    text("SELECT workflow_id FROM spane_executions WHERE id = :e"),
                    {"e": execution_id},
                ).scalar()
            if found is None:
                return None
            self.workflow_of[execution_id] = found
        return self.workflow_of[execution_id]

    def _begin(self, conn: Any) -> None:
        self.local.propagated = False

    def _after_execute(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        # The first countdown update of children (``Advance.settle``) in this transaction.
        if "live_parents + " not in statement or getattr(self.local, "propagated", True):
            return
        self.local.propagated = True
        execution_id = params["e"]
        if self.workflow(execution_id) not in self.pairs:
            return
        with self.paired:
            self.arrived[execution_id] += 1
            count = self.arrived[execution_id]
            if count % 2:
                self.paired.wait_for(lambda: self.arrived[execution_id] > count, self.pair_hold)
            else:
                self.paired.notify_all()


def outcome(ex: spane.Execution) -> tuple[str, dict[str, str], bytes, bytes]:
    outputs = {n: s.output for n, s in ex.nodes.items()}
    return ex.status, statuses(ex), exact(outputs), exact(ex.output)


# The smallest workflows that deadlock on PostgreSQL. n0 completes and queues its child
# n2 while n1 fails for good:
PG_FAIL_DEADLOCK = [Spec("n0"), Spec("n1", fail=-1, retryable=False), Spec("n2", ("n0",))]
# Two routers finishing at once update their common children in opposite orders:
PG_ROUTE_DEADLOCK = [
    Spec("n0", kind="router", next=("n2",)),
    Spec("n1", kind="router", next=("n3",)),
    Spec("n2", ("n0", "n1")),
    Spec("n3", ("n0", "n1")),
]
WAIT_PG = 10  # seconds; these workflows end in well under one


@settings(PROPERTY, max_examples=15)
@example(specs=PG_FAIL_DEADLOCK, value=None)
@example(specs=PG_ROUTE_DEADLOCK, value=None)
@given(specs=random_dags(12), value=VALUES)
def test_sqlite_and_postgresql_agree(
    twin_rts: tuple[Runtime, Runtime], specs: list[Spec], value: Any
) -> None:
    lite, pg = twin_rts
    stepper: LockStep = pg.lock_step  # type: ignore[attr-defined]
    model = expect(specs, value)
    results = []
    for runtime in (lite, pg):
        runtime_module.install(runtime)
        prefix = f"prop-{uuid.uuid4().hex[:12]}"
        if model.fatal:
            stepper.fatal.add(prefix)
        if any(s.kind == "router" for s in specs):
            stepper.pairs.add(prefix)
        ex, events = run_workflow(specs, value, prefix=prefix, timeout=WAIT_PG)
        check_against_model(specs, value, ex, events)
        results.append(outcome(ex))
    if model.fatal:
        assert results[0][0] == results[1][0] == "failed"  # which fatal node fails first is a race
    else:
        assert results[0] == results[1]


# -- nested sub-workflows under random pause / resume / cancel -------------------------------

SPAWN_LAG = 0.08  # a subworkflow attempt waits this long before it starts its child


@pytest.fixture
def racy_rt(dup_rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """``dup_rt`` with a race window held open (timing only; no semantics change).

    A ``subworkflow`` attempt sleeps ``SPAWN_LAG`` between its claim and starting the
    child. (Cancelling an execution and its children is one transaction: no window.)
    """
    start_child = spane_starts.start_child

    def slow_start_child(runtime: Runtime, parent: Any, spawn: Any) -> Any:
        time.sleep(SPAWN_LAG)
        return start_child(runtime, parent, spawn)

    monkeypatch.setattr(spane_starts, "start_child", slow_start_child)
    spane.run({"id": "warm-up", "nodes": [{"id": "a", "type": "noop"}]}, None, timeout=WAIT)
    return dup_rt


@dataclass(frozen=True)
class Family:
    """A parent workflow, the workflows it runs (by symbolic name), and commands to send."""

    library: dict[str, list[Spec]]
    root: list[Spec]
    commands: list[tuple[float, str]]  # (seconds to sleep first, pause|resume|cancel)


@st.composite
def families(draw: st.DrawFn, commands: Sequence[str]) -> Family:
    child_kinds = st.lists(st.sampled_from(["sleep", "step"]), min_size=1, max_size=3)
    library: dict[str, list[Spec]] = {}
    for i in range(draw(st.integers(1, 2))):
        library[f"leaf{i}"] = draw(dags(draw(child_kinds), failures=False))
    if draw(st.booleans()):  # a second level: a child that itself runs a sub-workflow
        kinds = ["sub", *draw(st.lists(st.sampled_from(["sleep", "step"]), max_size=2))]
        library["mid"] = draw(dags(kinds, failures=False, targets=sorted(library)))
    subs = draw(st.integers(1, 3))
    kinds = ["sub"] * subs + draw(st.lists(st.sampled_from(["sleep", "step"]), max_size=2))
    root = draw(dags(draw(st.permutations(kinds)), failures=False, targets=sorted(library)))
    sends = st.tuples(st.sampled_from([0.0, 0.01, 0.03, 0.06]), st.sampled_from(commands))
    return Family(library, root, draw(st.lists(sends, min_size=1, max_size=5)))


def tree(execution_id: str) -> list[spane.Execution]:
    """The execution and all its descendants."""
    found, stack = [], [execution_id]
    while stack:
        ex = spane.get_execution(stack.pop())
        found.append(ex)
        stack.extend(ex.children)
    return found


def settled_tree(execution_id: str, timeout: float = 10.0) -> list[spane.Execution]:
    """Wait until the execution and every descendant have ended, their nodes too (a node
    in flight when its execution ended may still finish, or start a child)."""
    deadline = time.monotonic() + timeout
    while True:
        found = tree(execution_id)
        open_ = [
            (ex.id, ex.status, statuses(ex))
            for ex in found
            if ex.status not in EXECUTION_TERMINAL
            or any(n.status not in NODE_TERMINAL for n in ex.nodes.values())
        ]
        if not open_:
            return found
        assert time.monotonic() < deadline, f"executions left open: {open_}"
        time.sleep(0.01)


def send(command: str, execution_id: str) -> bool:
    """Send a control command; True if it applied, False if the state ruled it out."""
    try:
        {"pause": spane.pause, "resume": spane.resume, "cancel": spane.cancel}[command](
            execution_id
        )
    except spane.InvalidTransition as exc:
        status = spane.get_execution(execution_id).status
        if command == "pause":
            assert status != "running", f"pause refused on a running execution: {exc}"
        elif command == "resume":
            assert status != "paused", f"resume refused on a paused execution: {exc}"
        else:
            # Only the root being over already may refuse a cancel; a child that ended
            # while its parent was being cancelled must not make cancel fail half-way.
            assert execution_id in str(exc), f"cancel of {execution_id} raised: {exc}"
            assert status in EXECUTION_TERMINAL
        return False
    return True


def no_start_while_paused(events: list[Event]) -> None:
    paused = False
    for e in events:
        if e.node_id is None and e.kind in ("paused", "resumed"):
            paused = e.kind == "paused"
        assert not (paused and e.kind == "started"), (
            f"node {e.node_id} started while the execution was paused"
        )


def run_family(family: Family, value: Any, *, paused_stays_paused: bool = False) -> None:
    """Run a family, send its commands, and check every execution of the tree.

    With ``paused_stays_paused``, an execution paused and not resumed must still be
    ``paused`` a while later; otherwise it may also have completed, when the work in
    flight at the pause was all it needed.
    """
    prefix = f"fam-{uuid.uuid4().hex[:12]}"
    specs_of = {f"{prefix}-{name}": specs for name, specs in family.library.items()}
    for name in sorted(family.library, key=lambda n: n == "mid"):  # leaves first
        spane.register_workflow(workflow(f"{prefix}-{name}", family.library[name], prefix))
    root_id = f"{prefix}-root"
    specs_of[root_id] = family.root
    spane.register_workflow(workflow(root_id, family.root, prefix))
    execution_id = spane.enqueue_workflow(root_id, value)

    cancelled = paused = False
    cancel_returned = 0.0
    for pause_s, command in family.commands:
        time.sleep(pause_s)
        if send(command, execution_id):
            if command == "cancel" and not cancelled:
                cancelled, cancel_returned = True, time.time()
            paused = command == "pause"
    if cancelled:
        assert spane.wait(execution_id, timeout=10).status == "cancelled"
    else:
        if paused:
            time.sleep(0.2)
            status = spane.get_execution(execution_id).status
            event(f"paused until the end; then {status}")
            if paused_stays_paused:
                assert status == "paused", f"a paused execution became {status}"
            # Pausing stops new nodes; the work in flight at the pause may still be the
            # last the execution needed, and then it completes although paused.
            assert status in ("paused", "completed"), status
            no_start_while_paused(spane.history(execution_id))
            if status == "paused":
                spane.resume(execution_id)
        assert spane.wait(execution_id, timeout=WAIT).status == "completed"
    event(f"cancelled={cancelled} nested={'mid' in family.library}")

    executions = settled_tree(execution_id)
    by_id = {ex.id: ex for ex in executions}
    for ex in executions:
        events = spane.history(ex.id)
        specs = specs_of[ex.workflow_id]
        by_node = check_history(ex, events, parents_of(specs))
        no_start_while_paused(events)
        if ex.parent_id is not None:
            parent = by_id[ex.parent_id]
            assert parent.finished_at is None or ex.created_at <= parent.finished_at, (
                f"child {ex.id} was started after its parent {parent.id} ended "
                f"({parent.status}); it ended {ex.status}"
            )
        if cancelled:
            # Children of a cancelled parent end cancelled, unless they had completed
            # before the cancel reached them.
            assert ex.status in ("completed", "cancelled"), (ex.id, ex.status, ex.error)
            assert ex.status == "cancelled" or (ex.finished_at or 0) <= cancel_returned, (
                f"{ex.id} completed after cancel returned"
            )
        else:
            assert ex.status == "completed", (ex.id, ex.status, ex.error)
        for spec in specs:
            if spec.kind != "sub":
                continue
            kinds = Counter(e.kind for e in by_node.get(spec.id, []))
            kids = [c for c in ex.children if by_id[c].parent_node_id == spec.id]
            assert kinds["waiting_on_child"] <= 1 and len(kids) == kinds["waiting_on_child"], (
                f"{spec.id}: {kinds}, children {kids}"
            )
            # The parent resumes exactly once.
            assert kinds["woken"] <= 1 and kinds["failed"] == 0, f"{spec.id}: {kinds}"
            if ex.nodes[spec.id].status == "completed":
                assert kinds["woken"] == 1, f"{spec.id} completed without a wake-up: {kinds}"
    root = by_id[execution_id]
    if root.status == "completed":
        model = expect(family.root, value, family.library)
        assert statuses(root) == model.status
        for node_id, state in root.nodes.items():
            assert exact(state.output) == exact(model.output[node_id]), node_id
        assert exact(root.output) == exact(model.result)


@settings(PROPERTY, max_examples=30)
@given(family=families(["pause", "resume"]), value=VALUES)
def test_nested_subworkflows_under_random_pause_and_resume(
    racy_rt: Runtime, family: Family, value: Any
) -> None:
    run_family(family, value)


LEAF = {"leaf0": [Spec("n0")]}
SLOW_LEAF = {"leaf0": [Spec("n0", kind="sleep", seconds=0.2)]}
ONE_SUB = [Spec("n0", kind="sub", target="leaf0")]


@settings(PROPERTY, max_examples=40)
# Regression examples: the cancel lands while n0 is between its claim and starting its
# child; the cancel lands while the child runs and the child completes before the cancel
# reaches it (both left a child running or made cancel raise before d81c6b6).
@example(family=Family(LEAF, ONE_SUB, [(0.02, "cancel")]), value=None)
@example(family=Family(SLOW_LEAF, ONE_SUB, [(0.15, "cancel")]), value=None)
@given(family=families(["pause", "resume", "cancel"]), value=VALUES)
def test_nested_subworkflows_under_random_pause_resume_and_cancel(
    racy_rt: Runtime, family: Family, value: Any
) -> None:
    run_family(family, value)


@settings(PROPERTY, max_examples=15)
# n0 is starting its child when the pause lands; the child completes and wakes n0.
@example(family=Family(LEAF, ONE_SUB, [(0.02, "pause")]), value=None)
@given(family=families(["pause"]).filter(lambda f: len(f.commands) == 1), value=VALUES)
def test_a_paused_execution_stays_paused_until_resumed(
    racy_rt: Runtime, family: Family, value: Any
) -> None:
    run_family(family, value, paused_stays_paused=True)


# -- the transition table ------------------------------------------------------------------

#: SPEC §5, the statuses of the contract.
SPEC_STATUSES = (
    "Node status: `pending → queued → running → completed | failed | skipped | cancelled`, "
    "with `waiting` for parked nodes. Execution status: `running`, `paused`, `completed`, "
    "`failed`, `cancelled`."
)


def test_the_transition_table_holds_the_statuses_of_the_spec() -> None:
    node_part, execution_part = SPEC_STATUSES.split("Execution status:")
    node_names = re.findall(r"[a-z]+", " ".join(re.findall(r"`([^`]+)`", node_part)))
    execution_names = re.findall(r"`([a-z]+)`", execution_part)
    assert set(NODE_TRANSITIONS) == set(NodeStatus) == set(node_names)
    assert set(EXECUTION_TRANSITIONS) == set(ExecutionStatus) == set(execution_names)
    # The spec's main line is a path through the table; the last four end it.
    path = node_names[:3]
    assert all(b in NODE_TRANSITIONS[NodeStatus(a)] for a, b in itertools.pairwise(path))
    assert set(node_names[3:7]) == set(NODE_TERMINAL)
    # Every status is reachable from a row's first status; an ended row only runs again.
    for table, initial in (
        (NODE_TRANSITIONS, NODE_INITIAL),
        (EXECUTION_TRANSITIONS, EXECUTION_INITIAL),
    ):
        seen, stack = set(initial), list(initial)
        while stack:
            for after in table[stack.pop()]:  # type: ignore[index]
                if after not in seen:
                    seen.add(after)
                    stack.append(after)
        assert seen == set(table)
    for terminal in NODE_TERMINAL:
        assert NODE_TRANSITIONS[terminal] == {NodeStatus.PENDING}
    for ended in EXECUTION_TERMINAL:
        assert EXECUTION_TRANSITIONS[ended] == {ExecutionStatus.RUNNING}


def test_a_guard_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no transition completed → running"):
        node_guard(NodeStatus.RUNNING, NodeStatus.COMPLETED)
    with pytest.raises(ValueError, match="no transition cancelled → paused"):
        execution_guard(ExecutionStatus.PAUSED, ExecutionStatus.CANCELLED)
    assert set(node_guard(NodeStatus.PENDING)) == set(NodeStatus) - {NodeStatus.PENDING}


OPERATIONS = ("pause", "resume", "cancel", "signal", "replay", "replay_from", "retry_dead")


def operate(command: str, execution_id: str, node_ids: list[str], pick: int) -> None:
    """Send one operation; one that the execution's state rules out is refused."""
    try:
        if command == "signal":
            spane.signal(execution_id, "go", pick)
        elif command == "replay":
            spane.replay(execution_id)
        elif command == "replay_from":
            spane.replay(execution_id, node_ids[pick % len(node_ids)])
        elif command == "retry_dead":
            letters = [d for d in spane.dead_letters() if d.execution_id == execution_id]
            if letters:
                spane.retry_dead_letter(letters[pick % len(letters)].id)
        else:
            send(command, execution_id)
    except spane.InvalidTransition:
        pass  # ruled out by the state the execution is in


@settings(PROPERTY, max_examples=25)
@given(
    specs=random_dags(6),
    gate=st.booleans(),
    commands=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.01, 0.03]),
            st.sampled_from(OPERATIONS),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_random_operations_move_statuses_only_as_the_table_allows(
    dup_rt: Runtime, specs: list[Spec], gate: bool, commands: list[tuple[float, str, int]]
) -> None:
    prefix = f"ops-{uuid.uuid4().hex[:12]}"
    definition = workflow(prefix, specs, prefix)
    if gate:  # an entry node parked on a signal, in front of the first node
        definition["nodes"].insert(
            0, {"id": "gate", "type": "wait_for", "config": {"signal": "go"}}
        )
        definition["nodes"][1]["after"] = ["gate"]
    spane.register_workflow(definition)
    execution_id = spane.enqueue_workflow(prefix, None)
    node_ids = [n["id"] for n in definition["nodes"]]
    for pause_s, command, pick in commands:
        time.sleep(pause_s)
        operate(command, execution_id, node_ids, pick)
    operate("cancel", execution_id, node_ids, 0)  # end it, whatever the commands left
    settled_tree(execution_id)
    moves = check_status_moves(dup_rt)
    for entity, old, new in moves:
        event(f"{entity}: {old} -> {new}")
