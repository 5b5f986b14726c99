"""Logging set-up shared by the CLI and workers: rich output on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    if logging.getLogger().handlers:
        logging.getLogger().setLevel(level.upper())
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler  # deferred: rich's traceback machinery, only on a terminal

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in ("alembic.runtime.migration", "alembic.runtime.plugins", "httpx", "urllib3", "feast", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
