"""What ``sluice worker`` runs: Dramatiq's command line, logging JSON lines from every process it starts."""

from __future__ import annotations

import sys

from dramatiq.cli import main as dramatiq_main

from db.logs import configure_logging


def main() -> int:
    # Dramatiq leaves a root logger that already has a handler alone, in this process and in the
    # processes it forks; the handler writes to whatever stderr is, which a child points at its pipe.
    configure_logging("INFO")
    return int(dramatiq_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
