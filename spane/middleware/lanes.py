"""Lanes under load: which lanes a worker serves, and what keeps a high-lane node from
waiting behind more than the node already running in a thread.

A worker process pulls each lane's queue with its own consumer into one priority queue,
from which its threads take the most urgent message first. Three things could still
make urgent work wait, and this middleware handles each:

- A thread that finished a node runs a ready successor inline (``executor.Continuation``)
  instead of going back to that priority queue; ``more_urgent_waiting`` tells it to send
  the successor through the broker when a more urgent message is waiting for a thread.
- Dramatiq's Redis consumer polls an empty queue with a backoff growing to the worker
  timeout (a second by default), so a high-lane message sent to an idle lane could sit
  that long before any worker fetches it; the high lane's consumer polls every
  ``HIGH_POLL_MS`` instead. (RabbitMQ pushes messages to consumers: nothing to shorten.)
- ``SPANE_LANES`` gives a lane workers of its own, whose threads low-lane work never
  occupies.
"""

from __future__ import annotations

import threading
from queue import PriorityQueue
from typing import Any

from dramatiq import Broker, Middleware

from .. import backlog
from ..errors import ConfigurationError
from ..messages import queue_name
from ..registry import LANES
from ..settings import Settings

#: Longest pause between two polls of an empty high-lane queue on Redis, in ms: what a
#: high-lane message may wait to be fetched, for 50 small Redis calls a second per idle
#: worker process.
HIGH_POLL_MS = 20


class _ThreadState(threading.local):
    """Per worker thread: its worker's priority queue and the priority of its message."""

    work_queue: PriorityQueue[Any] | None = None
    priority: int | None = None


_thread = _ThreadState()


def more_urgent_waiting() -> bool:
    """Whether a message more urgent than the one this worker thread runs is waiting for
    a thread of the same worker (False outside worker threads)."""
    queue, priority = _thread.work_queue, _thread.priority
    if queue is None or priority is None:
        return False
    try:
        # The heap's first item is the most urgent; reading it without the queue's lock
        # is a hint, which is all a decision to send a successor needs.
        first = queue.queue[0]
    except IndexError:
        return False
    return bool(first.priority < priority)


class Lanes(Middleware):
    """Narrows a worker to ``SPANE_LANES``, polls the high lane promptly on Redis, and
    records each worker thread's queue and current message priority.

    Args:
        settings: The lanes to serve, and the namespace of their queues.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        # The embedded worker is the only one its broker has: it must serve every lane.
        if not self.settings.lanes or self.settings.embedded:
            return
        left_out = {
            queue_name(self.settings, lane) for lane in LANES if lane not in self.settings.lanes
        }
        # Dramatiq consults this set (or, when it is empty, serves every queue) as it
        # starts a consumer per declared queue, its delay queue included.
        allowed = set(worker.consumer_whitelist or broker.get_declared_queues()) - left_out
        if not allowed:
            raise ConfigurationError(
                f"SPANE_LANES={','.join(self.settings.lanes)} leaves this worker no queue "
                f"of those given with --queues ({', '.join(sorted(worker.consumer_whitelist))})"
            )
        worker.consumer_whitelist = allowed

    def after_consumer_thread_boot(self, broker: Broker, thread: Any) -> None:
        if backlog.kind(broker) == "redis" and thread.queue_name == queue_name(
            self.settings, "high"
        ):
            thread.worker_timeout = min(thread.worker_timeout, HIGH_POLL_MS)

    def after_worker_thread_boot(self, broker: Broker, thread: Any) -> None:
        _thread.work_queue = thread.work_queue

    def before_process_message(self, broker: Broker, message: Any) -> None:
        actor = broker.actors.get(message.actor_name)
        _thread.priority = None if actor is None else actor.priority
