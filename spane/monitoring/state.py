"""Gauges of cluster state, read from the database and the broker at each scrape.

Every worker's endpoint reports the same cluster-wide values; aggregate them across
workers with ``max``, not ``sum`` (the dashboard does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..broker import queue_depths
from ..middleware.metric_files import TenantLabels

if TYPE_CHECKING:
    from ..services import Services

log = structlog.get_logger("spane.metrics")


#: The states a circuit breaker can be in, each a series of ``spane_circuit_breaker_state``.
BREAKER_STATES = ("closed", "half-open", "open")


class StateCollector(Collector):
    """Queue depth per lane; ready nodes, running nodes and the oldest wait per lane and
    tenant; active executions, open dead letters, circuit breakers, and whether the
    database and broker answered.

    Args:
        runtime: Where the database and broker are.
    """

    def __init__(self, runtime: Services) -> None:
        self.runtime = runtime
        self.tenant = TenantLabels(runtime.settings.metrics_tenants)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "spane_state_source_up",
            "1 if the source answered this scrape's state queries, else 0.",
            labels=["source"],
        )
        yield from self._database(up)
        yield from self._lanes()
        yield from self._broker(up)
        yield from self._breakers()
        yield up

    def _breakers(self) -> Iterator[GaugeMetricFamily]:
        # Breaker state is shared by every worker (Redis, the database), so any worker's
        # scrape reports the cluster's.
        try:
            breakers = self.runtime.breakers.status()
        except Exception as exc:
            log.warning("metrics: circuit-breaker state unavailable", error=str(exc))
            return
        state = GaugeMetricFamily(
            "spane_circuit_breaker_state",
            "1 for the state each circuit breaker is in (closed, half-open, open), else 0.",
            labels=["breaker", "state"],
        )
        failures = GaugeMetricFamily(
            "spane_circuit_breaker_failures",
            "Consecutive counted failures of each circuit breaker.",
            labels=["breaker"],
        )
        for breaker in breakers:
            for name in BREAKER_STATES:
                state.add_metric([breaker.name, name], 1 if breaker.state == name else 0)
            failures.add_metric([breaker.name], breaker.failures)
        yield state
        yield failures

    def _database(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        try:
            state = self.runtime.store.work_state()
        except Exception as exc:
            log.warning("metrics: database state unavailable", error=str(exc))
            up.add_metric(["database"], 0)
            return
        up.add_metric(["database"], 1)
        ready = GaugeMetricFamily(
            "spane_nodes_ready",
            "Nodes queued and due but not started, by lane and tenant.",
            labels=["lane", "tenant"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        for (lane, tenant), n in state.ready.items():
            counts[(lane, self.tenant(tenant))] += n
        for labels, n in sorted(counts.items()):
            ready.add_metric(list(labels), n)
        yield ready
        executions = GaugeMetricFamily(
            "spane_executions_active",
            "Executions running or paused now.",
            labels=["status"],
        )
        for status in ("running", "paused"):
            executions.add_metric([status], state.executions.get(status, 0))
        yield executions
        yield GaugeMetricFamily(
            "spane_dead_letters_open", "Dead letters not yet retried.", value=state.dead_letters
        )

    def _lanes(self) -> Iterator[GaugeMetricFamily]:
        # Ready nodes per lane and tenant are ``spane_nodes_ready`` (``_database``).
        try:
            loads = self.runtime.store.lane_load()
        except Exception as exc:
            log.warning("metrics: lane state unavailable", error=str(exc))
            return
        in_flight = GaugeMetricFamily(
            "spane_lane_in_flight",
            "Nodes running now, by lane and tenant.",
            labels=["lane", "tenant"],
        )
        limited = GaugeMetricFamily(
            "spane_lane_limited",
            "Nodes ready but waiting for a concurrency slot, by lane and tenant.",
            labels=["lane", "tenant"],
        )
        oldest = GaugeMetricFamily(
            "spane_lane_oldest_wait_seconds",
            "How long the longest-waiting ready node has been due, by lane and tenant.",
            labels=["lane", "tenant"],
        )
        running: Counter[tuple[str, str]] = Counter()
        held: Counter[tuple[str, str]] = Counter()
        waits: dict[tuple[str, str], float] = {}
        for load in loads:
            labels = (load.lane, self.tenant(load.tenant))
            running[labels] += load.in_flight
            held[labels] += load.limited
            if load.oldest_wait is not None:
                waits[labels] = max(load.oldest_wait, waits.get(labels, 0.0))
        for labels, n in sorted(running.items()):
            in_flight.add_metric(list(labels), n)
        for labels, n in sorted(held.items()):
            limited.add_metric(list(labels), n)
        for labels, wait in sorted(waits.items()):
            oldest.add_metric(list(labels), wait)
        yield in_flight
        yield limited
        yield oldest

    def _broker(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        depths: dict[str, tuple[int, int]] = {}
        # The embedded broker's queues belong to one process: nothing to report.
        if not self.runtime.settings.embedded:
            try:
                depths = queue_depths(self.runtime.broker, self.runtime.settings)
                up.add_metric(["broker"], 1)
            except Exception as exc:
                log.warning("metrics: broker state unavailable", error=str(exc))
                up.add_metric(["broker"], 0)
        ready = GaugeMetricFamily(
            "spane_queue_depth", "Messages waiting in a lane's queue.", labels=["lane"]
        )
        delayed = GaugeMetricFamily(
            "spane_queue_delayed",
            "Delayed messages (retries, timers) of a lane's queue.",
            labels=["lane"],
        )
        for lane, (waiting, later) in depths.items():
            ready.add_metric([lane], waiting)
            delayed.add_metric([lane], later)
        yield ready
        yield delayed


def exposition(runtime: Services) -> bytes:
    """The cluster state gauges in Prometheus text format, read once (``spane metrics``)."""
    registry = CollectorRegistry()
    registry.register(StateCollector(runtime))
    return generate_latest(registry)
