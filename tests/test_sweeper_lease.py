"""The sweeper lease: one worker sweeps at a time, and a stopping worker hands it over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spane import recovery
from spane.middleware import Sweeper
from spane.runtime import Runtime
from tests.conftest import embedded_settings


def test_a_stopping_worker_gives_the_sweeper_lease_up_at_once(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    first, second = Runtime(settings), Runtime(settings)
    try:
        # The first worker holds the lease far longer than the test runs.
        assert first.store.take_lease(recovery.SWEEPER, first.identity, 3600)
        first.ensure_worker()
        assert not second.store.take_lease(recovery.SWEEPER, second.identity, 60)
        first.close()  # the worker stops: its sweeper gives the lease up
        assert second.store.take_lease(recovery.SWEEPER, second.identity, 60)
        assert not first.store.take_lease(recovery.SWEEPER, first.identity, 60)
    finally:
        first.close()  # closing again is harmless
        second.close()


@pytest.mark.parametrize("sweep", [None, 0])
def test_a_sweeper_without_a_sweep_function_is_refused(sweep: Any) -> None:
    with pytest.raises(TypeError, match="Sweeper needs a sweep function"):
        Sweeper(sweep, lambda: None)
