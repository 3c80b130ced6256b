"""Spane's process metrics, recorded by each worker process into the shared folder.

Import this module only after ``PROMETHEUS_MULTIPROC_DIR`` is set (``open_folder``):
``prometheus_client`` decides at import whether values live in memory or in files,
and a worker's values must live in files that the process serving ``/metrics`` reads.

Label values are bounded: node type, lane, workflow id, outcome and status come from
definitions and enums; tenants are mapped through ``TenantLabels``; execution ids are
never labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Node attempts run from milliseconds (no-op nodes) to minutes (external calls).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

#: Dramatiq's own message-duration buckets, kept so its dashboards read the same.
_DRAMATIQ_MS: tuple[float, ...] = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000)
_DRAMATIQ_MS += (7500, 10000, 30000, 60000, 600000, 900000, float("inf"))

_NODE = ("type", "lane")
_MESSAGE = ("queue_name", "actor_name")


class Instruments:
    """Every metric a worker process records, registered nowhere global.

    The registry is only a namespace: in multiprocess mode the values are files, and
    the serving process aggregates them (``exposition``), so each process builds one
    ``Instruments`` and never exposes its own registry.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.executions_started = Counter(
            "spane_executions_started",
            "Executions that started running (their first node claimed).",
            ["workflow"],
            registry=r,
        )
        self.executions_finished = Counter(
            "spane_executions_finished",
            "Executions that ended on a worker, by final status.",
            ["workflow", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "spane_node_attempts",
            "Node attempts by how they ended "
            "(completed, failed, retried, timed_out, parked, handed_back, stale).",
            [*_NODE, "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "spane_node_retries", "Node attempts that scheduled another attempt.", _NODE, registry=r
        )
        self.duration = Histogram(
            "spane_node_duration_seconds",
            "Run time of one node attempt, claim to recorded outcome.",
            _NODE,
            buckets=SECONDS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "spane_node_queue_wait_seconds",
            "Time from a node attempt becoming due (queued) to a worker claiming it.",
            _NODE,
            buckets=SECONDS,
            registry=r,
        )
        self.inflight = Gauge(
            "spane_attempts_inflight",
            "Node attempts running node code, by tenant (sampled every second).",
            ["tenant"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.recoveries = Counter(
            "spane_sweeper_recoveries",
            "Work the sweeper recovered (timer_fired, parent_woken, attempt_superseded, "
            "message_resent) or a draining worker handed back (handed_back).",
            ["kind"],
            registry=r,
        )
        self.sweep_duration = Histogram(
            "spane_sweep_duration_seconds",
            "Duration of one recovery sweep by the worker holding the sweeper lease.",
            buckets=SECONDS,
            registry=r,
        )
        self.blob_put_bytes = Counter(
            "spane_blob_put_bytes", "Bytes of values offloaded to the blob store.", registry=r
        )
        self.blob_read_bytes = Counter(
            "spane_blob_read_bytes", "Bytes read from the blob store (cache misses).", registry=r
        )
        self.blob_cache_hits = Counter(
            "spane_blob_cache_hits", "Blob reads served from the worker's cache.", registry=r
        )
        self.blob_cache_misses = Counter(
            "spane_blob_cache_misses", "Blob reads that went to the blob store.", registry=r
        )
        self.draining = Gauge(
            "spane_worker_draining",
            "1 while a worker process drains (after SIGTERM), else 0.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.heartbeat = Gauge(
            "spane_worker_heartbeat_timestamp_seconds",
            "Last time each worker process saw its consumer and worker threads alive.",
            multiprocess_mode="liveall",
            registry=r,
        )
        # Circuit-breaker state is shared by all workers: it is read at scrape time
        # (``state.py``), like queue depth.

        # Dramatiq's own message metrics (dramatiq.middleware.prometheus), same names,
        # labels and buckets, recorded into this process's files with the rest.
        self.messages = Counter(
            "dramatiq_messages", "The total number of messages processed.", _MESSAGE, registry=r
        )
        self.message_errors = Counter(
            "dramatiq_message_errors",
            "The total number of errored messages.",
            _MESSAGE,
            registry=r,
        )
        self.message_retries = Counter(
            "dramatiq_message_retries",
            "The total number of retried messages.",
            _MESSAGE,
            registry=r,
        )
        self.message_rejects = Counter(
            "dramatiq_message_rejects",
            "The total number of dead-lettered messages.",
            _MESSAGE,
            registry=r,
        )
        self.messages_inprogress = Gauge(
            "dramatiq_messages_inprogress",
            "The number of messages in progress.",
            _MESSAGE,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.delayed_inprogress = Gauge(
            "dramatiq_delayed_messages_inprogress",
            "The number of delayed messages in memory.",
            _MESSAGE,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.message_duration = Histogram(
            "dramatiq_message_duration_milliseconds",
            "The time spent processing messages.",
            _MESSAGE,
            buckets=_DRAMATIQ_MS,
            registry=r,
        )
