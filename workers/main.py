"""What ``sluice worker`` runs: Dramatiq's command line, logging JSON lines from every process it
starts and, with a metrics port, pointing every one of them at one folder of metrics files."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from dramatiq.cli import main as dramatiq_main

from db.logs import configure_logging
from db.settings import Settings

FOLDERS = Path(tempfile.gettempdir()) / "sluice-worker-metrics"
"""One folder of prometheus_client multiprocess files per ``sluice worker``, named by its main process id."""


def metrics_folder() -> Path:
    """This ``sluice worker``'s folder: the one ``main`` set for every process it starts or, when
    Dramatiq was started some other way, the one named after this process's parent (its main process)."""
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or FOLDERS / str(os.getppid()))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def main() -> int:
    # Dramatiq leaves a root logger that already has a handler alone, in this process and in the
    # processes it forks; the handler writes to whatever stderr is, which a child points at its pipe.
    configure_logging("INFO")
    if Settings.from_env().worker_metrics_port:
        # prometheus_client picks where its values live when first imported, in whichever process
        # and module that happens: the folder must be in the environment every process inherits.
        folder = str(FOLDERS / str(os.getpid()))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["dramatiq_prom_db"] = folder
    return int(dramatiq_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
