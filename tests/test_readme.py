"""The README's walkthroughs, run as written: shell commands as separate ``spane``
processes, and the Python snippet, on the embedded default in a fresh folder.

Each ``spane`` command is a new process on the same SQLite database, so each one picks
up work that an earlier one left queued; this is where a second connection opened while
holding the write lock used to wait for the busy timeout and fail with
``database is locked``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def snippet(after: str, language: str) -> str:
    """The first fenced ``language`` block of the README after the line ``after``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def fresh_folder(tmp_path: Path) -> dict[str, str]:
    """Copy the examples into ``tmp_path``; return an environment with no SPANE_* set and
    this interpreter's ``spane`` first on PATH."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANE_", "EXAMPLE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(tmp_path)
    return env


def test_cli_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = snippet("Try pause and replay from the CLI:", "sh")
    assert "resume $ID --wait" in script and "replay $ID" in script and "wait $BIG" in script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=fresh_folder(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "locked" not in done.stderr
    assert done.stdout.count("✔ completed in") == 3  # resume, replay, wait
    assert "held for review" in done.stdout  # the 250 order ran its timer in the last process
    assert "execution_completed" in done.stdout  # `spane history` after the resume


def test_python_walkthrough_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "walkthrough.py").write_text(
        snippet("The same in Python", "python"), encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "walkthrough.py"],
        cwd=tmp_path,
        env=fresh_folder(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "paused"
    assert "held for review" in lines[1]
