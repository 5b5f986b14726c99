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
def up(worker: bool = typer.Option(False, "--worker", help="Also start one background Celery worker (with beat).")) -> None:
    """Start the embedded Postgres+pgvector and Redis under the state directory (idempotent).

    Services configured externally (RECPLATFORM_DATABASE_URL / RECPLATFORM_BROKER_URL) are left alone.
    """
    from recplatform import services

    settings = _settings()
    started = time.perf_counter()
    services.up(settings)
    if worker:
        from recplatform.workers.process import start_local_worker

        start_local_worker(settings)
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

# ----- embedding workers (recplatform.workers.commands): worker, embed ------------------------------
from recplatform.workers.commands import register as _register_worker_commands  # noqa: E402

_register_worker_commands(app)


# ----- load (datasets + ingestion) -------------------------------------------------------------
load_app = typer.Typer(
    help="Load a dataset: every row is validated, then everything is upserted in one transaction (all or nothing); "
    "changed rows are then written to Feast's online store and queued for embedding.",
    no_args_is_help=True,
)
app.add_typer(load_app, name="load")


def _load(read, label: str, online: bool, enqueue: bool) -> None:
    """Read a dataset, ingest it with progress bars, print counts and seconds; exit 1 on bad input."""
    from recplatform.ingest import ValidationError, ingest_dataset

    settings = _settings()
    started = time.perf_counter()
    try:
        with console.status(f"reading {label}"):
            dataset = read()
        read_seconds = time.perf_counter() - started
        console.print(f"read {label}: " + ", ".join(f"{n:,} {k}" for k, n in dataset.counts().items())
                      + f" in {read_seconds:.2f}s")
        result = ingest_dataset(dataset, settings=settings, online=online, enqueue=enqueue, progress=True)
    except (ValidationError, FileNotFoundError) as exc:
        console.print(f"[red]nothing loaded[/red]: {exc}")
        raise typer.Exit(1) from None
    total = time.perf_counter() - started
    counts = dataset.counts()
    print_table(f"loaded {dataset.name}", ["table", "input rows", "inserted", "updated", "new or changed content"], [
        ["users", f"{counts['users']:,}", f"{result.users_inserted:,}", f"{result.users_updated:,}",
         f"{len(result.changed_user_ids):,}"],
        ["items", f"{counts['items']:,}", f"{result.items_inserted:,}", f"{result.items_updated:,}",
         f"{len(result.changed_item_ids):,}"],
        ["interactions", f"{counts['interactions']:,}", f"{result.interactions_added:,}",
         f"{result.interactions_updated:,}", ""],
    ])
    timings = result.timings
    print_table("seconds", ["step", "seconds"], [
        ["read files / generate", f"{read_seconds:.2f}"],
        ["validate rows", f"{timings.get('validate', 0.0):.2f}"],
        ["database write (one transaction)", f"{timings.get('write', 0.0):.2f}"],
        ["feast online write", f"{timings['online']:.2f}" if "online" in timings else "skipped"],
        ["enqueue embeddings", f"{timings['enqueue']:.2f}" if "enqueue" in timings else "skipped"],
        ["total", f"{total:.2f}"],
    ])


@load_app.command("movielens")
def load_movielens_command(
    path: Path = typer.Argument(..., help="MovieLens directory: ml-100k raw layout (u.user, u.item, u.data) "
                                          "or ml-1m layout (users.dat, movies.dat, ratings.dat)."),
    online: bool = typer.Option(True, "--online/--no-online", help="Write changed rows to Feast's online store."),
    enqueue: bool = typer.Option(True, "--enqueue/--no-enqueue", help="Queue embedding tasks for changed rows."),
) -> None:
    """Load MovieLens (ml-100k or ml-1m) from GroupLens' files; re-loading the same files changes nothing."""
    from recplatform.datasets import load_movielens

    _load(lambda: load_movielens(path), str(path), online, enqueue)


