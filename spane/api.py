"""The Python API: define node types, register workflows, start and watch executions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

from . import codec, logs, outages, registry, runtime, schedules, starts, validation
from .definitions import Callback, Workflow, definition_hash, to_dict
from .durations import parse_duration
from .errors import (
    ConfigurationError,
    DefinitionError,
    InputError,
    InvalidTransition,
    Problem,
    UnknownExecution,
    WaitTimeout,
)
from .protection import Breaker, RateLimit
from .registry import NodeType, RetryPolicy
from .store import Execution, ExecutionSummary

F = TypeVar("F", bound=Callable[..., Any])
_WORKFLOW_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The width of the column that keeps idempotency keys.
MAX_IDEMPOTENCY_KEY = 200
#: The largest row count or offset a listing takes (a database's 64-bit integer).
MAX_ROWS = 2**63 - 1
log = structlog.get_logger("spane.api")


def node_type(
    name: str,
    *,
    lane: str | None = None,
    config: type[msgspec.Struct] | None = None,
    retry: RetryPolicy | dict[str, Any] | None = None,
    timeout: str | float | None = None,
    breaker: Breaker | None = None,
    rate_limit: RateLimit | None = None,
    max_concurrency: int | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as a node type (a Dramatiq actor on its lane).

    Args:
        name: The name workflows use in ``type:``.
        lane: ``high``, ``default`` or ``low``; unset follows the execution's lane.
        config: A msgspec Struct that node configs are checked against.
        retry: Default retry policy of nodes of this type.
        timeout: Default per-attempt timeout, e.g. ``"30s"``.
        breaker: A circuit breaker, shared by all workers, in front of what it calls.
        rate_limit: At most so many attempts per window, across all workers.
        max_concurrency: At most so many attempts in flight at once, across all workers;
            the others wait in the database, in order.
    """
    if isinstance(retry, dict):
        retry = msgspec.convert(retry, RetryPolicy)
    seconds = parse_duration(timeout) if timeout is not None else None

    def decorate(fn: F) -> F:
        registry.register(
            NodeType(
                name=name,
                fn=fn,
                lane=lane,
                config=config,
                retry=retry,
                timeout=seconds,
                breaker=breaker,
                rate_limit=rate_limit,
                max_concurrency=max_concurrency,
            )
        )
        return fn

    return decorate


def register_workflow(definition: dict[str, Any] | Workflow | str | Path) -> tuple[str, int]:
    """Validate and store a workflow; a changed definition becomes a new version.

    Returns:
        ``(workflow_id, version)``.
    """
    rt = runtime.get()
    workflow = validation.load_definition(definition, workflow_exists=_exists(rt))
    _check_recursion(rt, workflow)
    schedules.check_inputs(workflow)
    _check_webhook_paths(rt, workflow)
    text = codec.dumps(to_dict(workflow))
    version, _ = rt.store.save_workflow(workflow.id, definition_hash(workflow), text)
    schedules.sync_definition(rt, workflow)
    return workflow.id, version


def _targets(workflow: Workflow) -> list[tuple[int, str]]:
    return [
        (i, str(node.config.get("workflow")))
        for i, node in enumerate(workflow.nodes)
        if node.type == "subworkflow" and node.config.get("workflow")
    ]


def _check_recursion(rt: runtime.Runtime, workflow: Workflow) -> None:
    """Refuse a workflow that would call itself through stored sub-workflows."""
    problems = []
    for index, target in _targets(workflow):
        path = [workflow.id, target]
        stack = [(target, path)]
        seen: set[str] = set()
        while stack:
            current, trail = stack.pop()
            if current == workflow.id:
                problems.append(
                    Problem(
                        f"nodes[{index}].config.workflow",
                        "recursive sub-workflow: " + " -> ".join(trail),
                    )
                )
                break
            if current in seen or rt.store.latest_version(current) is None:
                continue
            seen.add(current)
            for _, nxt in _targets(rt.store.load_workflow(current)):
                stack.append((nxt, [*trail, nxt]))
    if problems:
        raise DefinitionError(problems, workflow.id)


