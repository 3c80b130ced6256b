"""Claiming a queued node's attempt, and resolving its input.

A claim is one guarded UPDATE (queued → running at this attempt, while the execution
runs) plus the reads of its input: it takes no execution lock, so the claims of a wide
fan-out do not queue behind each other or behind finishing siblings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select

from ..payloads import Payloads
from ..statuses import NodeStatus as S
from . import hot
from .base import chunks, retry_conflicts
from .definitions import Definitions
from .execution_row import ExecutionRow
from .guards import node
from .history import History
from .records import Claim, Dispatch
from .schema import nodes as N


class Claims:
    """Claims of node attempts.

    Args:
        engine: The store's engine.
        payloads: Resolves packed inputs.
        definitions: The workflows' graphs (a node's parents).
        history: Records each start.
        row: The execution's unchanging fields.
        lease_seconds: The lease of a claimed attempt.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        definitions: Definitions,
        history: History,
        row: ExecutionRow,
        lease_seconds: float,
    ):
        self.engine = engine
        self.payloads = payloads
        self.definitions = definitions
        self.history = history
        self.row = row
        self.lease_seconds = lease_seconds

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
            self.history.record_events(conn, [(execution_id, node_id, "started", attempt)])
            meta = self.row.meta(conn, execution_id)
            parents = self.definitions.graph(meta.workflow_id, meta.version, conn).parents[node_id]
            packed: Any
            if known and all(p in known for p in parents):
                packed = {p: known[p] for p in parents}
            elif parents:
                packed = parent_outputs(conn, execution_id, parents)
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
                    node(execution_id, node_id), N.c.status == S.QUEUED, N.c.attempt == attempt
                )
            ).first()
        if row is None or row.wake_at is None or row.wake_at <= now:
            return None
        return Dispatch(execution_id, node_id, attempt, row.type, row.lane, row.wake_at - now)

    def node_input(self, claim: Claim) -> Any:
        """Resolve a claim's packed input (blobs are fetched here, outside transactions).

        Raises:
            BlobError: If an offloaded value is missing or corrupted.
        """
        graph = self.definitions.graph(claim.workflow_id, claim.version)
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


def parent_outputs(conn: Connection, execution_id: str, parents: Sequence[str]) -> dict[str, str]:
    """The stored outputs of a node's finished parents: ``{parent_id: stored text}``."""
    return {
        r.node_id: r.output
        for ids in chunks(parents)
        for r in conn.execute(hot.PARENT_OUTPUTS, {"e": execution_id, "ids": ids})
    }
