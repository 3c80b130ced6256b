"""One node attempt: claim it, run its code, record what happened.

What the recorded outcome sets going is the coordinator's (``coordinator.advance``);
the executor only chooses, from that outcome, one ready successor to run itself in the
same thread instead of sending it (the inline path).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from . import codec, coordinator, registry, signals, starts
from .context import AwaitSignal, Defer, NodeContext, Park, Route, Spawn
from .coordinator import attempt_failed, log_fields
from .durations import parse_duration
from .errors import NodeFailed, SpaneError
from .inflight import Entry, HandedBack, Interrupted, inflight
from .middleware.attempts import (
    Attempt,
    AttemptOutcome,
    AttemptResult,
    attempt_middleware,
    emit_after,
    emit_before,
)
from .middleware.lanes import more_urgent_waiting
from .outcomes import RECORD_PATIENCE, bounded_traceback, retry_database
from .registry import RetryPolicy

if TYPE_CHECKING:
    from .definitions import Node
    from .services import Services
    from .store import Claim, Dispatch, Outcome

log = structlog.get_logger("spane.node")


#: Successors run in the same thread, without a broker round trip, at most this many
#: times in a row before the next one goes through the broker like any other message.
MAX_INLINE_HOPS = 16


class Continuation(threading.local):
    """The one ready successor this thread will run next instead of sending it.

    Offered to ``coordinator.advance`` as its ``keep``, only for the outcomes of the
    attempt this thread runs; any other message is sent as it is.

    Only a successor on the same lane, due now, of a type this worker knows is kept, and
    none while a more urgent message waits for a thread, so lane priority and fairness
    are unchanged; if the thread dies first, the node is still ``queued`` in the database
    and recovery sends it after its lease.
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
            or more_urgent_waiting()
        ):
            return False
        self.next = dispatch
        return True


continuation = Continuation()


def _keep(runtime: Services) -> Callable[[Dispatch], bool]:
    """What ``coordinator.advance`` may leave to this thread: nothing while the worker
    drains (it takes no new work), else what ``continuation`` takes."""
    draining = runtime.drain.draining
    return lambda d: not draining.is_set() and continuation.take(d)


def run_node(runtime: Services, execution_id: str, node_id: str, attempt: int) -> None:
    """Run one attempt of a node, then any successor kept to run inline."""
    step: tuple[str, str, int] | None = (execution_id, node_id, attempt)
    known: dict[str, str] | None = None
    kept: Dispatch | None = None
    try:
        while step is not None:
            continuation.next, continuation.known = None, None
            try:
                _run_one(runtime, *step, known, inline=kept is not None)
            except Exception as exc:
                if kept is None:
                    raise  # the message's own step: Dramatiq retries the message
                # No message stands for an inline step: send one, so that the step is
                # retried like any message instead of waiting for its lease.
                log.warning("inline successor failed; sent through the broker", error=str(exc))
                continuation.next = kept
                return
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
    runtime: Services,
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
        _not_claimed(runtime, execution_id, node_id, attempt)
        return
    entry = inflight.hold(claim)
    try:
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
            traceparent=claim.traceparent,
            ready_at=claim.ready_at,
            first=claim.attempt == 1 and node_id == graph.order[0],
        )
        with structlog.contextvars.bound_contextvars(**log_fields(claim)):
            entered, defer = emit_before(runtime.broker, hooks, current)
            result = AttemptResult(AttemptOutcome.FAILED, "the attempt did not finish")
            try:
                if defer is not None:
                    result = _deferred(runtime, claim, defer)
                else:
                    result = _attempt(runtime, claim, node, entry)
            except BaseException as exc:
                result = AttemptResult(AttemptOutcome.FAILED, str(exc), exc)
                raise
            finally:
                emit_after(runtime.broker, entered, current, result)
    finally:
        inflight.release(entry)


def _not_claimed(runtime: Services, execution_id: str, node_id: str, attempt: int) -> None:
    """A message that claimed nothing: stale or duplicate, or early for a retry's backoff."""
    early = runtime.store.early_message(execution_id, node_id, attempt)
    if early is not None:
        # A copy of a retry message that arrived before the backoff ran out: it goes
        # back to the broker for the rest of the wait rather than skipping it.
        log.debug("early node message sent again for the rest of the backoff", wait=early.delay)
        runtime.dispatch([early])
        return
    log.debug(
        "stale or duplicate node message dropped",
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
    )