def _check_webhook_paths(rt: runtime.Runtime, workflow: Workflow) -> None:
    """Refuse a webhook path that the latest version of another workflow already serves."""
    paths = {
        trigger.webhook.path: index
        for index, trigger in enumerate(workflow.triggers)
        if trigger.webhook is not None
    }
    if not paths:
        return
    problems = []
    for latest in rt.store.browse.workflows():
        if latest.workflow_id == workflow.id:
            continue
        _, other = rt.store.workflow_version(latest.workflow_id, latest.version)
        for trigger in other.triggers:
            if trigger.webhook is not None and trigger.webhook.path in paths:
                problems.append(
                    Problem(
                        f"triggers[{paths[trigger.webhook.path]}].webhook.path",
                        f"path {trigger.webhook.path!r} is already served by workflow "
                        f"{other.id!r}; choose another",
                    )
                )
    if problems:
        raise DefinitionError(problems, workflow.id)


def _exists(rt: runtime.Runtime) -> Callable[[str], bool]:
    return lambda workflow_id: rt.store.latest_version(workflow_id) is not None


def enqueue_workflow(
    workflow_id: str,
    input: Any = None,
    /,
    *,
    tenant: str = "default",
    priority: str | None = None,
    idempotency_key: str | None = None,
    version: int | None = None,
    delay: str | float | None = None,
    at: datetime | float | None = None,
    on_finish: Callback | dict[str, Any] | None = None,
) -> str:
    """Start an execution of a registered workflow; return its id.

    The input is checked (JSON, size, the workflow's ``input_schema``) before anything
    is written. With an ``idempotency_key`` already used by this tenant, the existing
    execution's id is returned and nothing starts. With ``delay`` (``"10m"``, seconds)
    or ``at`` (an aware datetime, or epoch seconds) the start waits in the database
    and the id is the one the execution will have; ``cancel`` drops it before then.
    ``on_finish`` (``{url, secret_env}``) overrides the workflow's completion callback
    for this execution.
    """
    rt = runtime.get()
    starts.check_options(tenant, priority)
    start_at = starts.start_time(delay, at)
    if idempotency_key is not None:
        _check_key(idempotency_key)
        existing = rt.store.find_start_by_key(tenant, idempotency_key)
        if existing is not None:
            return existing
    if isinstance(on_finish, dict):
        try:
            on_finish = msgspec.convert(on_finish, Callback)
        except msgspec.ValidationError as exc:
            raise InputError(f"on_finish is not valid: {exc}") from None
    if start_at is not None:
        new = starts.prepare(
            rt,
            workflow_id,
            input,
            version=version,
            tenant=tenant,
            lane=priority,
            idempotency_key=idempotency_key,
            on_finish=on_finish,
        )
        rt.ensure_worker()
        return rt.store.add_delayed_start(new, start_at)
    execution_id, dispatches = starts.create(
        rt,
        workflow_id,
        input,
        version=version,
        tenant=tenant,
        lane=priority,
        idempotency_key=idempotency_key,
        on_finish=on_finish,
    )
    rt.ensure_worker()
    try:
        rt.dispatch(dispatches)
    except outages.BROKER_DOWN as exc:
        # The execution is stored with its entry nodes queued: returning its id (rather
        # than an error the caller would retry, starting a second execution) is what
        # keeps it single. The sweeper of any worker sends queued nodes whose message
        # never arrived once their lease runs out, so it starts when the broker is back.
        log.error(
            "execution stored but not sent; the workers' sweeper sends it once the broker is back",
            execution_id=execution_id,
            error=outages.broker(rt.settings, exc),
        )
    return execution_id


