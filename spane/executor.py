"""One node attempt: claim it, run its code, record what happened."""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any

import jmespath
import msgspec
import structlog

from . import codec, registry
from .context import NodeContext, Park, Route, Spawn
from .durations import parse_duration
from .errors import InputError, NodeFailed, SpaneError
from .inflight import HandedBack, NodeTimeout, inflight
from .middleware.attempts import (
    Attempt,
    AttemptOutcome,
    AttemptResult,
    attempt_middleware,
    emit_after,
    emit_before,
)
from .registry import RetryPolicy

if TYPE_CHECKING:
    from .definitions import Node
    from .runtime import Runtime
    from .store import Claim, Dispatch, Execution

log = structlog.get_logger("spane.node")
_DEFAULT_RETRY = RetryPolicy()


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait before the attempt after ``attempt`` (1-based)."""
    base = parse_duration(policy.delay)
    cap = parse_duration(policy.max_delay)
    if policy.backoff == "fixed":
        return min(base, cap)
    if policy.backoff == "linear":
        return min(base * attempt, cap)
    return min(base * 2.0 ** (attempt - 1), cap)


#: Successors run in the same thread, without a broker round trip, at most this many
#: times in a row before the next one goes through the broker like any other message.
MAX_INLINE_HOPS = 16


class Continuation(threading.local):
    """The one ready successor this thread will run next instead of sending it.

    Only a successor on the same lane, due now, of a type this worker knows is kept, so
    lane priority and fairness are unchanged; if the thread dies first, the node is still
    ``queued`` in the database and recovery sends it after its lease.
    """

    lane: str | None = None
    next: Dispatch | None = None
    hops: int = 0
    #: ``(execution_id, {node_id: stored output})`` of the node this thread just completed.
    known: tuple[str, dict[str, str]] | None = None

    def take(self, dispatch: Dispatch) -> bool:
        """Keep ``dispatch`` to run inline; False if it must be sent."""
        if (
            self.lane is None
            or self.next is not None
            or self.hops >= MAX_INLINE_HOPS
            or dispatch.delay > 0
            or dispatch.lane != self.lane
            or registry.get(dispatch.type) is None
        ):
            return False
        self.next = dispatch
        return True


continuation = Continuation()


def log_fields(claim: Claim) -> dict[str, Any]:
    """The identifiers every log line of node work carries."""
    return {
        "execution_id": claim.execution_id,
        "workflow_id": claim.workflow_id,
        "node_id": claim.node_id,
        "tenant": claim.tenant,
        "attempt": claim.tries,
    }


def run_node(runtime: Runtime, execution_id: str, node_id: str, attempt: int) -> None:
    """Run one attempt of a node, then any successor kept to run inline."""
    step: tuple[str, str, int] | None = (execution_id, node_id, attempt)
    known: dict[str, str] | None = None
    inline = False
    try:
        while step is not None:
            continuation.next, continuation.known = None, None
            _run_one(runtime, *step, known, inline=inline)
            inline = True
            kept, continuation.next = continuation.next, None
            step = known = None
            if kept is not None:
                continuation.hops += 1
                step = (kept.execution_id, kept.node_id, kept.attempt)
                if continuation.known is not None and continuation.known[0] == kept.execution_id:
                    known = continuation.known[1]
    finally:
        leftover, continuation.next = continuation.next, None
        continuation.lane, continuation.hops, continuation.known = None, 0, None
        if leftover is not None:
            runtime.dispatch([leftover])


def _run_one(
    runtime: Runtime,
    execution_id: str,
    node_id: str,
    attempt: int,
    known: dict[str, str] | None = None,
    *,
    inline: bool = False,
) -> None:
    """Run one attempt of a node between the attempt hooks; stale messages are dropped."""
    claim = runtime.store.claim_node(execution_id, node_id, attempt, known)
    if claim is None:
        log.debug(
            "stale or duplicate node message dropped",
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
        )
        return
    continuation.lane = claim.lane
    graph = runtime.store.graph(claim.workflow_id, claim.version)
    node = graph.nodes[node_id]
    hooks = attempt_middleware(runtime.broker)
    current = Attempt(
        execution_id=claim.execution_id,
        workflow_id=claim.workflow_id,
        version=claim.version,
        node_id=claim.node_id,
        node_type=node.type,
        lane=claim.lane,
        tenant=claim.tenant,
        attempt=claim.tries,
        config=node.config,
        inline=inline,
        ready_at=claim.ready_at,
        first=claim.attempt == 1 and node_id == graph.order[0],
    )
    with structlog.contextvars.bound_contextvars(**log_fields(claim)):
        emit_before(runtime.broker, hooks, current)
        result = AttemptResult(AttemptOutcome.FAILED, "the attempt did not finish")
        try:
            result = _attempt(runtime, claim, node)
        except BaseException as exc:
            result = AttemptResult(AttemptOutcome.FAILED, str(exc), exc)
            raise
        finally:
            emit_after(runtime.broker, hooks, current, result)


def _attempt(runtime: Runtime, claim: Claim, node: Node) -> AttemptResult:
    node_type = registry.get(node.type)
    store = runtime.store
    if node_type is None:
        error = f"node type {node.type!r} is not registered in this worker; load its module"
        log.error("unknown node type", type=node.type)
        runtime.apply(store.fail_node(claim, error, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, error)
    policy = node.retry or node_type.retry or _DEFAULT_RETRY
    timeout = node.timeout if node.timeout is not None else node_type.timeout
    seconds = parse_duration(timeout) if timeout is not None else None
    try:
        value = store.node_input(claim)
    except SpaneError as exc:
        log.error("node input could not be read", error=str(exc))
        runtime.apply(store.fail_node(claim, str(exc), continue_on_fail=node.continue_on_fail))
        return AttemptResult(AttemptOutcome.FAILED, str(exc), exc)
    try:
        config = msgspec.convert(node.config, node_type.config) if node_type.config else node.config
        ctx = NodeContext(
            input=value,
            config=config,
            execution_id=claim.execution_id,
            workflow_id=claim.workflow_id,
            node_id=claim.node_id,
            attempt=claim.tries,
            tenant=claim.tenant,
            log=log.bind(**log_fields(claim)),
        )
        log.debug("node attempt started")
        result = _call(node_type.fn, ctx, claim, seconds)
    except HandedBack as exc:
        log.info("attempt handed back to the queue while draining")
        return AttemptResult(AttemptOutcome.HANDED_BACK, None, exc)
    except NodeFailed as exc:
        return _failed(runtime, claim, node, policy, str(exc), retryable=exc.retryable, exc=exc)
    except NodeTimeout as exc:
        error = f"attempt timed out after {seconds:g}s"
        result = _failed(runtime, claim, node, policy, error, retryable=True, exc=exc)
        if result.outcome is AttemptOutcome.FAILED:
            return result
        return AttemptResult(AttemptOutcome.TIMED_OUT, error, exc, result.retry_in)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.warning("node attempt raised", error=detail)
        return _failed(runtime, claim, node, policy, detail, retryable=True, exc=exc)
    return _succeeded(runtime, claim, node, result)


def _call(fn: Any, ctx: NodeContext, claim: Claim, seconds: float | None) -> Any:
    entry = inflight.enter(claim, seconds)
    try:
        result = fn(ctx)
    except (NodeTimeout, HandedBack):
        entry.delivered = True
        raise
    finally:
        fired = inflight.exit(entry)
    if fired is not None:
        raise fired
    return result


def _succeeded(runtime: Runtime, claim: Claim, node: Node, result: Any) -> AttemptResult:
    store = runtime.store
    graph = store.graph(claim.workflow_id, claim.version)
    route: list[str] | None = None
    if isinstance(result, Route):
        successors = graph.children[claim.node_id]
        unknown = [n for n in result.next if n not in successors]
        if unknown:
            message = (
                f"Route names {unknown} which are not direct successors of {claim.node_id!r} "
                f"(successors: {list(successors)})"
            )
            runtime.apply(store.fail_node(claim, message, continue_on_fail=node.continue_on_fail))
            return AttemptResult(AttemptOutcome.FAILED, message)
        route, result = list(result.next), result.output
    if isinstance(result, Spawn):
        return _spawn(runtime, claim, result)
    if isinstance(result, Park):
        try:
            codec.check_json(result.output, f"output of node {claim.node_id}")
            parked = store.park_node(claim, result.until, result.output)
        except (InputError, TypeError, SpaneError) as exc:
            runtime.apply(store.fail_node(claim, str(exc), continue_on_fail=node.continue_on_fail))
            return AttemptResult(AttemptOutcome.FAILED, str(exc), exc)
        if parked:
            runtime.send_timer(claim.execution_id, claim.node_id, claim.attempt, result.until)
        return AttemptResult(AttemptOutcome.PARKED)
    try:
        codec.check_json(result, f"output of node {claim.node_id}")
        outcome = store.complete_node(claim, result, route=route)
        if outcome.output is not None:
            continuation.known = (claim.execution_id, {claim.node_id: outcome.output})
    except (InputError, SpaneError) as exc:
        runtime.apply(store.fail_node(claim, str(exc), continue_on_fail=node.continue_on_fail))
        return AttemptResult(AttemptOutcome.FAILED, str(exc), exc)
    log.debug("node completed", applied=outcome.applied)
    runtime.apply(outcome)
    return AttemptResult(AttemptOutcome.COMPLETED if outcome.applied else AttemptOutcome.STALE)


def _failed(
    runtime: Runtime,
    claim: Claim,
    node: Node,
    policy: RetryPolicy,
    error: str,
    *,
    retryable: bool,
    exc: BaseException | None = None,
) -> AttemptResult:
    store = runtime.store
    if retryable and claim.tries < policy.max_attempts:
        delay = backoff(policy, claim.tries)
        log.info("node attempt failed; retrying", error=error, retry_in=delay)
        outcome = store.retry_node(claim, error, delay)
        runtime.apply(outcome)
        if not outcome.applied:
            return AttemptResult(AttemptOutcome.STALE, error, exc)
        return AttemptResult(AttemptOutcome.RETRIED, error, exc, delay)
    log.warning("node failed", error=error, continue_on_fail=node.continue_on_fail)
    outcome = store.fail_node(claim, error, continue_on_fail=node.continue_on_fail)
    runtime.apply(outcome)
    if not outcome.applied:
        return AttemptResult(AttemptOutcome.STALE, error, exc)
    return AttemptResult(AttemptOutcome.FAILED, error, exc)


def _spawn(runtime: Runtime, claim: Claim, spawn: Spawn) -> AttemptResult:
    """Start the child execution and park this node on it, in one transaction."""
    store = runtime.store
    if claim.depth + 1 > runtime.settings.max_depth:
        error = (
            f"sub-workflow {spawn.workflow!r} would nest {claim.depth + 1} levels deep, "
            f"over SPANE_MAX_DEPTH={runtime.settings.max_depth}"
        )
        runtime.apply(store.fail_node(claim, error, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, error)
    from . import api

    try:
        child_id, dispatches = api.start_child(runtime, claim, spawn)
    except SpaneError as exc:
        error = f"could not start sub-workflow: {exc}"
        runtime.apply(store.fail_node(claim, error, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, error, exc)
    if child_id:
        log.info("parked on child execution", child_id=child_id)
        runtime.dispatch(dispatches)
    return AttemptResult(AttemptOutcome.PARKED)


def wake_parent(runtime: Runtime, execution_id: str, node_id: str, child_id: str) -> None:
    """A child execution ended: complete, retry or fail the parent node parked on it."""
    store = runtime.store
    claim = store.waiting_claim(execution_id, node_id, child_id)
    if claim is None:
        return  # woken already, moved on, ended, or paused (the sweep wakes it on resume)
    child = store.get_execution(child_id)
    node = store.graph(claim.workflow_id, claim.version).nodes[node_id]
    with structlog.contextvars.bound_contextvars(**log_fields(claim)):
        _wake(runtime, claim, node, child)


def _wake(runtime: Runtime, claim: Claim, node: Node, child: Execution) -> None:
    store = runtime.store
    if child.status == "completed":
        mapping = node.config.get("output")
        output = child.output
        try:
            if mapping:
                output = jmespath.search(mapping, output)
        except Exception as exc:
            error = f"output mapping {mapping!r} failed on the child's output: {exc}"
            runtime.apply(store.fail_node(claim, error, continue_on_fail=False))
            return
        runtime.apply(store.complete_node(claim, output))
        return
    node_type = registry.get(node.type)
    policy = node.retry or (node_type.retry if node_type else None) or _DEFAULT_RETRY
    reason = f"child execution {child.id} {child.status}: {child.error}"
    _failed(runtime, claim, node, policy, reason, retryable=child.status == "failed")
