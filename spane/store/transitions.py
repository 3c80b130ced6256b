"""Node transitions, each guarded so a duplicate or stale message cannot apply twice.

Concurrency rests on row locks taken by guarded UPDATEs: a node's own row (status and
attempt guard), each child's row (its countdown of unfinished parents, decremented with
RETURNING, so exactly one finishing parent sees it reach zero), and last the execution
row (its countdown of unfinished nodes, so exactly one transition sees it reach zero
and completes the execution). The execution row is taken last and held only until the
commit, so siblings of a wide fan-out do not queue behind each other for long.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, select, update

from .. import codec, errors
from . import hot
from .base import chunks, retry_conflicts
from .history import History
from .records import EXECUTION_ACTIVE, Claim, Dispatch, Outcome
from .schema import executions as E
from .schema import nodes as N

if TYPE_CHECKING:
    from ..definitions import Graph

_QUEUEABLE_FROM = ("pending",)


def _node(execution_id: str, node_id: str) -> Any:
    return and_(N.c.execution_id == execution_id, N.c.node_id == node_id)


def _held(claim: Claim) -> Any:
    """The row of ``claim``'s node, only while that attempt still holds it."""
    return and_(
        _node(claim.execution_id, claim.node_id),
        N.c.status == claim.status,
        N.c.attempt == claim.attempt,
    )


