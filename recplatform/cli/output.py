"""What the command line shows: the console, its one table style, recommendation tables, and failing cleanly.

Rich is imported on first use (``output.console``, a table, an error): a command that prints JSON through the
feature server (``features user ID --json``) never loads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, NoReturn

import typer
from typer.core import TyperGroup

from recplatform.config import Settings, configure_environment, get_settings
from recplatform.logs import setup_logging

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rich.console import Console
    from typer._click import Context, HelpFormatter

_console: Console | None = None


def get_console() -> Console:
    """The CLI's one rich console, made on first use."""
    global _console
    if _console is None:
        from rich.console import Console  # deferred: rich (JSON output needs none of it)

        _console = Console()
    return _console


def __getattr__(name: str) -> object:
    """``console`` (``from recplatform.cli.output import console``): :func:`get_console`'s console."""
    if name == "console":
        return get_console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



class WrappingGroup(TyperGroup):
    """A command group whose list of commands wraps each one's first sentence instead of cutting it ("...")."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


#: How every Typer app of the CLI formats --help: click's plain formatter, which wraps long text (rich panels cut
#: options and help at 80 columns in a pipe) and shows no type for flags, up to 120 columns on wide terminals.
HELP_SETTINGS = {"rich_markup_mode": None, "cls": WrappingGroup, "context_settings": {"max_content_width": 120}}


def cli_settings() -> Settings:
    """The settings of this command, with logging set up and the environment exported for child processes."""
    settings = get_settings()
    setup_logging(settings.log_level)
    configure_environment(settings)
    return settings


def print_table(title: str, columns: list[str], rows: list[list[object]], whole: Sequence[str] = ()) -> None:
    """Render rows as a rich table (the one table style of the CLI). Nothing is cut at the terminal's width: text
    wraps (a long word folds), and the ``whole`` columns (figures) are never wrapped."""
    from rich.table import Table  # deferred: rich (JSON output needs none of it)

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, no_wrap=column in whole, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    get_console().print(table)


def print_recs(title: str, recs, as_json: bool = False) -> None:
    """Recommendations as the CLI's table (or JSON): rank, item_id, title, score, source."""
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in recs], indent=2))
        return
    print_table(title, ["rank", "item_id", "title", "score", "source"],
                [[r.rank, r.item_id, r.title, f"{r.score:.4f}", r.source] for r in recs])


def error_object(exc: Exception | str) -> dict:
    """An error as JSON callers read it: ``{"error": {"type", "message", and the id or argument it names}}``."""
    error: dict = {"type": type(exc).__name__ if isinstance(exc, Exception) else "Error", "message": str(exc)}
    for name in ("user_id", "item_id", "argument", "ids"):
        if getattr(exc, name, None) is not None:
            error[name] = getattr(exc, name)
    return {"error": error}


def fail(exc: Exception | str, as_json: bool = False) -> NoReturn:
    """Print the error (in red, or as a JSON error object on stdout with ``as_json``) and exit 1."""
    if as_json:
        typer.echo(json.dumps(error_object(exc), indent=2, default=str))
    else:
        from rich.markup import escape  # deferred: rich (JSON output needs none of it)

        get_console().print(f"[red]{escape(str(exc))}[/red]")
    raise typer.Exit(1)