def _check_key(key: str) -> None:
    """Refuse an idempotency key that one backend would store and another refuse."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InputError(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters "
            f"(no NUL or control characters), got {len(key)} characters"
        )


def run(
    workflow: str | dict[str, Any] | Workflow | Path,
    input: Any = None,
    /,
    *,
    timeout: float | None = None,
    tenant: str = "default",
    priority: str | None = None,
    idempotency_key: str | None = None,
) -> Execution:
    """Enqueue a workflow (registering it first if given as a definition) and wait for it."""
    if (
        isinstance(workflow, str)
        and _WORKFLOW_ID.fullmatch(workflow)
        and not Path(workflow).exists()
    ):
        workflow_id = workflow
    else:
        workflow_id, _ = register_workflow(workflow)
    execution_id = enqueue_workflow(
        workflow_id, input, tenant=tenant, priority=priority, idempotency_key=idempotency_key
    )
    return wait(execution_id, timeout=timeout)


def get_execution(execution_id: str) -> Execution:
    """Return an execution with its nodes, input and output."""
    rt = runtime.get()
    try:
        return rt.store.get_execution(execution_id)
    except UnknownExecution:
        start = rt.store.delayed_start(execution_id)
        if start is None:
            raise
        raise UnknownExecution(
            f"execution {execution_id} is a delayed start ({start.status}, due at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(start.start_at))}); "
            "it has not started"
        ) from None


def wait(execution_id: str, *, timeout: float | None = None) -> Execution:
    """Block until the execution ends and return it.

    Raises:
        WaitTimeout: If ``timeout`` seconds pass first; the execution goes on.
    """
    rt = runtime.get()
    rt.ensure_worker()
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    while _status(rt, execution_id) not in ("completed", "failed", "cancelled"):
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(
                f"execution {execution_id} did not end within {timeout:g}s; it is still running"
            )
        time.sleep(pause)
        pause = min(pause * 1.5, 0.2)
    return rt.store.get_execution(execution_id)


def _status(rt: runtime.Runtime, execution_id: str) -> str:
    """The execution's status, or ``scheduled`` for a delayed start not started yet."""
    try:
        return rt.store.execution_status(execution_id)
    except UnknownExecution:
        start = rt.store.delayed_start(execution_id)
        if start is None:
            raise
        if start.status == "cancelled":
            raise InvalidTransition(
                f"execution {execution_id} was a delayed start, cancelled before it started"
            ) from None
        return "scheduled"


def list_executions(
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    tenant: str | None = None,
    parent_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ExecutionSummary]:
    """Return executions, newest first, filtered by any of the given fields."""
    for name, number in (("limit", limit), ("offset", offset)):
        if not 0 <= number <= MAX_ROWS:
            raise InputError(f"{name} must be between 0 and {MAX_ROWS}, got {number}")
    return runtime.get().store.list_executions(
        status=status,
        workflow_id=workflow_id,
        tenant=tenant,
        parent_id=parent_id,
        limit=limit,
        offset=offset,
    )


def cancel(execution_id: str) -> None:
    """Cancel an execution: nodes not started are cancelled, running ones not retried.

    Its running child executions are cancelled with it; a delayed start that has not
    started is dropped.
    """
    rt = runtime.get()
    delayed = rt.store.cancel_delayed_start(execution_id)
    if delayed == "pending":
        return
    if delayed == "cancelled":
        raise InvalidTransition(f"delayed start {execution_id} is already cancelled")
    rt.store.cancel_execution(execution_id)


def configure(**settings: Any) -> runtime.Runtime:
    """Replace the process runtime with one built from the environment plus ``settings``."""
    from .settings import from_env

    try:
        chosen = from_env().with_(**settings)
    except TypeError as exc:
        raise ConfigurationError(f"unknown setting: {exc}") from None
    logs.configure(chosen.log_format, chosen.log_level)
    new = runtime.Runtime(chosen)
    old = runtime.install(new)
    if old is not None:
        old.close()
    return new
