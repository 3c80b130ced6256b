"""Admission: whether a ready node's message goes to the broker now or waits its turn.

Every node message passes ``Admission.admit`` before it is sent. A node under a
concurrency limit (``spane.limits``) is admitted or held in the database, in order per
key; a node of a lane whose broker backlog is deep waits in the database and is
released to the lane in weighted turns per tenant (``spane.fairness``) while the lane's
backlog is kept short. Neither holds a thread or a broker message. Without limits and
without a backlog a message goes straight through: no statement is added.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from .broker import queue_name, ready_count
from .registry import LANES
from .store import Dispatch, Store
from .store.admission import Admitted, Arrival

if TYPE_CHECKING:
    from dramatiq import Broker

    from .settings import Settings

log = structlog.get_logger("spane.admission")

#: Seconds a lane's measured broker depth is trusted before it is read again.
DEPTH_TTL = 0.5
#: Least seconds between two releases by one process, unless it just held nodes.
PUMP_INTERVAL = 0.02
#: While nodes of a lane wait their turn, releases keep at most this many messages in its
#: broker queue (never more than the fair depth): the broker is first come first served,
#: so a node released now starts behind all of them.
RELEASE_DEPTH = 8
#: Nodes a tenant with none waiting may send at once to a busy lane, per process, per
#: ``DEPTH_TTL``: its steady work goes straight through, a burst beyond waits its turn.
DIRECT_MAX = 32
#: Least seconds between two look-ups, by a worker that knows of no node waiting its
#: turn, of whether another process holds some (an idle worker's only added statement).
LOOK_INTERVAL = 0.5
#: Executions remembered as created by this process.
_KNOWN_MAX = 50_000


class Known:
    """Workflow, version and tenant of executions this process created or looked up, so
    that deciding on their entry nodes needs no statement."""

    def __init__(self) -> None:
        self._map: dict[str, tuple[str, int, str]] = {}

    def noting(
        self, trace: Callable[..., AbstractContextManager[str | None]]
    ) -> Callable[..., AbstractContextManager[str | None]]:
        """Wrap the store's ``trace_execution``, called for every execution created."""

        def traced(**fields: Any) -> AbstractContextManager[str | None]:
            self.add(
                fields["execution_id"], fields["workflow_id"], fields["version"], fields["tenant"]
            )
            return trace(**fields)

        return traced

    def add(self, execution_id: str, workflow_id: str, version: int, tenant: str) -> None:
        """Remember one execution."""
        if len(self._map) >= _KNOWN_MAX:
            self._map.clear()
        self._map[execution_id] = (workflow_id, version, tenant)

    def get(self, execution_id: str) -> tuple[str, int, str] | None:
        """What is known of ``execution_id``, or None."""
        return self._map.get(execution_id)


@dataclass
class _Lane:
    depth: int = 0
    measured: float = -1.0
    sent: int = 0
    #: Nodes of this lane wait in the database (seen by this process).
    held: bool = False
    #: Tenants with nodes waiting their turn in this lane (as far as this process saw).
    waiting: set[str] = field(default_factory=set)
    #: Nodes sent at once, per tenant with none waiting, since ``measured``.
    direct: dict[str, int] = field(default_factory=dict)


