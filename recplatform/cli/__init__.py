"""The ``recplatform`` command line: one Typer app, one module per command group, imports only downward.

Heavy imports (Feast, torch, pandas) happen inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

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


def main() -> None:
    """Entry point: a database that does not answer is one clear line, not a traceback."""
    import sqlalchemy.exc  # deferred: sqlalchemy (only its exception type is needed)

    try:
        app()
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        console.print(f"[red]{escape(unreachable_message(get_settings(), exc))}[/red]", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