@load_app.command("synthetic")
def load_synthetic_command(
    users: int = typer.Option(1000, "--users", min=1, help="Number of users."),
    items: int = typer.Option(500, "--items", min=2, help="Number of items."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    online: bool = typer.Option(True, "--online/--no-online", help="Write changed rows to Feast's online store."),
    enqueue: bool = typer.Option(True, "--enqueue/--no-enqueue", help="Queue embedding tasks for changed rows."),
) -> None:
    """Generate and load a synthetic dataset whose users' genre tastes follow their demographics."""
    from recplatform.datasets import generate_synthetic

    _load(lambda: generate_synthetic(users, items, seed=seed), f"synthetic {users}x{items} seed {seed}",
          online, enqueue)


# ----- features (Feast) -------------------------------------------------------------------------
features_app = typer.Typer(help="Show what Feast's online store serves for users or items.", no_args_is_help=True)
app.add_typer(features_app, name="features")


def _show_features(kind: str, ids: list[str], as_json: bool) -> None:
    from recplatform import features

    settings = _settings()
    try:
        rows = (features.online_user_features if kind == "user" else features.online_item_features)(ids, settings)
    except RuntimeError as exc:  # repository not applied yet
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
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


@features_app.command("serve")
def features_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1 unless you mean it)."),
    port: int = typer.Option(6566, "--port", help="HTTP port."),
) -> None:
    """Run Feast's HTTP feature server on this repository, connected to the configured database."""
    import os
    import shutil
    import sys

    settings = _settings()  # exports the RECPLATFORM_FEAST_PG_* values that feature_store.yaml expands
    beside = Path(sys.executable).parent / "feast"  # the feast of this environment, even when not on PATH
    feast = str(beside) if beside.exists() else shutil.which("feast")
    if feast is None:
        console.print("[red]the feast command is not installed[/red] (pip install 'feast[postgres]')")
        raise typer.Exit(1)
    os.execv(feast, [feast, "-c", str(settings.feature_repo), "serve", "--host", host, "--port", str(port)])


@app.command()
def materialize() -> None:
    """Full refresh of Feast's online store from the rec tables (every user and item, with their aggregates).

    Ingestion already writes what it changes to the online store; this catches up after anything was missed.
    """
    from recplatform import features

    settings = _settings()
    try:
        result = features.materialize(settings, progress=True)
    except RuntimeError as exc:  # repository not applied yet
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    print_table("feast online store refreshed", ["feature view", "rows"],
                [[name, n] for name, n in sorted(result.rows.items())])
    console.print(f"{result.total} rows in {result.seconds:.2f}s")


# ----- retrieval (recplatform.retrieval.commands): train, recommend, similar, explain ------------
from recplatform.retrieval.commands import register as _register_retrieval_commands  # noqa: E402

_register_retrieval_commands(app)


# ----- evaluate (evaluation engineer) -----------------------------------------------------------
from recplatform.evaluation.command import evaluate_command  # noqa: E402

app.command("evaluate")(evaluate_command)


@app.command()
def demo(
    users: int = typer.Option(1000, "--users", min=10, help="Synthetic users."),
    items: int = typer.Option(500, "--items", min=10, help="Synthetic items."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the synthetic data."),
    worker: bool = typer.Option(False, "--worker", help="Embed through a background Celery worker over the "
                                                        "embedded Redis instead of in this process."),
) -> None:
    """The whole platform once: services, schema, Feast, data, embeddings, training, recommendations.

    Recommends for a warm user, for a user stored a moment ago with demographics only, and for a person who is
    not stored at all. Idempotent: rerun it on the same state directory. `recplatform down` stops the services.
    """
    from recplatform import demo as demo_module

    settings = _settings()
    started = time.perf_counter()
    options = demo_module.DemoOptions(users=users, items=items, seed=seed, worker=worker)
    steps = demo_module.run(settings, options, console, print_table)
    print_table("demo steps", ["step", "seconds"],
                [[name, f"{seconds:.2f}"] for name, seconds in steps.seconds.items()]
                + [["total", f"{time.perf_counter() - started:.2f}"]])
    console.print("[green]done[/green]: the services keep running (`recplatform status`, `recplatform down`)")


def main() -> None:
    """Entry point: a database that does not answer is one clear line, not a traceback."""
    import psycopg
    import sqlalchemy.exc

    try:
        app()
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        settings = get_settings()
        hint = "start it with `recplatform up`" if settings.uses_embedded_postgres else "check RECPLATFORM_DATABASE_URL"
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        console.print(f"[red]cannot reach Postgres[/red] at {settings.postgres_url}: {reason}\n{hint}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
