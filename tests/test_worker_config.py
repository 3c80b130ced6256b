"""``dramatiq spane.actors`` refuses to start a worker that could never receive work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_worker_without_a_broker_url_exits_with_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "spane.actors", "--processes", "1", "--threads", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "dramatiq spane.actors needs SPANE_BROKER_URL" in result.stdout + result.stderr
    assert not (tmp_path / ".spane").exists(), "nothing is written before the refusal"


def test_worker_with_an_unknown_lane_exits_listing_the_lanes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANE_")}
    env.update(SPANE_BROKER_URL="redis://127.0.0.1:6379/0", SPANE_LANES="high,urgent")
    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "spane.actors", "--processes", "1", "--threads", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    expected = "SPANE_LANES must list lanes among high, default, low, got 'urgent'"
    assert expected in result.stdout + result.stderr
