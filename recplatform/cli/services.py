"""``recplatform up``, ``down``, ``status``, ``init`` and ``sql``: the embedded services, the schema, a SQL shell."""

from __future__ import annotations

import json
import os
import subprocess
import time

import typer
from rich.table import Table

from recplatform import db, features, replica, services
from recplatform.cli.output import cli_settings, console
from recplatform.config import Settings, redact_url
from recplatform.connections import connection_strings, reader_psql
from recplatform.features.server import start_feature_server
from recplatform.workers.process import start_local_worker, wait_for_beat


def _rows(settings: Settings) -> list[services.ServiceStatus]:
    return services.status(settings) + replica.replica_status(settings)


def print_status(settings: Settings) -> None:
    """The services table (long URLs fold, never cut), then the connection strings on lines of their own."""
    table = Table(title="recplatform services")
    for column in ("service", "managed", "state", "pid"):
        table.add_column(column, no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("detail", overflow="fold")
    for r in _rows(settings):
        table.add_row(r.name, "embedded" if r.managed else "external", "running" if r.running else "DOWN",
                      "" if r.pid is None else str(r.pid), r.url, r.detail)
    console.print(table)
    strings = connection_strings(settings)
    typer.echo("read-only SQL (rec_reader; `recplatform sql`, or any libpq tool):")
    typer.echo(f"  socket: {strings['reader']}")
    if "reader_tcp" in strings:
        typer.echo(f"  tcp:    {strings['reader_tcp']}")
    typer.echo("  (password: `recplatform status --json --show-secrets`; docs/operations.md)")


def up(worker: bool = typer.Option(True, "--worker/--no-worker",
                                   help="Also start one background Celery worker with the single beat."),
       feature_server: bool = typer.Option(True, "--feature-server/--no-feature-server",
                                           help="Also start Feast's feature server on 127.0.0.1 "
                                                "(RECPLATFORM_FEATURE_SERVER_PORT)."),
       with_replica: bool = typer.Option(False, "--replica", help="Also start a streaming hot standby of the "
                                         "embedded Postgres; retrieval reads go to it.")) -> None:
    """Start the embedded Postgres+pgvector and Redis, a Celery worker with beat and Feast's feature server.

    Idempotent. Services configured externally (RECPLATFORM_DATABASE_URL / RECPLATFORM_BROKER_URL) are left alone.
    """
    settings = cli_settings()
    started = time.perf_counter()
    services.up(settings)
    if with_replica:
        replica.start_replica(settings)
    if feature_server:
        start_feature_server(settings, wait=False)  # imports Feast in the background while the worker starts
    if worker:
        start_local_worker(settings)
    if feature_server:
        try:
            start_feature_server(settings, wait=True)
        except RuntimeError as exc:
            console.print(f"[red]the Feast feature server did not start[/red]: {exc}\n"
                          "online reads and writes fall back to in-process Feast")
    if worker and wait_for_beat(settings) is None:
        console.print(f"[red]the worker's beat did not start[/red]: see {settings.state_dir / 'logs' / 'worker.log'}")
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


def status(as_json: bool = typer.Option(False, "--json", help="Print every service's state and the connection "
                                        "strings as JSON."),
           show_secrets: bool = typer.Option(False, "--show-secrets", help="Put the passwords into the connection "
                                             "strings (otherwise they name the password file, or are redacted).")
           ) -> None:
    """Show what runs, where, and the connection strings to use (checks that external services answer)."""
    settings = cli_settings()
    if not as_json:
        print_status(settings)
        return
    payload = {
        "state_dir": str(settings.state_dir),
        "services": {r.name: {"state": "running" if r.running else "down", "managed": r.managed, "pid": r.pid,
                              "url": r.url, "detail": r.detail} for r in _rows(settings)},
        "connections": connection_strings(settings, show_secrets=show_secrets),
        "broker_url": redact_url(settings.celery_broker_url),
        "feature_server_url": settings.feature_server_url,
    }
    typer.echo(json.dumps(payload, indent=2))


def sql(command: str | None = typer.Option(None, "--command", "-c", help="Run one statement and exit "
                                              "(otherwise an interactive session)."),
        ) -> None:
    """A read-only psql session as rec_reader (the analytics role): `recplatform sql -c "SELECT 1"`."""
    settings = cli_settings()
    url, env = reader_psql(settings)
    argv = [services.pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", url]
    if command is not None:
        argv += ["-c", command]
    result = subprocess.run(argv, env={**os.environ, **env}, check=False)
    raise typer.Exit(result.returncode)


def init() -> None:
    """Migrate the `rec` schema to head and apply the Feast feature repository (idempotent)."""
    settings = cli_settings()
    db.migrate(settings)
    console.print(f"schema rec at revision {db.current_revision(settings)}")
    features.apply(settings)
    console.print("feast repository applied")


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down``, ``status``, ``init`` and ``sql`` to the app."""
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(init)
    app.command()(sql)
