"""The folder of a run's metric files, and which tenants get their own label.

Each worker process records into files of one folder per run (``prometheus_client``'s
multiprocess mode); the metrics endpoint (``spane.monitoring``) reads them all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..settings import Settings

#: prometheus_client reads this variable when it is first imported.
FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def run_folder(settings: Settings) -> Path:
    """The metric folder of this ``dramatiq`` run: named after its main process, which
    is the parent of every worker process and of the process serving the metrics."""
    return Path(settings.metrics_dir) / str(os.getppid())


def open_folder(folder: Path) -> None:
    """Create ``folder`` and make it where this process keeps its metric values.

    Must run before anything imports ``prometheus_client``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[FOLDER_VARIABLE] = str(folder)


def remove_stale(folder: Path) -> None:
    """Delete what earlier runs left: folders whose main process is gone, and in this
    run's folder the files of processes that are gone (a restarted container whose
    ``dramatiq`` has the same pid as before, with a kept temporary folder).

    Called when the run starts serving, while every worker process of the run is alive.
    """
    if folder.parent.is_dir():
        for child in folder.parent.iterdir():
            if child.is_dir() and child.name.isdigit() and not _alive(int(child.name)):
                shutil.rmtree(child, ignore_errors=True)
    for file in folder.glob("*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TenantLabels:
    """Maps tenants to a bounded set of label values.

    Args:
        tenants: Tenants labelled by name; ``("*",)`` labels every tenant by name (for a
            small, fixed set of tenants); empty labels every tenant ``all``. Tenants
            not listed are ``other``.
    """

    def __init__(self, tenants: Iterable[str]) -> None:
        self.names = frozenset(tenants)
        self.every = "*" in self.names

    def __call__(self, tenant: str) -> str:
        if self.every:
            return tenant
        if not self.names:
            return "all"
        return tenant if tenant in self.names else "other"
