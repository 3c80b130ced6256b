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
from .context import NodeContext, Route
from .control import (
    dead_letters,
    history,
    pause,
    replay,
    rerun,
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
    UnknownExecution,
    UnknownWorkflow,
    WaitTimeout,
)
from .registry import RetryPolicy
from .retention import Collected
from .retention import collect as collect_garbage
from .store import Execution, ExecutionSummary, NodeState, WorkerInfo
from .workers import workers

__version__ = "0.1.0"

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
    # Setup
    "configure",
    # Operations
    "WorkerInfo",
    "workers",
    # Errors
    "BlobError",
    "ConfigurationError",
    "DefinitionError",
    "InputError",
    "InvalidTransition",
    "PayloadTooLarge",
    "Problem",
    "SpaneError",
    "UnknownExecution",
    "UnknownWorkflow",
    "WaitTimeout",
]
