"""The one object behind which all SQL lives: a thin front over the store's parts.

Each part is a small class over the engine, built here with the parts it needs (lower
parts first); ``Store`` exposes their operations under one name each. The parts:

    definitions   stored workflow versions and their graphs
    event_log     events and dead letters (History)
    execution_row the execution row's lock (the only one), fixed fields and end
    advance       children counted down, queued or skipped; the execution completed
    claims        claim a queued attempt, resolve its input  } the hot path
    transitions   complete or fail an attempt                }
    requeue       retry, deferral, hand-back: an attempt back in the queue
    parking       timers, sub-workflow parents, signal waits: one way to park
    recovery      leases, lost attempts, the sweeper's lease
    revival       an ended execution run again
    starts        new executions;  delayed: starts kept until their time
    executions    reading, cancelling, pausing executions; retention
    schedules, signals, protection, operations, browse, tokens, callbacks
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine

from ..limits import Rules
from ..payloads import Payloads
from .advance import Advance
from .browse import Browse
from .callbacks import Callbacks
from .claims import Claims
from .definitions import Definitions
from .delayed import DelayedStarts
from .execution_row import ExecutionRow
from .executions import Executions
from .fair import Fair
from .history import History
from .lanes import LaneLoad, lane_load
from .limits import Limits
from .operations import Operations
from .parking import Parking
from .protection import Protection
from .recovery import Recovery
from .requeue import Requeue
from .revival import Revival
from .schedules import Schedules
from .signals import Signals
from .starts import Starts
from .tokens import Tokens
from .transitions import Transitions


def _untraced(**_: Any) -> AbstractContextManager[str | None]:
    return contextlib.nullcontext()


class Store:
    """All persistence of workflows, executions and nodes.

    Args:
        engine: A SQLAlchemy engine (SQLite or PostgreSQL) migrated to the latest schema.
        payloads: Packs and unpacks stored values.
        lease_seconds: How long a running attempt may go without a heartbeat, and a queued
            node without being taken, before recovery looks at it.
        trace_execution: Opens an execution's root span around its creation and yields
            its W3C traceparent, stored with the execution (see ``Tracing.execution``).
        rules: Concurrency limits from the settings (``spane.limits``).
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        *,
        lease_seconds: float = 15.0,
        trace_execution: Callable[..., AbstractContextManager[str | None]] | None = None,
        rules: Rules | None = None,
    ):
        self.engine = engine
        self.payloads = payloads
        lease = lease_seconds
        self.definitions = definitions = Definitions(engine)
        self.event_log = history = History(engine)
        self.execution_row = row = ExecutionRow(payloads, history)
        self.advance = advance = Advance(history, row, lease)
        self.admission = admission = Limits(
            engine, payloads, definitions, row, lease, rules or Rules()
        )
        self.fair = Fair(engine, lease)
        self.claims = claims = Claims(engine, payloads, definitions, history, row, lease)
        self.transitions = transitions = Transitions(
            engine, payloads, definitions, history, row, advance, admission
        )
        self.parking = parking = Parking(engine, payloads, history, row)
        self.requeue = requeue = Requeue(engine, history, row, lease)
        self.recovery = recovery = Recovery(engine, history, lease)
        self.revival = Revival(engine, definitions, history, row, advance)
        self.starts = starts = Starts(
            engine, definitions, history, parking, trace_execution or _untraced, lease
        )
        self.delayed = delayed = DelayedStarts(engine, starts)
        self.executions = executions = Executions(
            engine, payloads, definitions, history, row, recovery
        )
        self.schedules = schedules = Schedules(engine, row, starts)
        self.signals = signals = Signals(engine, payloads, row, parking)
        self.protection = protection = Protection(engine)
        self.operations = operations = Operations(engine)
        self.browse = Browse(engine)
        self.tokens = Tokens(engine)
        self.callbacks = Callbacks(engine)

        # -- workflows
        self.save_workflow = definitions.save_workflow
        self.load_workflow = definitions.load_workflow
        self.latest_version = definitions.latest_version
        self.workflow_version = definitions.workflow_version
        self.graph = definitions.graph
        # -- history and dead letters
        self.history = history.history
        self.add_dead_letter = history.add_dead_letter
        self.dead_letters = history.dead_letters
        self.dead_letter = history.dead_letter
        self.mark_dead_letter_retried = history.mark_dead_letter_retried
        # -- node transitions
        self.claim_node = claims.claim_node
        self.early_message = claims.early_message
        self.node_input = claims.node_input
        self.record_stale_result = transitions.record_stale_result
        self.complete_node = transitions.complete_node
        self.fire_timer = transitions.fire_timer
        self.fail_node = transitions.fail_node
        self.retry_node = requeue.retry_node
        self.defer_node = requeue.defer_node
        self.hand_back = requeue.hand_back
        # -- parking
        self.park_node = parking.park_node
        self.due_timers = parking.due_timers
        self.waiting_claim = parking.waiting_claim
        self.unwoken_parents = parking.unwoken_parents
        # -- leases and recovery
        self.take_lease = recovery.take_lease
        self.release_lease = recovery.release_lease
        self.renew_leases = recovery.renew_leases
        self.recover_lost = recovery.recover_lost
        self.overdue_queued = recovery.overdue_queued
        self.extend_queued = recovery.extend_queued
        self.queued_everywhere = recovery.queued_everywhere
        self.queued_nodes = recovery.queued_nodes
        self.revive = self.revival.revive
        # -- starting executions
        self.create_execution = starts.create_execution
        self.create_executions = starts.create_executions
        self.find_by_idempotency_key = starts.find_by_idempotency_key
        self.add_delayed_start = delayed.add_delayed_start
        self.find_start_by_key = delayed.find_start_by_key
        self.delayed_start = delayed.delayed_start
        self.due_delayed_starts = delayed.due_delayed_starts
        self.start_delayed = delayed.start_delayed
        self.cancel_delayed_start = delayed.cancel_delayed_start
        # -- executions
        self.get_execution = executions.get_execution
        self.stored_output = executions.stored_output
        self.execution_status = executions.execution_status
        self.summary = executions.summary
        self.list_executions = executions.list_executions
        self.node_statuses = executions.node_statuses
        self.cancel_execution = executions.cancel_execution
        self.set_paused = executions.set_paused
        self.delete_finished_before = executions.delete_finished_before
        self.referenced_blobs = executions.referenced_blobs
        # -- schedules
        self.save_schedule = schedules.save_schedule
        self.drop_schedules = schedules.drop_schedules
        self.delete_schedule = schedules.delete_schedule
        self.set_schedule_paused = schedules.set_schedule_paused
        self.get_schedule = schedules.get_schedule
        self.list_schedules = schedules.list_schedules
        self.due_schedules = schedules.due_schedules
        self.advance_schedule = schedules.advance_schedule
        self.fire_tick = schedules.fire_tick
        self.schedule_ticks = schedules.schedule_ticks
        self.delete_start_history_before = schedules.delete_start_history_before
        # -- signals
        self.park_for_signal = signals.park_for_signal
        self.add_signal = signals.add_signal
        self.pending_deliveries = signals.pending_deliveries
        self.expired_signal_waits = signals.expired_signal_waits
        # -- breakers and rate limits
        self.declare_breaker = protection.declare_breaker
        self.breaker = protection.breaker
        self.breakers = protection.breakers
        self.set_breaker = protection.set_breaker
        self.count_breaker = protection.count_breaker
        self.take_breaker_trial = protection.take_breaker_trial
        self.end_breaker_trial = protection.end_breaker_trial
        self.count_rate_hit = protection.count_rate_hit
        # -- operators
        self.register_worker = operations.register_worker
        self.heartbeat_worker = operations.heartbeat_worker
        self.unregister_worker = operations.unregister_worker
        self.live_workers = operations.live_workers
        self.work_state = operations.work_state

    def lane_load(self, tenant: str | None = None) -> list[LaneLoad]:
        """Per lane and tenant: nodes ready, in flight, and the oldest wait, now."""
        return lane_load(self.engine, time.time(), tenant)
