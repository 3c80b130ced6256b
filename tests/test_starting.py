"""Starting work on the embedded twin: schedules (ticks, catch-up, overlap, DST,
definitions), delayed and batch starts, the start actor, and signals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import spane
from spane import cron, schedules, starts
from spane import runtime as runtime_module
from spane.definitions import Schedule
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.history import events, node_status, wait_for

APPROVAL: dict[str, Any] = {
    "id": "approval",
    "nodes": [
        {"id": "ask", "type": "wait_for", "config": {"signal": "approve"}},
        {"id": "done", "type": "transform", "after": ["ask"], "config": {"expression": "@"}},
    ],
}
ORDER: dict[str, Any] = {
    "id": "order",
    "input_schema": {"type": "object", "required": ["order_id"]},
    "nodes": [{"id": "echo", "type": "echo"}],
}


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[Runtime]:
    """An embedded runtime whose worker is never started: the test fires ticks itself."""
    import tests.nodes  # noqa: F401

    runtime = Runtime(embedded_settings(tmp_path, schedule_grace=1.0))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


def _every(seconds: float, **options: Any) -> Schedule:
    return Schedule(every=seconds, **options)


# -- definitions ---------------------------------------------------------------------


def test_invalid_schedules_are_refused_with_their_path(rt: Runtime) -> None:
    definition = {
        **APPROVAL,
        "triggers": [
            {"schedule": {"cron": "61 * * * *"}},
            {"schedule": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}},
            {"schedule": {"every": "1s", "overlap": "sometimes"}},
        ],
    }
    with pytest.raises(spane.DefinitionError) as caught:
        spane.register_workflow(definition)
    found = {p.path: p.message for p in caught.value.problems}
    assert "61" in found["triggers[0].schedule"]
    assert "Mars/Olympus" in found["triggers[1].schedule"]
    assert "sometimes" in found["triggers[2].schedule"]


def test_a_new_version_takes_over_its_schedules(rt: Runtime) -> None:
    trigger = {"schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}}
    spane.register_workflow({**APPROVAL, "triggers": [trigger]})
    first = spane.list_schedules("approval")
    assert [s.id for s in first] == ["approval:0"]
    assert (
        datetime.fromtimestamp(first[0].next_at or 0, cron.check_timezone("Europe/Paris")).hour == 9
    )
    spane.pause_schedule("approval:0")
    # Same timing in a new version: the schedule keeps its next tick and its pause.
    spane.register_workflow({**APPROVAL, "description": "v2", "triggers": [trigger]})
    assert spane.list_schedules("approval")[0].paused
    spane.register_workflow({**APPROVAL, "description": "v3"})
    assert spane.list_schedules("approval") == []


def test_daylight_saving_follows_cron_rules() -> None:
    paris = cron.check_timezone("Europe/Paris")
    start = int(datetime(2026, 3, 28, 12, tzinfo=paris).timestamp() * 1000)
    ticks = cron.ticks_after(start, cron="30 2 * * *", every=None, timezone="Europe/Paris")
    skipped_hour = datetime.fromtimestamp(next(ticks) / 1000, paris)
    assert (skipped_hour.day, skipped_hour.hour, skipped_hour.minute) == (29, 3, 0)
    start = int(datetime(2026, 10, 24, 12, tzinfo=paris).timestamp() * 1000)
    ticks = cron.ticks_after(start, cron="30 2 * * *", every=None, timezone="Europe/Paris")
    repeated, following = (next(ticks), next(ticks))
    assert following - repeated == 25 * 3600 * 1000  # once on the long day


# -- firing ----------------------------------------------------------------------------


def test_every_tick_fires_once_in_order(rt: Runtime) -> None:
    spane.register_workflow(APPROVAL)
    schedule_id = spane.schedule("approval", every="1s", overlap="allow", schedule_id="tick")
    wait_for(lambda: len(rt.store.schedule_ticks(schedule_id)) >= 3, "three ticks")
    spane.unschedule(schedule_id)
    ticks = rt.store.schedule_ticks(schedule_id)
    times = [t for t, _, _ in ticks]
    assert all(b - a == 1000 for a, b in itertools.pairwise(times))
    started = {e for _, outcome, e in ticks if outcome == "started"}
    assert len(started) == len(ticks)
    assert {e.id for e in spane.list_executions(workflow_id="approval")} == started


@pytest.mark.parametrize("timing", [{"every": 3600}, {"cron": "0 * * * *"}], ids=["every", "cron"])
@pytest.mark.parametrize(("catch_up", "fired"), [("none", 0), ("latest", 1), ("all", 6)])
def test_catch_up_after_an_outage(
    idle: Runtime, timing: dict[str, Any], catch_up: str, fired: int
) -> None:
    spane.register_workflow(APPROVAL)
    hour = 3600
    if time.time() % hour < 5:
        time.sleep(5)  # keep the latest hourly tick out of the grace period
    last = time.time() // hour * hour
    spec = Schedule(catch_up=catch_up, **timing)
    schedules.save(idle, "hourly", "approval", spec, origin="api")
    row = idle.store.get_schedule("hourly")
    assert row is not None and row.next_at == last + hour
    idle.store.advance_schedule("hourly", last + hour, last - 5 * hour)  # workers were down
    schedules.fire_due(idle)
    ticks = idle.store.schedule_ticks("hourly")
    expected = [int((last - k * hour) * 1000) for k in range(fired)][::-1]
    assert [t for t, _, _ in ticks] == expected
    row = idle.store.get_schedule("hourly")
    assert row is not None and row.next_at == last + hour


def test_overlap_policies(idle: Runtime) -> None:
    spane.register_workflow(APPROVAL)
    started = {}
    for policy in ("skip", "allow", "cancel_previous"):
        schedules.save(idle, policy, "approval", _every(3600, overlap=policy), origin="api")
        first = schedules.trigger_now(idle, policy)
        time.sleep(0.01)
        started[policy] = (first, schedules.trigger_now(idle, policy))
    first, second = started["skip"]
    assert first is not None and second is None  # the first is still waiting on its signal
    first, second = started["allow"]
    assert [spane.get_execution(e or "").status for e in (first, second)] == ["running"] * 2
    first, second = started["cancel_previous"]
    assert spane.get_execution(first or "").status == "cancelled"
    assert spane.get_execution(second or "").status == "running"
    assert [t[1] for t in idle.store.schedule_ticks("skip")] == ["started", "skipped"]


def test_a_scheduled_input_that_became_invalid_is_refused(idle: Runtime) -> None:
    spane.register_workflow(ORDER)
    schedules.save(idle, "orders", "order", _every(3600, input={"order_id": 1}), origin="api")
    spane.register_workflow({**ORDER, "input_schema": {"type": "object", "required": ["sku"]}})
    with pytest.raises(spane.InputError, match="sku"):
        schedules.trigger_now(idle, "orders")
    row = idle.store.get_schedule("orders")
    assert row is not None and row.next_at is not None
    idle.store.advance_schedule("orders", row.next_at, row.next_at - 3600)
    schedules.fire_due(idle)
    assert [(outcome, e) for _, outcome, e in idle.store.schedule_ticks("orders")] == [
        ("refused", None)
    ]
    with pytest.raises(spane.InputError, match="sku"):
        spane.schedule("order", {"order_id": 1}, every="1h")


def test_unknown_schedules_are_named(rt: Runtime) -> None:
    with pytest.raises(spane.UnknownSchedule, match="nope"):
        spane.pause_schedule("nope")
    with pytest.raises(spane.InputError, match="exactly one of"):
        spane.schedule("approval", every="1s", cron="* * * * *")


# -- delayed and batch starts ----------------------------------------------------------


def test_delayed_start_waits_then_runs(rt: Runtime) -> None:
    spane.register_workflow(ORDER)
    at = datetime.now(UTC) + timedelta(seconds=0.5)
    execution_id = spane.enqueue_workflow("order", {"order_id": 1}, at=at)
    with pytest.raises(spane.UnknownExecution):
        spane.get_execution(execution_id)
    done = spane.wait(execution_id, timeout=10)
    assert done.output == {"order_id": 1}
    assert done.started_at is not None and done.started_at >= at.timestamp()


def test_delayed_start_can_be_cancelled_and_is_idempotent(rt: Runtime) -> None:
    spane.register_workflow(ORDER)
    first = spane.enqueue_workflow("order", {"order_id": 1}, delay="1h", idempotency_key="k")
    again = spane.enqueue_workflow("order", {"order_id": 1}, idempotency_key="k")
    assert again == first
    spane.cancel(first)
    with pytest.raises(spane.InvalidTransition, match="cancelled before it started"):
        spane.wait(first, timeout=1)
    with pytest.raises(spane.InputError, match="order_id"):
        spane.enqueue_workflow("order", {}, delay="1h")
    with pytest.raises(spane.InputError, match="timezone-aware"):
        spane.enqueue_workflow("order", {"order_id": 1}, at=datetime(2030, 1, 1))


def test_enqueue_many_is_all_or_nothing(rt: Runtime) -> None:
    spane.register_workflow(ORDER)
    with pytest.raises(spane.InputError) as caught:
        spane.enqueue_many("order", [{"order_id": 1}, {}, {"order_id": 3}, {"x": 1}])
    assert "inputs[1]" in str(caught.value) and "inputs[3]" in str(caught.value)
    assert spane.list_executions(workflow_id="order") == []
    ids = spane.enqueue_many("order", [{"order_id": i} for i in range(20)], tenant="acme")
    assert [spane.wait(i, timeout=20).output["order_id"] for i in ids] == list(range(20))


# -- the start actor -------------------------------------------------------------------


def test_start_actor_starts_once_per_message(rt: Runtime) -> None:
    spane.register_workflow(ORDER)
    message = spane.actors.start_workflow.message("order", {"order_id": 7}, tenant="acme")
    spane.actors.start_workflow.enqueue(message)
    spane.actors.start_workflow.enqueue(message)  # delivered twice
    execution_id = wait_for(
        lambda: rt.store.find_start_by_key("acme", message.message_id), "the execution"
    )
    assert spane.wait(execution_id, timeout=10).output == {"order_id": 7}
    sent = spane.send_start("order", {"order_id": 8}, idempotency_key="eight")
    assert sent.kwargs["idempotency_key"] == "eight"
    wait_for(lambda: len(spane.list_executions(workflow_id="order")) == 2, "second execution")
    time.sleep(0.3)  # give a duplicate every chance to show up
    assert len(spane.list_executions(workflow_id="order")) == 2


def test_start_actor_dead_letters_invalid_input(rt: Runtime) -> None:
    spane.register_workflow(ORDER)
    spane.send_start("order", {"sku": 1})
    letter = wait_for(lambda: spane.dead_letters(), "a dead letter")[0]
    assert letter.actor == "spane.start_workflow"
    assert "input.order_id" in letter.reason and "required" in letter.reason
    assert spane.list_executions(workflow_id="order") == []


# -- signals ---------------------------------------------------------------------------


def test_signals_before_and_after_the_node_is_reached(rt: Runtime) -> None:
    spane.register_workflow(APPROVAL)
    late = spane.enqueue_workflow("approval", {"doc": 1})
    wait_for(lambda: node_status(late, "ask") == "waiting", "the node to park")
    assert spane.signal(late, "approve", {"by": "ana"}, signal_id="s-1")
    assert not spane.signal(late, "approve", {"by": "bob"}, signal_id="s-1")  # a repeat
    assert spane.wait(late, timeout=10).output == {"by": "ana"}
    assert not spane.signal(late, "approve", {"by": "bob"}, signal_id="s-1")
    with pytest.raises(spane.InvalidTransition, match="completed"):
        spane.signal(late, "approve", {"by": "bob"})
    spane.pause(early := spane.enqueue_workflow("approval", {"doc": 2}))
    spane.signal(early, "approve", [])  # kept until the node is reached
    spane.resume(early)
    assert spane.wait(early, timeout=10).output == []
    with pytest.raises(spane.UnknownExecution):
        spane.signal("nope", "approve")
    stray = spane.enqueue_workflow("approval", None)
    spane.signal(stray, "other", 1)  # never taken: pending until its execution ends
    spane.cancel(stray)
    # Delivered or undeliverable signals stop being read by the sweep.
    wait_for(lambda: _pending_signals(rt) == 0, "no pending signal")


def _pending_signals(rt: Runtime) -> int:
    from sqlalchemy import func, select

    from spane.store.schema import signals

    with rt.engine.connect() as conn:
        query = select(func.count()).select_from(signals).where(signals.c.pending.is_(True))
        return int(conn.execute(query).scalar_one())


def test_a_signal_to_a_paused_execution_is_delivered_on_resume(rt: Runtime) -> None:
    spane.register_workflow(APPROVAL)
    execution_id = spane.enqueue_workflow("approval", None)
    wait_for(lambda: node_status(execution_id, "ask") == "waiting", "the node to park")
    spane.pause(execution_id)
    spane.signal(execution_id, "approve", "yes")
    time.sleep(0.2)
    assert node_status(execution_id, "ask") == "waiting"
    spane.resume(execution_id)
    assert spane.wait(execution_id, timeout=10).output == "yes"


@pytest.mark.parametrize(("on_timeout", "status"), [("fail", "failed"), ("continue", "completed")])
def test_wait_for_timeout(rt: Runtime, on_timeout: str, status: str) -> None:
    config = {"signal": "approve", "timeout": "200ms", "on_timeout": on_timeout, "default": "no"}
    spane.register_workflow(
        {"id": "timed", "nodes": [{"id": "ask", "type": "wait_for", "config": config}]}
    )
    done = spane.wait(spane.enqueue_workflow("timed", None), timeout=10)
    assert done.status == status
    if status == "completed":
        assert done.output == "no"
    else:
        assert "no signal 'approve'" in (done.nodes["ask"].error or "")
    assert events(done.id, "ask", "waiting")


def test_the_approval_example(rt: Runtime) -> None:
    from examples.approval import main

    assert main() == {"report": "finance-expenses", "approved": True, "by": "ana"}
    (schedule,) = spane.list_schedules("expense-approval")
    assert (schedule.cron, schedule.timezone, schedule.input) == (
        "0 9 * * 1-5",
        "Europe/Paris",
        {"team": "finance"},
    )


def test_retention_keeps_pending_values_and_forgets_history(rt: Runtime) -> None:
    from sqlalchemy import func, select

    from spane.store.schema import delayed_starts, signals

    spane.register_workflow(APPROVAL)
    spane.register_workflow(ORDER)
    waiting = spane.enqueue_workflow("approval", None)
    spane.pause(waiting)
    big = "x" * 80_000  # over the claim-check threshold: the signal rests as a blob
    spane.signal(waiting, "approve", big)
    delayed = spane.enqueue_workflow("order", {"order_id": 1}, delay="100ms")
    spane.wait(delayed, timeout=10)
    spane.collect_garbage(older_than=0, grace=0)
    spane.resume(waiting)
    assert spane.wait(waiting, timeout=10).output == big  # its blob was kept
    spane.collect_garbage(older_than=0, grace=0)
    with rt.engine.connect() as conn:
        for table in (signals, delayed_starts):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 0


# -- command line ----------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from spane.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_schedules_signals_and_delayed_starts(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    spane.register_workflow({**APPROVAL, "triggers": [{"schedule": {"cron": "0 9 * * *"}}]})
    code, out, _ = _cli(capsys, "schedules")
    assert code == 0 and "approval:0" in out and "0 9 * * * (UTC)" in out
    assert _cli(capsys, "schedules", "pause", "approval:0")[0] == 0
    code, out, _ = _cli(capsys, "schedules", "list", "--json")
    assert json.loads(out)[0]["paused"] is True
    code, out, _ = _cli(capsys, "schedules", "trigger-now", "approval:0")
    execution_id = out.strip()
    assert code == 0 and spane.get_execution(execution_id).status == "running"
    wait_for(lambda: node_status(execution_id, "ask") == "waiting", "the node to park")
    code, out, _ = _cli(capsys, "signal", execution_id, "approve", "--payload", '{"ok": 1}')
    assert code == 0 and spane.wait(execution_id, timeout=10).output == {"ok": 1}
    code, _, err = _cli(capsys, "schedules", "pause", "nope")
    assert code == 2 and "no schedule has id 'nope'" in err
    code, out, _ = _cli(capsys, "start", "approval", "--in", "1h")
    delayed = out.strip()
    code, _, err = _cli(capsys, "status", delayed)
    assert code == 2 and "delayed start (pending" in err
    assert _cli(capsys, "cancel", delayed)[0] == 0
    code, _, err = _cli(capsys, "start", "approval", "--at", "2030-01-01T09:00:00")
    assert code == 2 and "offset" in err


def test_clock_process_fires_delayed_starts(idle: Runtime, tmp_path: Path) -> None:
    spane.register_workflow(ORDER)
    new = starts.prepare(idle, "order", {"order_id": 1})
    start_id = idle.store.add_delayed_start(new, time.time())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(
        SPANE_DATABASE_URL=idle.settings.database_url,
        SPANE_BLOB_URL=idle.settings.blob_url,
        SPANE_SWEEP_INTERVAL="0.1",
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
    )
    with subprocess.Popen(
        [sys.executable, "-m", "spane.cli", "clock"], cwd=tmp_path, env=env
    ) as clock:
        try:
            wait_for(lambda: _started(idle, start_id), "the clock to start it", 60)
        finally:
            clock.send_signal(signal.SIGTERM)
            assert clock.wait(timeout=30) == 0


def _started(rt: Runtime, execution_id: str) -> bool:
    try:
        return rt.store.execution_status(execution_id) == "running"
    except spane.UnknownExecution:
        return False
