"""Spane: durable DAG workflows on Dramatiq, SQL and blob storage."""

from __future__ import annotations

from . import builtins as _builtins  # noqa: F401  (registers the built-in node types)
from .api import (
    cancel,
    configure,
    enqueue_workflow,
    get_execution,
    list_executions,
    node_type,
    register_workflow,
    run,
    wait,
)
from .context import Defer, NodeContext, Route
from .control import (
    breakers,
    dead_letters,
    history,
    pause,
    replay,
    rerun,
    reset_breaker,
    resume,
    retry_dead_letter,
)
from .definitions import Node, Workflow
from .errors import (
    BlobError,
    ConfigurationError,
    DefinitionError,
    InputError,
    InvalidTransition,
    NodeFailed,
    PayloadTooLarge,
    Problem,
    SpaneError,
    UnknownBreaker,
    UnknownExecution,
    UnknownSchedule,
    UnknownWorkflow,
    WaitTimeout,
)
from .lanes import Lane, lanes
from .middleware.circuit_breaker import BreakerStatus
from .producer import send_start
from .protection import Breaker, RateLimit
from .registry import RetryPolicy
from .retention import Collected
from .retention import collect as collect_garbage
from .schedules import ScheduleInfo
from .starting import (
    enqueue_many,
    list_schedules,
    pause_schedule,
    resume_schedule,
    schedule,
    signal,
    trigger_schedule,
    unschedule,
)
from .store import Execution, ExecutionSummary, LaneLoad, NodeState, WorkerInfo
from .version import __version__ as __version__
from .workers import workers

__all__ = [
    # Node types
    "NodeContext",
    "NodeFailed",
    "RetryPolicy",
    "Route",
    "node_type",
    # Workflows
    "Node",
    "Workflow",
    "register_workflow",
    # Executions
    "Execution",
    "ExecutionSummary",
    "NodeState",
    "cancel",
    "enqueue_workflow",
    "get_execution",
    "list_executions",
    "run",
    "wait",
    # Control
    "pause",
    "replay",
    "rerun",
    "resume",
    "history",
    "dead_letters",
    "retry_dead_letter",
    "collect_garbage",
    "Collected",
    # Starting work
    "enqueue_many",
    "send_start",
    "schedule",
    "unschedule",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
    "list_schedules",
    "ScheduleInfo",
    "signal",
    # Protection of called services
    "Breaker",
    "BreakerStatus",
    "Defer",
    "RateLimit",
    "breakers",
    "reset_breaker",
    # Setup
    "configure",
    # Operations
    "WorkerInfo",
    "workers",
    "Lane",
    "LaneLoad",
    "lanes",
    # Errors
    "BlobError",
    "ConfigurationError",
    "DefinitionError",
    "InputError",
    "InvalidTransition",
    "PayloadTooLarge",
    "Problem",
    "SpaneError",
    "UnknownBreaker",
    "UnknownExecution",
    "UnknownSchedule",
    "UnknownWorkflow",
    "WaitTimeout",
]


def __getattr__(name: str) -> object:
    # ``spane.actors.start_workflow`` after a plain ``import spane``; imported on first
    # use, because under the ``dramatiq`` command importing it starts a worker.
    if name == "actors":
        import importlib

        return importlib.import_module(".actors", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
