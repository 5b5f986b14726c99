"""The ``recplatform`` command line: one Typer app, one module per command group, imports only downward.

Each command's module is imported only when that command runs (:class:`recplatform.cli.lazy.LazyGroup`), and
heavy imports (Feast, torch, pandas) happen inside the commands that need them, so ``--help`` and
``features user`` start fast.
"""

from __future__ import annotations

import sys

import typer

from recplatform.cli.lazy import LazyGroup
from recplatform.cli.output import HELP_SETTINGS, get_console
from recplatform.config import SettingsError, get_settings

#: Every command and group, in the order --help lists them: name -> the module whose ``register`` adds it.
COMMANDS = {
    **dict.fromkeys(("up", "down", "status", "init", "sql"), "recplatform.cli.services"),
    **dict.fromkeys(("worker", "embed"), "recplatform.cli.workers"),
    **dict.fromkeys(("load", "materialize"), "recplatform.cli.data"),
    "features": "recplatform.cli.features",
    **dict.fromkeys(("train", "tune", "recommend", "new-for-you", "defaults", "similar", "explain"),
                    "recplatform.cli.retrieval"),
    "evaluate": "recplatform.cli.evaluate",
    "demo": "recplatform.cli.demo",
}


class RecplatformGroup(LazyGroup):
    """The root group: :data:`COMMANDS`, loaded on use."""

    lazy_commands = COMMANDS


app = typer.Typer(
    help="recplatform: feature-store-backed recommendations (Feast + LLM embeddings in Postgres/pgvector).\n\n"
    "Configuration comes from RECPLATFORM_* environment variables (see README); with none set, "
    "everything runs on embedded services under ./.recplatform.",
    no_args_is_help=True,
    add_completion=False,
    **{**HELP_SETTINGS, "cls": RecplatformGroup},
)


@app.callback()
def _root() -> None:
    # Typer makes a group (not a single command) of an app with a callback; the commands come from COMMANDS.
    pass


def _database_unreachable(exc: BaseException) -> bool:
    """psycopg's or SQLAlchemy's OperationalError, looked up only if something imported them (an exception of a
    module never imported cannot have been raised, and importing psycopg costs 0.2 s)."""
    return any(module is not None and isinstance(exc, module.OperationalError)
               for module in (sys.modules.get("psycopg"), sys.modules.get("sqlalchemy.exc")))


def _print_error(message: str) -> None:
    from rich.markup import escape  # deferred: rich (only to print an error)

    get_console().print(f"[red]{escape(message)}[/red]", highlight=False)


def main() -> None:
    """Entry point: a database that does not answer, or a setting that does not fit, is one clear line, not a
    traceback."""
    try:
        app()
    except SettingsError as exc:
        _print_error(str(exc))
        raise SystemExit(1) from None
    except Exception as exc:
        if not _database_unreachable(exc):
            raise
        from recplatform.db import unreachable_message  # deferred: psycopg (already imported: it raised)

        _print_error(unreachable_message(get_settings(), exc))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