class Admission:
    """Decides, for node messages about to be sent, which go now (see module docstring).

    Args:
        settings: The fairness depth and tenant weights.
        store: Where nodes wait.
        broker: Whose lane queues are measured.
        known: Executions this process created.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        broker: Broker,
        known: Known,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.known = known
        self.weights = dict(settings.tenant_weights)
        self._lanes: dict[str, _Lane] = {}
        self._pumping = threading.Lock()
        self._pumped = 0.0
        self._look_at = 0.0

    def weight(self, tenant: str) -> float:
        """A tenant's share of a busy lane (1 unless ``SPANE_TENANT_WEIGHTS`` says)."""
        return self.weights.get(tenant, 1.0)

    def _lane(self, lane: str) -> _Lane:
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane()
        now = time.monotonic()
        if now - state.measured > DEPTH_TTL:
            state.depth = ready_count(self.broker, queue_name(self.settings, lane))
            state.measured, state.sent = now, 0
            state.direct.clear()
        return state

    def _busy(self, state: _Lane, tenant: str) -> bool:
        """Whether a node of ``tenant`` waits its turn: not while the lane's queue is
        short of the fair depth and none waits; nor, up to ``DIRECT_MAX``, for a tenant
        with none waiting, whose turn would come first anyway (turns save nothing up)."""
        if state.depth + state.sent >= self.settings.fair_queue_depth:
            return True
        if not state.held or tenant in state.waiting:
            return state.held
        sent = state.direct.get(tenant, 0)
        if sent >= DIRECT_MAX:
            return True
        state.direct[tenant] = sent + 1
        return False

    def _meta(self, execution_id: str) -> tuple[str, int, str] | None:
        cached = self.store.execution_row.cached_meta(execution_id)
        if cached is not None:
            return (cached.workflow_id, cached.version, cached.tenant)
        known = self.known.get(execution_id)
        if known is None:
            known = self.store.admission.meta(execution_id)
            if known is not None:
                self.known.add(execution_id, *known)
        return known

    def admit(self, dispatches: Iterable[Dispatch]) -> list[Dispatch]:
        """Return the messages to send now; the others wait in the database."""
        out: list[Dispatch] = []
        arrivals: list[Arrival] = []
        turns: list[tuple[Dispatch, str]] = []
        rules = self.store.admission.rules
        for d in dispatches:
            if isinstance(d, Admitted):
                out.append(d)
                continue
            lane = self._lane(d.lane)
            meta = self._meta(d.execution_id)
            if meta is None:
                continue  # no such execution (deleted): nothing to run
            graph = self.store.graph(meta[0], meta[1])
            if d.node_id not in graph.nodes:
                out.append(d)
            elif rules.applies(graph, d.node_id, meta[2]):
                limits = rules.limits(
                    graph,
                    d.node_id,
                    meta[2],
                    d.execution_id,
                    lambda d=d, g=graph, t=meta[2]: self.store.admission.node_input(  # type: ignore[misc]
                        g, d.execution_id, d.node_id, t
                    ),
                )
                arrivals.append(Arrival(d, meta[2], limits))
            elif self._busy(lane, meta[2]):
                turns.append((d, meta[2]))
            else:
                lane.sent += 1
                out.append(d)
        if arrivals:
            sent, victims = self.store.admission.arrive(arrivals)
            out += sent
            if victims:
                out += self._cancel(victims)
        if turns:
            for d, tenant in turns:
                self._lanes[d.lane].held = True
                self._lanes[d.lane].waiting.add(tenant)
            out += self.store.fair.hold(turns)
        if any(state.held for state in list(self._lanes.values())):
            pending: dict[str, int] = {}
            for d in out:
                pending[d.lane] = pending.get(d.lane, 0) + 1
            out += self._release(pending, wait=False, eager=bool(turns))
        return out

    def _cancel(self, victims: dict[str, str]) -> list[Dispatch]:
        for execution_id, reason in victims.items():
            if self.store.admission.cancel(execution_id, reason):
                log.info(
                    "execution cancelled by a concurrency strategy",
                    execution_id=execution_id,
                    reason=reason,
                )
        return self.store.admission.fill()

    def _release(
        self, pending: dict[str, int], *, wait: bool, eager: bool = False
    ) -> list[Dispatch]:
        """Top the broker queues of busy lanes up to ``RELEASE_DEPTH`` with waiting nodes.

        ``pending`` counts messages per lane about to be sent. One thread of a process
        releases at a time, at most every ``PUMP_INTERVAL`` and once a quarter of the
        queue is free, unless ``wait`` (the sweep) or ``eager`` (nodes just held).
        """
        if time.monotonic() - self._pumped < PUMP_INTERVAL and not (wait or eager):
            return []
        if not self._pumping.acquire(blocking=wait):
            return []
        released: list[Dispatch] = []
        try:
            self._pumped = time.monotonic()
            limit = min(self.settings.fair_queue_depth, RELEASE_DEPTH)
            least = 1 if wait or eager else max(1, limit // 4)
            for lane, state in list(self._lanes.items()):
                if not state.held:
                    continue
                queued = ready_count(self.broker, queue_name(self.settings, lane))
                room = limit - queued - pending.get(lane, 0)
                if room < least:
                    continue  # the lane has enough queued: release as it runs low
                result = self.store.fair.release(lane, room, self.weight)
                if result is None:
                    continue  # another worker is releasing this lane
                out, state.waiting = result
                state.held = bool(state.waiting)
                released += out
        finally:
            self._pumping.release()
        return released

    def watch(self) -> list[Dispatch]:
        """Between sweeps, in a worker: release waiting nodes of the lanes whose queue
        runs low. A lane's nodes held by another process (a client's flood) are found
        here, by one small look-up, only while this process knows of none and some lane's
        queue is short; a process that knows of some releases on every node it ends,
        and here when its threads have nothing to end."""
        if not any(state.held for state in list(self._lanes.values())):
            limit = min(self.settings.fair_queue_depth, RELEASE_DEPTH)
            now = time.monotonic()
            if now < self._look_at or all(self._lane(x).depth >= limit for x in LANES):
                return []
            for lane in self.store.fair.held_lanes():
                self._lanes.setdefault(lane, _Lane()).held = True
            if not any(state.held for state in list(self._lanes.values())):
                self._look_at = now + LOOK_INTERVAL
                return []
        return self._release({}, wait=False)

    def sweep(self, *, leader: bool) -> list[Dispatch]:
        """Periodic pass: release waiting nodes and, on the sweeper, hand slots freed by
        ended executions to their waiters. Returns the messages to send."""
        for lane in self.store.fair.held_lanes():
            self._lanes.setdefault(lane, _Lane()).held = True
        released = self._release({}, wait=True)
        if leader:
            self.store.admission.forget_ended()
            released += self.store.admission.fill()
        return released
