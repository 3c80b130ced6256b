"""Starting executions: the checks every way of starting shares, creating one (for the
public API and for a sub-workflow node alike), batches, delayed starts, and start
messages from processes that only reach the broker."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from . import codec, registry, validation
from .definitions import TENANT, Callback, Workflow
from .durations import parse_duration
from .errors import InputError, SpaneError, UnknownWorkflow
from .middleware.claim_check import original_kwargs
from .registry import LANES
from .store.starts import NewExecution

if TYPE_CHECKING:
    from .context import Spawn
    from .services import Services
    from .store import Claim, Dispatch

log = structlog.get_logger("spane.starts")


def callback_json(callback: Callback | None) -> str | None:
    """A completion callback as it is stored with its execution (None: no callback)."""
    return None if callback is None else codec.dumps(msgspec.to_builtins(callback))


def check_options(tenant: str, priority: str | None) -> None:
    """Refuse a tenant or priority that is not valid, before anything is read or written."""
    if priority is not None and priority not in LANES:
        raise InputError(f"priority must be one of {', '.join(LANES)}, got {priority!r}")
    if not TENANT.fullmatch(tenant) or tenant in (".", ".."):
        raise InputError(
            f"tenant {tenant!r} is not valid: use 1-64 characters of A-Z a-z 0-9 _ . -"
        )


def start_time(delay: str | float | None, at: datetime | float | None) -> float | None:
    """Epoch seconds of a delayed start (``delay`` from now, or ``at``), or None.

    Raises:
        InputError: If both are given, the delay is not a duration, or ``at`` is a naive
            datetime (its timezone would be a guess).
    """
    if delay is not None and at is not None:
        raise InputError("give either delay or at, not both")
    if delay is not None:
        try:
            return time.time() + parse_duration(delay)
        except ValueError as exc:
            raise InputError(f"delay: {exc}") from None
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InputError("at must be timezone-aware, e.g. datetime(..., tzinfo=timezone.utc)")
        return at.timestamp()
    return at


def node_lanes(workflow: Workflow, lane: str) -> dict[str, str]:
    """The lane of each node: its node type's lane, else the execution's."""
    lanes = {}
    for node in workflow.nodes:
        known = registry.get(node.type)
        lanes[node.id] = known.lane if known is not None and known.lane else lane
    return lanes


def prepare(
    rt: Services,
    workflow_id: str,
    input: Any,
    *,
    version: int | None = None,
    tenant: str = "default",
    lane: str | None = None,
    idempotency_key: str | None = None,
    on_finish: Callback | None = None,
) -> NewExecution:
    """Check an input against its workflow and pack it; nothing is written yet.

    The execution's completion callback is ``on_finish``, else the workflow's own.

    Raises:
        UnknownWorkflow: If the workflow (version) is not registered.
        InputError: If the input is not JSON, too large, or fails ``input_schema``.
    """
    version, workflow = rt.store.workflow_version(workflow_id, version)
    codec.check_json(input)
    validation.validate_input(workflow, input)
    try:
        packed = rt.payloads.pack(
            tenant, input, what="input", fix="pass a smaller input or raise the limit"
        )
    except RecursionError:
        raise InputError("input is nested too deeply to encode; flatten it") from None
    lane = lane or workflow.lane
    return NewExecution(
        workflow_id=workflow_id,
        version=version,
        tenant=tenant,
        lane=lane,
        node_lanes=node_lanes(workflow, lane),
        input=packed,
        idempotency_key=idempotency_key,
        on_finish=callback_json(on_finish or workflow.on_finish),
    )


def create(
    rt: Services,
    workflow_id: str,
    input: Any,
    *,
    version: int | None,
    tenant: str,
    lane: str | None,
    idempotency_key: str | None = None,
    parent: Claim | None = None,
    on_finish: Callback | None = None,
) -> tuple[str, list[Dispatch]]:
    """Check the input and write the execution; return its id and first messages (not
    sent: the caller sends them once it knows the execution is stored)."""
    new = prepare(
        rt, workflow_id, input, version=version, tenant=tenant, lane=lane, on_finish=on_finish
    )
    return rt.store.create_execution(
        workflow_id=workflow_id,
        version=new.version,
        tenant=tenant,
        lane=new.lane,
        node_lanes=new.node_lanes,
        input=new.input,
        idempotency_key=idempotency_key,
        parent=parent,
        on_finish=new.on_finish,
    )


def start_child(rt: Services, parent: Claim, spawn: Spawn) -> tuple[str, list[Dispatch]]:
    """Start a sub-workflow execution for a running ``subworkflow`` attempt, parking it."""
    return create(
        rt,
        spawn.workflow,
        spawn.input,
        version=spawn.version,
        tenant=parent.tenant,
        lane=None,
        parent=parent,
    )


def enqueue_many(
    rt: Services,
    workflow_id: str,
    inputs: Sequence[Any],
    *,
    tenant: str,
    priority: str | None,
    version: int | None,
) -> list[str]:
    """Start one execution per input, all in one transaction; return their ids in order.

    Raises:
        InputError: Listing every refused input by its index; nothing is written.
    """
    check_options(tenant, priority)
    version, _ = rt.store.workflow_version(workflow_id, version)  # one version for all
    batch, problems = [], []
    for index, value in enumerate(inputs):
        try:
            batch.append(
                prepare(rt, workflow_id, value, version=version, tenant=tenant, lane=priority)
            )
        except InputError as exc:
            problems.append(f"inputs[{index}]: {exc}")
    if problems:
        raise InputError(
            f"{len(problems)} of {len(inputs)} inputs refused:\n" + "\n".join(problems)
        )
    dispatches = rt.store.create_executions(batch)
    rt.ensure_worker()
    rt.dispatch(dispatches)
    return [new.execution_id for new in batch]


def start_due(rt: Services) -> int:
    """Start every delayed start whose time has come (run by the sweep); return how many."""
    started = 0
    for start in rt.store.due_delayed_starts(time.time()):
        try:
            _, workflow = rt.store.workflow_version(start.workflow_id, start.version)
            lanes = node_lanes(workflow, start.lane or workflow.lane)
        except SpaneError as exc:
            log.error("delayed start cannot start", start_id=start.id, error=str(exc))
            continue
        dispatches = rt.store.start_delayed(start, lanes)
        if dispatches:
            started += 1
            log.info("delayed start started", execution_id=start.id)
            rt.dispatch(dispatches)
    return started


def start_from_message(
    rt: Services,
    message: Any,
    workflow_id: str,
    input: Any,
    *,
    tenant: str,
    idempotency_key: str | None,
    priority: str | None,
    version: int | None,
) -> str | None:
    """Start an execution asked for by a start message; return its id.

    The message id is the default idempotency key, so a redelivered message finds the
    execution its first delivery created. A message that can never start (unknown
    workflow, invalid input) becomes a dead letter with the reason and returns None;
    other errors propagate, so the broker delivers the message again.
    """
    key = idempotency_key if idempotency_key is not None else message.message_id
    try:
        check_options(tenant, priority)
        existing = rt.store.find_start_by_key(tenant, key)
        if existing is not None:
            log.info("start message repeated; execution exists", execution_id=existing)
            return existing
        new = prepare(
            rt,
            workflow_id,
            input,
            version=version,
            tenant=tenant,
            lane=priority,
            idempotency_key=key,
        )
    except (InputError, UnknownWorkflow) as exc:
        # What the message asks for is wrong: a redelivery cannot fix it.
        raw = codec.dumps({**message.asdict(), "kwargs": original_kwargs(message)})
        rt.store.add_dead_letter(
            kind="message",
            digest=hashlib.sha256(f"start:{message.message_id}".encode()).hexdigest(),
            queue=message.queue_name,
            actor=message.actor_name,
            reason=f"start of workflow {workflow_id!r} refused: {exc}",
            message=raw,
        )
        log.warning("start message refused", workflow_id=workflow_id, error=str(exc))
        return None
    execution_id, dispatches = rt.store.create_execution(
        workflow_id=new.workflow_id,
        version=new.version,
        tenant=new.tenant,
        lane=new.lane,
        node_lanes=new.node_lanes,
        input=new.input,
        idempotency_key=key,
    )
    rt.dispatch(dispatches)
    return execution_id
