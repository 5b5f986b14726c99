"""What the command line shows: the console, its one table style, recommendation tables, and failing cleanly."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from recplatform.config import Settings, configure_environment, get_settings
from recplatform.logs import setup_logging

console = Console()


def cli_settings() -> Settings:
    """The settings of this command, with logging set up and the environment exported for child processes."""
    settings = get_settings()
    setup_logging(settings.log_level)
    configure_environment(settings)
    return settings


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    """Render rows as a rich table (the one table style of the CLI)."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def print_recs(title: str, recs, as_json: bool = False) -> None:
    """Recommendations as the CLI's table (or JSON): rank, item_id, title, score, source."""
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in recs], indent=2))
        return
    print_table(title, ["rank", "item_id", "title", "score", "source"],
                [[r.rank, r.item_id, r.title, f"{r.score:.4f}", r.source] for r in recs])


def fail(exc: Exception | str) -> NoReturn:
    """Print the error in red and exit 1."""
    console.print(f"[red]{exc}[/red]")
    raise typer.Exit(1)
