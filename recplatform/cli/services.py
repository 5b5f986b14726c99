"""``recplatform up``, ``down``, ``status`` and ``init``: the embedded services and the schema."""

from __future__ import annotations

import time

import typer

from recplatform import db, features, replica, services
from recplatform.cli.output import cli_settings, console, print_table
from recplatform.config import Settings
from recplatform.workers.process import start_local_worker


def print_status(settings: Settings) -> None:
    """The services table: what runs, managed or external, and where."""
    rows = services.status(settings) + replica.replica_status(settings)
    print_table(
        "recplatform services",
        ["service", "managed", "state", "pid", "url", "detail"],
        [[r.name, "embedded" if r.managed else "external", "running" if r.running else "DOWN", r.pid, r.url, r.detail]
         for r in rows],
    )


def up(worker: bool = typer.Option(False, "--worker", help="Also start one background Celery worker (with beat)."),
       with_replica: bool = typer.Option(False, "--replica", help="Also start a streaming hot standby of the "
                                         "embedded Postgres; retrieval reads go to it.")) -> None:
    """Start the embedded Postgres+pgvector and Redis under the state directory (idempotent).

    Services configured externally (RECPLATFORM_DATABASE_URL / RECPLATFORM_BROKER_URL) are left alone.
    """
    settings = cli_settings()
    started = time.perf_counter()
    services.up(settings)
    if with_replica:
        replica.start_replica(settings)
    if worker:
        start_local_worker(settings)
    console.print(f"[green]ready[/green] in {time.perf_counter() - started:.2f}s")
    print_status(settings)


def down(purge: bool = typer.Option(False, "--purge", help="Also delete the state directory (all data).")) -> None:
    """Stop the processes that `up` started (by recorded pid); nothing else is touched."""
    settings = cli_settings()
    stopped = services.down(settings)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if purge:
        services.remove_state(settings)
        console.print(f"removed {settings.state_dir}")


def status() -> None:
    """Show what runs, where, and the URLs to use (checks that external services answer)."""
    print_status(cli_settings())


def init() -> None:
    """Migrate the `rec` schema to head and apply the Feast feature repository (idempotent)."""
    settings = cli_settings()
    db.migrate(settings)
    console.print(f"schema rec at revision {db.current_revision(settings)}")
    features.apply(settings)
    console.print("feast repository applied")


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down``, ``status`` and ``init`` to the app."""
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(init)
