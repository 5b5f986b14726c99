"""The ``recplatform`` command line: services, schema, data, features, embeddings, retrieval, evaluation.

Heavy imports (Feast, torch) happen inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from recplatform.config import Settings, configure_environment, get_settings
from recplatform.logs import setup_logging

app = typer.Typer(
    help="recplatform: feature-store-backed recommendations (Feast + LLM embeddings in Postgres/pgvector).\n\n"
    "Configuration comes from RECPLATFORM_* environment variables (see README); with none set, "
    "everything runs on embedded services under ./.recplatform.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _settings() -> Settings:
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


def _print_status(settings: Settings) -> None:
    from recplatform import services

    rows = services.status(settings)
    print_table(
        "recplatform services",
        ["service", "managed", "state", "pid", "url", "detail"],
        [[r.name, "embedded" if r.managed else "external", "running" if r.running else "DOWN", r.pid, r.url, r.detail]
         for r in rows],
    )


# ----- services ---------------------------------------------------------------------------------
@app.command()
def up() -> None:
    """Start the embedded Postgres+pgvector and Redis under the state directory (idempotent).

    Services configured externally (RECPLATFORM_DATABASE_URL / RECPLATFORM_BROKER_URL) are left alone.
    """
    from recplatform import services

    settings = _settings()
    started = time.perf_counter()
    services.up(settings)
    console.print(f"[green]ready[/green] in {time.perf_counter() - started:.2f}s")
    _print_status(settings)


@app.command()
def down(purge: bool = typer.Option(False, "--purge", help="Also delete the state directory (all data).")) -> None:
    """Stop the processes that `up` started (by recorded pid); nothing else is touched."""
    from recplatform import services

    settings = _settings()
    stopped = services.down(settings)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if purge:
        services.remove_state(settings)
        console.print(f"removed {settings.state_dir}")


@app.command()
def status() -> None:
    """Show what runs, where, and the URLs to use (checks that external services answer)."""
    _print_status(_settings())


@app.command()
def init() -> None:
    """Migrate the `rec` schema to head and apply the Feast feature repository (idempotent)."""
    from recplatform import db

    settings = _settings()
    db.migrate(settings)
    console.print(f"schema rec at revision {db.current_revision(settings)}")
    try:
        from recplatform import features
    except ImportError:
        return
    features.apply(settings)
    console.print("feast repository applied")


# ----- commands added by the other modules are registered below ---------------------------------


# ----- features (Feast) -------------------------------------------------------------------------
features_app = typer.Typer(help="Show what Feast's online store serves for users or items.", no_args_is_help=True)
app.add_typer(features_app, name="features")


def _show_features(kind: str, ids: list[str], as_json: bool) -> None:
    from recplatform import features

    settings = _settings()
    rows = (features.online_user_features if kind == "user" else features.online_item_features)(ids, settings)
    if as_json:
        payload = rows[0] if len(rows) == 1 else rows
        typer.echo(json.dumps(payload, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
        return
    names = list(rows[0]) if rows else []
    cells = [[name, *(", ".join(r[name]) if isinstance(r[name], list) else r[name] for r in rows)]
             for name in names[1:]]
    print_table(f"Feast online features: {kind}", ["feature", *[str(r[names[0]]) for r in rows]], cells)
    unknown = [r[names[0]] for r in rows if all(v is None for k, v in r.items() if k != names[0])]
    if unknown:
        console.print(f"[yellow]not in the online store[/yellow]: {', '.join(unknown)} "
                      "(unknown id, or not written yet: `recplatform materialize`)")


@features_app.command("user")
def features_user(
    user_ids: list[str] = typer.Argument(..., metavar="ID...", help="One or more user ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (an object for one id, a list for several)."),
) -> None:
    """Demographics and activity of users as served by Feast's online store."""
    _show_features("user", user_ids, as_json)


@features_app.command("item")
def features_item(
    item_ids: list[str] = typer.Argument(..., metavar="ID...", help="One or more item ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (an object for one id, a list for several)."),
) -> None:
    """Metadata and popularity of items as served by Feast's online store."""
    _show_features("item", item_ids, as_json)


@app.command()
def materialize() -> None:
    """Full refresh of Feast's online store from the rec tables (every user and item, with their aggregates).

    Ingestion already writes what it changes to the online store; this catches up after anything was missed.
    """
    from recplatform import features

    settings = _settings()
    result = features.materialize(settings, progress=True)
    print_table("feast online store refreshed", ["feature view", "rows"],
                [[name, n] for name, n in sorted(result.rows.items())])
    console.print(f"{result.total} rows in {result.seconds:.2f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