def record(runtime: Services, transition: Callable[[], Outcome]) -> Outcome:
    """Run a transition that records an attempt's outcome; the coordinator advances
    from it, leaving this thread one ready successor to run inline."""
    return coordinator.record(runtime, transition, keep=_keep(runtime))


def _attempt(runtime: Services, claim: Claim, node: Node, entry: Entry) -> AttemptResult:
    node_type = registry.get(node.type)
    store = runtime.store
    if node_type is None:
        error = f"node type {node.type!r} is not registered in this worker; load its module"
        log.error("unknown node type", type=node.type)
        record(runtime, lambda: store.fail_node(claim, error, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, error)
    policy = coordinator.policy_of(node)
    timeout = node.timeout if node.timeout is not None else node_type.timeout
    seconds = parse_duration(timeout) if timeout is not None else None
    try:
        value = store.node_input(claim)
    except SpaneError as exc:
        log.error("node input could not be read", error=str(exc))
        failure = str(exc)
        record(
            runtime,
            lambda: store.fail_node(claim, failure, continue_on_fail=node.continue_on_fail),
        )
        return AttemptResult(AttemptOutcome.FAILED, failure, exc)

    def timed_out(_: Entry) -> AttemptResult:
        # Runs in the watchdog's fence thread, while node code may still be blocked.
        with structlog.contextvars.bound_contextvars(**log_fields(claim)):
            error = f"attempt timed out after {seconds:g}s"
            result = _failed(runtime, claim, node, policy, error, retryable=True)
            if result.outcome is AttemptOutcome.FAILED:
                return result
            return AttemptResult(AttemptOutcome.TIMED_OUT, error, None, result.retry_in)

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
        result = _call(node_type.fn, ctx, entry, seconds, timed_out)
    except BaseException as exc:
        if entry.fenced is not None:
            return _after_fence(runtime, claim, entry, exc)
        if isinstance(exc, Defer):
            return _deferred(runtime, claim, exc)
        if isinstance(exc, NodeFailed):
            return _failed(runtime, claim, node, policy, str(exc), retryable=exc.retryable, exc=exc)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, Exception):
            # SystemExit, KeyboardInterrupt, GeneratorExit or another BaseException from
            # node code: a failed attempt like any other, and the worker keeps serving
            # (a signal to the worker reaches its main thread, never a node's thread).
            log.warning("node code raised a BaseException; recorded as a failed attempt")
            detail = f"node code raised {detail}"
        else:
            log.warning("node attempt raised", error=detail)
        trace = bounded_traceback(exc, detail)
        return _failed(runtime, claim, node, policy, detail, retryable=True, exc=exc, trace=trace)
    return _succeeded(runtime, claim, node, policy, result)


def _call(
    fn: Any,
    ctx: NodeContext,
    entry: Entry,
    seconds: float | None,
    on_timeout: Callable[[Entry], AttemptResult],
) -> Any:
    inflight.enter(entry, seconds, on_timeout)
    try:
        result = fn(ctx)
    except Interrupted:
        entry.delivered = True
        raise
    finally:
        fenced = inflight.exit(entry)
    if fenced is not None:
        raise fenced
    return result


def _after_fence(
    runtime: Services, claim: Claim, entry: Entry, exc: BaseException
) -> AttemptResult:
    """The attempt was taken from this thread (timeout or drain) and recorded elsewhere."""
    entry.delivered = entry.delivered or isinstance(exc, Interrupted)
    inflight.exit(entry)  # the interrupt may have landed before the thread left node code
    if entry.fenced is HandedBack:
        log.info("attempt handed back to the queue while draining")
        return AttemptResult(AttemptOutcome.HANDED_BACK, None, exc)
    late = entry.recorded.is_set()
    if not entry.recorded.wait(timeout=RECORD_PATIENCE):
        log.error("the timed-out attempt was not recorded in time; its lease recovers it")
    if late:
        # Node code came back only after its timeout was recorded: whatever it did or
        # returned is a stale result, kept in the history and changing nothing else.
        stuck_for = time.monotonic() - entry.fenced_at
        detail = f"node code returned {stuck_for:.1f}s after its attempt timed out"
        log.warning("late result of a timed-out attempt ignored", stuck_seconds=stuck_for)
        retry_database(lambda: runtime.store.record_stale_result(claim, detail))
    if isinstance(entry.outcome, AttemptResult):
        return entry.outcome
    return AttemptResult(AttemptOutcome.TIMED_OUT, "attempt timed out", exc)


