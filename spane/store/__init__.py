"""Persistence: one ``Store`` object behind which all SQL lives."""

from __future__ import annotations

from .engine import make_engine
from .lanes import LaneLoad
from .operations import WorkerInfo, WorkState
from .records import Claim, Dispatch, Execution, ExecutionSummary, NodeState, Outcome
from .store import Store

__all__ = [
    "Claim",
    "Dispatch",
    "Execution",
    "ExecutionSummary",
    "LaneLoad",
    "NodeState",
    "Outcome",
    "Store",
    "WorkState",
    "WorkerInfo",
    "make_engine",
]