class Transitions(History):
    """Mixin of ``Store`` holding the node transitions."""

    @retry_conflicts
    def claim_node(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        known: dict[str, str] | None = None,
    ) -> Claim | None:
        """Move a queued node to running for this attempt; None if the message is stale.

        A node of a paused or ended execution is not claimed: the message is dropped and
        resume sends it again. ``known`` holds stored outputs of parents the caller has
        at hand (a thread running a successor inline), which are then not read again.
        """
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                hot.CLAIM,
                {
                    "e": execution_id,
                    "n": node_id,
                    "a": attempt,
                    "now": now,
                    "lease": now + self.lease_seconds,
                },
            ).first()
            if row is None:
                return None
            self.record_events(conn, [(execution_id, node_id, "started", attempt)])
            meta = self.execution_meta(conn, execution_id)
            parents = self.graph(meta.workflow_id, meta.version, conn).parents[node_id]
            packed: Any
            if known and all(p in known for p in parents):
                packed = {p: known[p] for p in parents}
            elif parents:
                packed = self._parent_outputs(conn, execution_id, parents)
            else:
                packed = conn.execute(hot.EXECUTION_INPUT, {"e": execution_id}).scalar_one()
        return Claim(
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            type=row.type,
            workflow_id=meta.workflow_id,
            version=meta.version,
            tenant=meta.tenant,
            depth=meta.depth,
            input=packed,
            tries=attempt - row.attempt_base,
            lane=row.lane,
            traceparent=meta.traceparent,
            ready_at=max(row.queued_at or now, row.wake_at or 0.0),
        )

    def early_message(self, execution_id: str, node_id: str, attempt: int) -> Dispatch | None:
        """The message to send again when one arrived before its retry backoff ran out.

        None unless the node is queued for ``attempt`` with its wake-up still ahead (a
        duplicate of a delayed message, or one sent without its delay).
        """
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(N.c.wake_at, N.c.type, N.c.lane).where(
                    _node(execution_id, node_id), N.c.status == "queued", N.c.attempt == attempt
                )
            ).first()
        if row is None or row.wake_at is None or row.wake_at <= now:
            return None
        return Dispatch(execution_id, node_id, attempt, row.type, row.lane, row.wake_at - now)

    def record_stale_result(self, claim: Claim, detail: str) -> None:
        """Keep in the history that a superseded attempt came back; nothing else changes."""
        with self.engine.begin() as conn:
            self.record_event(
                conn, claim.execution_id, claim.node_id, "stale_result", claim.attempt, detail
            )

    def execution_meta(self, conn: Connection, execution_id: str) -> Any:
        """The fields of an execution that never change, cached per process."""
        meta = self._meta_cache.get(execution_id)
        if meta is None:
            meta = conn.execute(hot.EXECUTION_META, {"e": execution_id}).one()
            if len(self._meta_cache) > 50_000:
                self._meta_cache.clear()
            self._meta_cache[execution_id] = meta
        return meta

    def node_input(self, claim: Claim) -> Any:
        """Resolve a claim's packed input (blobs are fetched here, outside transactions).

        Raises:
            BlobError: If an offloaded value is missing or corrupted.
        """
        graph = self.graph(claim.workflow_id, claim.version)
        parents = graph.parents[claim.node_id]
        where = f"execution {claim.execution_id}, node {claim.node_id!r}"
        if not parents:
            return self.payloads.unpack(claim.tenant, claim.input, what=f"input of {where}")
        memo: dict[str, Any] = {}  # parents that returned one stored value share it
        values = {
            parent: self.payloads.unpack(
                claim.tenant, text, what=f"output of parent {parent!r} ({where})", memo=memo
            )
            for parent, text in claim.input.items()
        }
        return values.get(parents[0]) if len(parents) == 1 else values

    def _parent_outputs(
        self, conn: Connection, execution_id: str, parents: Sequence[str]
    ) -> dict[str, str]:
        return {
            r.node_id: r.output
            for ids in chunks(parents)
            for r in conn.execute(hot.PARENT_OUTPUTS, {"e": execution_id, "ids": ids})
        }

    def complete_node(
        self,
        claim: Claim,
        output: Any,
        *,
        route: list[str] | None = None,
        stored: str | None = None,
    ) -> Outcome:
        """Record a node's output and queue the successors that became ready.

        Args:
            stored: The output as it is already stored (a child execution's, for its
                parked parent), kept as it is instead of ``output`` being encoded again:
                a child's output composed from references stays so.
        """
        packed = (
            stored
            if stored is not None
            else self.payloads.pack(claim.tenant, output, what=f"output of node {claim.node_id}")
        )
        params = {
            "output": packed,
            "route": None if route is None else codec.dumps(route),
            "from_status": claim.status,
        }
        event = "completed" if claim.status == "running" else "woken"
        chosen = None if route is None else set(route)
        outcome = self._finish(
            hot.COMPLETE, params, claim.execution_id, claim.node_id, claim.attempt, event, chosen
        )
        if outcome.applied:
            outcome.output = packed
        return outcome

    def fire_timer(self, execution_id: str, node_id: str, attempt: int) -> Outcome:
        """Complete a ``waiting`` node whose timer fell due (the output was stored at park).

        A paused execution's timers do not fire: they fire on resume.
        """
        return self._finish(hot.FIRE_TIMER, {}, execution_id, node_id, attempt, "timer_fired", None)

    @retry_conflicts
    def fail_node(
        self, claim: Claim, error: str, *, continue_on_fail: bool, trace: str | None = None
    ) -> Outcome:
        """Fail a node for good; the execution fails too unless ``continue_on_fail``.

        Args:
            error: One line saying why; the execution's error and, with
                ``continue_on_fail``, the node's ``{"error": ...}`` output.
            trace: The whole story (a traceback), kept as the node's error, in its
                history and in its dead letter; ``error`` when not given.
        """
        detail = trace or error
        if continue_on_fail:
            params = {
                "output": self.payloads.pack(claim.tenant, {"error": error}),
                "error": detail,
                "from_status": claim.status,
            }
            outcome = self._finish(
                hot.FAIL_AND_CONTINUE,
                params,
                claim.execution_id,
                claim.node_id,
                claim.attempt,
                "failed",
                None,
            )
            if outcome.applied:
                self._dead_node(None, claim, detail)
            return outcome
        with self.engine.begin() as conn:
            ex = self._lock_execution(conn, claim.execution_id, time.time())
            now = time.time()  # after the lock: what committed before it came first
            done = conn.execute(
                update(N)
                .where(_held(claim))
                .values(status="failed", error=detail, finished_at=now, lease_until=None)
            )
            if done.rowcount == 0:
                return Outcome(applied=False)
            self.record_event(
                conn, claim.execution_id, claim.node_id, "failed", claim.attempt, detail
            )
            self._dead_node(conn, claim, detail)
            if ex.status not in EXECUTION_ACTIVE:
                return Outcome()
            message = f"node {claim.node_id!r} failed: {error}"
            self._end_execution(conn, claim.execution_id, "failed", now, error=message)
            return Outcome(
                ended="failed",
                workflow_id=ex.workflow_id,
                parent_id=ex.parent_id,
                parent_node_id=ex.parent_node_id,
                child_id=claim.execution_id,
            )

    @retry_conflicts
    def retry_node(
        self, claim: Claim, error: str, delay: float, *, trace: str | None = None
    ) -> Outcome:
        """Queue the next attempt of a node after ``delay`` seconds.

        ``trace`` (a traceback), when given, is kept as the error instead of ``error``.
        """
        error = trace or error
        now = time.time()
        with self.engine.begin() as conn:
            ex = self._lock_execution(conn, claim.execution_id, now)
            cancelled = ex.status not in EXECUTION_ACTIVE
            row = conn.execute(
                update(N)
                .where(_held(claim))
                .values(
                    status="cancelled" if cancelled else "queued",
                    attempt=N.c.attempt + (0 if cancelled else 1),
                    error=error,
                    queued_at=now,
                    wake_at=now + delay,
                    lease_until=now + delay + self.lease_seconds,
                    finished_at=now if cancelled else None,
                    child_id=None,
                )
                .returning(N.c.attempt, N.c.type, N.c.lane)
            ).first()
            if row is None:
                return Outcome(applied=False)
            kind = "cancelled" if cancelled else "retrying"
            self.record_event(conn, claim.execution_id, claim.node_id, kind, claim.attempt, error)
            if cancelled:
                return Outcome()
            return Outcome(
                dispatches=[
                    Dispatch(
                        claim.execution_id, claim.node_id, row.attempt, row.type, row.lane, delay
                    )
                ]
            )

    def _lock_execution(self, conn: Connection, execution_id: str, now: float) -> Any:
        """Take the execution row (every transition does, first) and return its state."""
        row = conn.execute(
            update(E)
            .where(E.c.id == execution_id)
            .values(updated_at=now)
            .returning(
                E.c.status,
                E.c.remaining,
                E.c.workflow_id,
                E.c.version,
                E.c.tenant,
                E.c.parent_id,
                E.c.parent_node_id,
            )
        ).first()
        if row is None:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return row

    @retry_conflicts
    def _finish(
        self,
        statement: Any,
        params: dict[str, Any],
        execution_id: str,
        node_id: str,
        attempt: int,
        event: str,
        chosen: set[str] | None,
    ) -> Outcome:
        now = time.time()
        with self.engine.begin() as conn:
            # Every transition of an execution takes its row first: one lock order, so
            # concurrent transitions of one execution queue up instead of deadlocking.
            status = conn.execute(hot.LOCK_EXECUTION, {"e": execution_id, "now": now}).scalar()
            if event == "woken" and status != "running":
                return Outcome(applied=False)  # a paused parent is woken on resume
            row = conn.execute(
                statement, {"e": execution_id, "n": node_id, "a": attempt, "now": now, **params}
            ).first()
            if row is None:
                # A timer or a parent's wake-up comes twice by design (message and sweep):
                # the second finds the node moved on, which is no result of anyone's.
                if event not in ("timer_fired", "woken"):
                    # A result of a superseded attempt (or of an ended execution's node):
                    # kept in the history, and nothing else changes.
                    self.record_events(conn, [(execution_id, node_id, "stale_result", attempt)])
                return Outcome(applied=False)
            self.record_events(conn, [(execution_id, node_id, event, attempt)])
            # Admission seam: the node's concurrency slot goes to the next waiter.
            admitted = self.admission.ended(conn, execution_id, node_id)  # type: ignore[attr-defined]
            if status not in EXECUTION_ACTIVE:
                return Outcome(dispatches=admitted)
            meta = self.execution_meta(conn, execution_id)
            graph = self.graph(meta.workflow_id, meta.version, conn)
            outcome = self._settle(conn, execution_id, graph, now, [(node_id, chosen)], 1)
            outcome.dispatches += admitted
            return outcome

    def _settle(
        self,
        conn: Connection,
        execution_id: str,
        graph: Graph,
        now: float,
        work: list[tuple[str, set[str] | None]],
        finished: int,
    ) -> Outcome:
        """Tell the children of finished nodes, queue or skip those that became ready,
        and complete the execution when no node is left unfinished.

        ``work`` holds nodes that just finished with the successors they chose (None: all).
        """
        dispatches: list[Dispatch] = []
        events: list[tuple[str, str | None, str, int | None]] = []
        lease = now + self.lease_seconds
        while work:
            parent, picked = work.pop()
            kids = graph.children[parent]
            live = [k for k in kids if picked is None or k in picked]
            dead = [k for k in kids if not (picked is None or k in picked)]
            for group, inc in ((live, 1), (dead, 0)):
                rows = [
                    r
                    for ids in chunks(group)
                    for r in conn.execute(
                        hot.PROPAGATE,
                        {"e": execution_id, "ids": ids, "inc": inc, "now": now, "lease": lease},
                    )
                ]
                for r in rows:
                    if r.status == "queued":
                        dispatches.append(
                            Dispatch(execution_id, r.node_id, r.attempt, r.type, r.lane)
                        )
                        events.append((execution_id, r.node_id, "queued", r.attempt))
                    elif r.status == "skipped":
                        events.append((execution_id, r.node_id, "skipped", None))
                        finished += 1
                        work.append((r.node_id, set()))
        self.record_events(conn, events)
        ex = conn.execute(hot.COUNT_FINISHED, {"e": execution_id, "k": finished, "now": now}).one()
        if ex.remaining > 0 or ex.status != "running":
            # A paused execution whose last node finished completes on resume.
            return Outcome(dispatches=dispatches)
        return self._complete(conn, execution_id, graph, ex, now, dispatches)

    def _complete(
        self,
        conn: Connection,
        execution_id: str,
        graph: Graph,
        ex: Any,
        now: float,
        dispatches: list[Dispatch] | None = None,
    ) -> Outcome:
        output = self._execution_output(conn, execution_id, graph, ex.tenant)
        self._end_execution(conn, execution_id, "completed", now, output=output)
        return Outcome(
            dispatches=dispatches or [],
            ended="completed",
            workflow_id=ex.workflow_id,
            parent_id=ex.parent_id,
            parent_node_id=ex.parent_node_id,
            child_id=execution_id,
        )

    def _queue(
        self, conn: Connection, execution_id: str, ready: list[str], now: float
    ) -> list[Dispatch]:
        rows = [
            row
            for ids in chunks(ready)
            for row in conn.execute(
                update(N)
                .where(N.c.execution_id == execution_id, N.c.node_id.in_(ids))
                .values(
                    status="queued",
                    attempt=N.c.attempt + 1,
                    queued_at=now,
                    lease_until=now + self.lease_seconds,
                )
                .returning(N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
            )
        ]
        self.record_events(conn, [(execution_id, r.node_id, "queued", r.attempt) for r in rows])
        return [Dispatch(execution_id, r.node_id, r.attempt, r.type, r.lane) for r in rows]

    def _execution_output(
        self, conn: Connection, execution_id: str, graph: Graph, tenant: str
    ) -> str:
        rows = [
            row
            for ids in chunks(graph.sinks)
            for row in conn.execute(
                select(N.c.node_id, N.c.output, N.c.status).where(
                    N.c.execution_id == execution_id, N.c.node_id.in_(ids)
                )
            )
        ]
        if len(graph.sinks) == 1:
            done = rows and rows[0].status in ("completed", "failed") and rows[0].output
            return rows[0].output if done else "null"
        parts = {
            r.node_id: r.output
            for r in rows
            if r.status in ("completed", "failed") and r.output is not None
        }
        # Composed from the sinks' stored texts: nothing is decoded or encoded here.
        return self.payloads.compose(parts)

    def _end_execution(
        self,
        conn: Connection,
        execution_id: str,
        status: str,
        now: float,
        *,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        conn.execute(
            update(E)
            .where(E.c.id == execution_id, E.c.status.in_(EXECUTION_ACTIVE))
            .values(status=status, output=output, error=error, finished_at=now)
        )
        self.record_event(conn, execution_id, None, f"execution_{status}", None, error)
        if status == "completed":
            return
        conn.execute(
            update(N)
            .where(
                N.c.execution_id == execution_id,
                N.c.status.in_(("pending", "queued", "waiting")),
            )
            .values(status="cancelled", finished_at=now, lease_until=None)
        )
        # Child executions still running would otherwise run to completion, side effects
        # included, for a parent that no longer wants their result. Parent rows are
        # locked before child rows everywhere (a child is created under its parent's
        # lock), so taking them here cannot deadlock; the depth is capped.
        children = conn.execute(
            select(E.c.id).where(E.c.parent_id == execution_id, E.c.status.in_(EXECUTION_ACTIVE))
        ).scalars()
        for child_id in list(children):
            self._lock_execution(conn, child_id, now)
            # Timed after the lock: whatever the child did before it (starting a child of
            # its own, say) happened before it was cancelled.
            self._end_execution(
                conn,
                child_id,
                "cancelled",
                time.time(),
                error=f"parent execution {execution_id} {status}",
            )

    def _dead_node(self, conn: Connection | None, claim: Claim, error: str) -> None:
        digest = hashlib.sha256(
            f"node:{claim.execution_id}:{claim.node_id}:{claim.attempt}".encode()
        ).hexdigest()
        self.add_dead_letter(
            conn,
            kind="node",
            digest=digest,
            execution_id=claim.execution_id,
            node_id=claim.node_id,
            actor=claim.type,
            reason=error,
        )