#: What storing a node's output can raise when the output itself is at fault (the raw
#: encoder errors are a backstop behind ``codec.check_json``).
_REFUSED_OUTPUT = (SpaneError, ValueError, TypeError, RecursionError, OverflowError)


def _succeeded(
    runtime: Services, claim: Claim, node: Node, policy: RetryPolicy, result: Any
) -> AttemptResult:
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
            record(
                runtime,
                lambda: store.fail_node(claim, message, continue_on_fail=node.continue_on_fail),
            )
            return AttemptResult(AttemptOutcome.FAILED, message)
        route, result = list(result.next), result.output
    if isinstance(result, Spawn):
        return _spawn(runtime, claim, result)
    if isinstance(result, AwaitSignal):
        signals.park(runtime, claim, result, continue_on_fail=node.continue_on_fail)
        return AttemptResult(AttemptOutcome.PARKED)
    where = f"output of node {claim.node_id}"
    if isinstance(result, Park):
        park = result
        try:
            codec.check_json(park.output, where)
            parked = retry_database(lambda: store.park_node(claim, park.until, park.output))
        except _REFUSED_OUTPUT as exc:
            return _failed(runtime, claim, node, policy, str(exc), retryable=True, exc=exc)
        if parked:
            runtime.send_timer(claim.execution_id, claim.node_id, claim.attempt, park.until)
        return AttemptResult(AttemptOutcome.PARKED, wake_at=park.until)
    output = result
    try:
        codec.check_json(output, where)
        outcome = retry_database(lambda: store.complete_node(claim, output, route=route))
    except _REFUSED_OUTPUT as exc:
        # Refused outputs are failed attempts like any other, under the retry policy.
        error = str(exc) if isinstance(exc, SpaneError) else f"{where} could not be stored: {exc!r}"
        return _failed(runtime, claim, node, policy, error, retryable=True, exc=exc)
    if outcome.output is not None:
        continuation.known = (claim.execution_id, {claim.node_id: outcome.output})
    log.debug("node completed", applied=outcome.applied)
    coordinator.advance(runtime, outcome, keep=_keep(runtime))
    return AttemptResult(AttemptOutcome.COMPLETED if outcome.applied else AttemptOutcome.STALE)


def _failed(
    runtime: Services,
    claim: Claim,
    node: Node,
    policy: RetryPolicy,
    error: str,
    *,
    retryable: bool,
    exc: BaseException | None = None,
    trace: str | None = None,
) -> AttemptResult:
    return attempt_failed(
        runtime,
        claim,
        node,
        policy,
        error,
        retryable=retryable,
        exc=exc,
        trace=trace,
        keep=_keep(runtime),
    )


def _deferred(runtime: Services, claim: Claim, defer: Defer) -> AttemptResult:
    """Put the node back in the queue until ``defer.until``, without counting the attempt."""
    # Debug: a backlog behind a rate limit defers every second; the history keeps each.
    log.debug("node attempt deferred", reason=defer.reason, until=defer.until)
    record(runtime, lambda: runtime.store.defer_node(claim, defer.until, defer.reason))
    return AttemptResult(AttemptOutcome.DEFERRED, defer.reason, defer)


def _spawn(runtime: Services, claim: Claim, spawn: Spawn) -> AttemptResult:
    """Start the child execution and park this node on it, in one transaction."""
    store = runtime.store
    if claim.depth + 1 > runtime.settings.max_depth:
        error = (
            f"sub-workflow {spawn.workflow!r} would nest {claim.depth + 1} levels deep, "
            f"over SPANE_MAX_DEPTH={runtime.settings.max_depth}"
        )
        record(runtime, lambda: store.fail_node(claim, error, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, error)
    try:
        child_id, dispatches = starts.start_child(runtime, claim, spawn)
    except SpaneError as exc:
        failure = f"could not start sub-workflow: {exc}"
        record(runtime, lambda: store.fail_node(claim, failure, continue_on_fail=False))
        return AttemptResult(AttemptOutcome.FAILED, failure, exc)
    if child_id:
        log.info("parked on child execution", child_id=child_id)
        keep = _keep(runtime)
        runtime.dispatch([d for d in dispatches if not keep(d)])
    return AttemptResult(AttemptOutcome.PARKED)
