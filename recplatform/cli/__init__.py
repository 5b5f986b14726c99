"""The ``recplatform`` command line: one Typer app, one module per command group, imports only downward.

Heavy imports (Feast, torch, pandas) happen inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import sys

import psycopg
import typer
from rich.markup import escape

from recplatform.cli import data, demo, evaluate, retrieval, services, workers
from recplatform.cli.output import HELP_SETTINGS, console
from recplatform.config import get_settings
from recplatform.db import unreachable_message

app = typer.Typer(
    help="recplatform: feature-store-backed recommendations (Feast + LLM embeddings in Postgres/pgvector).\n\n"
    "Configuration comes from RECPLATFORM_* environment variables (see README); with none set, "
    "everything runs on embedded services under ./.recplatform.",
    no_args_is_help=True,
    add_completion=False,
    **HELP_SETTINGS,
)
for _group in (services, workers, data, retrieval, evaluate, demo):
    _group.register(app)


def _database_unreachable(exc: BaseException) -> bool:
    """psycopg's or SQLAlchemy's OperationalError; SQLAlchemy is looked up only if something imported it (an
    import costs 0.15 s, and an exception of a module never imported cannot have been raised)."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return isinstance(exc, psycopg.OperationalError) or (
        sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.OperationalError))


def main() -> None:
    """Entry point: a database that does not answer is one clear line, not a traceback."""
    try:
        app()
    except Exception as exc:
        if not _database_unreachable(exc):
            raise
        console.print(f"[red]{escape(unreachable_message(get_settings(), exc))}[/red]", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
