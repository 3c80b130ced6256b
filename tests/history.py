"""Helpers shared by tests that read executions and their history, on either backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

import spane
from spane.statuses import NODE_TERMINAL
from spane.store.history import Event

T = TypeVar("T")

BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("workers", id="workers", marks=pytest.mark.integration),
]
ENDED = NODE_TERMINAL


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll ``probe`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def node_status(execution_id: str, node_id: str) -> str:
    return spane.get_execution(execution_id).nodes[node_id].status


def events(execution_id: str, node_id: str | None = None, kind: str | None = None) -> list[Event]:
    return [
        e
        for e in spane.history(execution_id)
        if (node_id is None or e.node_id == node_id) and (kind is None or e.kind == kind)
    ]
