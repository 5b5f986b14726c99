"""``recplatform load`` and ``materialize``: datasets into the tables, and Feast's online store refreshed."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from recplatform import features
from recplatform.cli.output import HELP_SETTINGS, cli_settings, console, fail, print_table

load_app = typer.Typer(
    help="Load a dataset: every row is validated, then everything is upserted in one transaction (all or nothing); "
    "changed rows are then written to Feast's online store and queued for embedding.",
    no_args_is_help=True,
    **HELP_SETTINGS,
)


def _load(read, label: str, online: bool, enqueue: bool, add: bool = False) -> None:
    """Read a dataset, ingest it with progress bars, print counts and seconds; exit 1 on bad input or when the
    database already holds another catalogue (unless ``add``)."""
    from recplatform.ingest import ValidationError  # deferred: pandas (ingestion)
    from recplatform.ingest.catalogues import MixedCataloguesError  # deferred: pandas (ingestion)
    from recplatform.publish import ingest_and_publish  # deferred: pandas (ingestion)

    settings = cli_settings()
    started = time.perf_counter()
    try:
        with console.status(f"reading {label}"):
            dataset = read()
        read_seconds = time.perf_counter() - started
        console.print(f"read {label}: " + ", ".join(f"{n:,} {k}" for k, n in dataset.counts().items())
                      + f" in {read_seconds:.2f}s")
        result = ingest_and_publish(dataset=dataset, settings=settings, online=online, enqueue=enqueue, progress=True,
                                    allow_mixed=add)
    except (ValidationError, FileNotFoundError, MixedCataloguesError) as exc:
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
        ["database write (one transaction, with the task outbox)", f"{timings.get('write', 0.0):.2f}"],
        ["feast online write", f"{timings['online']:.2f}" if "online" in timings else "skipped"],
        ["total", f"{total:.2f}"],
    ])
    if result.messages_queued:
        console.print(f"queued {result.messages_queued} embedding and taste messages in the task outbox; "
                      "a worker sends them to the broker (`recplatform status` shows what waits)")
    elif enqueue and settings.enqueue_on_ingest:
        console.print("nothing to embed: no new or changed content")


@load_app.command("movielens")
def load_movielens_command(
    path: Path = typer.Argument(..., help="MovieLens directory, layout detected: ml-100k (u.user, u.item, u.data), "
                                          "ml-1m (users.dat, movies.dat, ratings.dat), or today's CSV releases "
                                          "ml-latest-small / ml-latest / ml-25m / ml-32m (ratings.csv, movies.csv, "
                                          "tags.csv, links.csv; no demographics: cold users get popularity)."),
    online: bool = typer.Option(True, "--online/--no-online", help="Write changed rows to Feast's online store."),
    enqueue: bool = typer.Option(True, "--enqueue/--no-enqueue",
                                 help="Queue embedding tasks for changed rows (task outbox)."),
    allow_empty: bool = typer.Option(False, "--allow-empty",
                                     help="Load even when the ratings file has no rating (refused otherwise)."),
    add: bool = typer.Option(False, "--add", help="Load beside another catalogue already in the database (refused "
                                                  "otherwise: lists would mix both; `recplatform down --purge` "
                                                  "starts afresh)."),
) -> None:
    """Load MovieLens from GroupLens' files (ml-100k, ml-1m or the CSV releases); re-loading changes nothing."""
    from recplatform.datasets import load_movielens  # deferred: pandas

    _load(lambda: load_movielens(path, allow_empty=allow_empty), str(path), online, enqueue, add)


@load_app.command("synthetic")
def load_synthetic_command(
    users: int = typer.Option(1000, "--users", min=1, help="Number of users (1 to 1,000,000)."),
    items: int = typer.Option(500, "--items", min=2, help="Number of items (2 to 100,000)."),
    seed: int = typer.Option(0, "--seed", help="Random seed, 0 to 2**32-1 (same seed, same data)."),
    online: bool = typer.Option(True, "--online/--no-online", help="Write changed rows to Feast's online store."),
    enqueue: bool = typer.Option(True, "--enqueue/--no-enqueue",
                                 help="Queue embedding tasks for changed rows (task outbox)."),
    add: bool = typer.Option(False, "--add", help="Load beside another catalogue already in the database (refused "
                                                  "otherwise: lists would mix both; `recplatform down --purge` "
                                                  "starts afresh)."),
) -> None:
    """Generate and load a synthetic dataset whose users' genre tastes follow their demographics."""
    from recplatform.datasets import generate_synthetic  # deferred: pandas

    _load(lambda: generate_synthetic(users, items, seed=seed), f"synthetic {users}x{items} seed {seed}",
          online, enqueue, add)


def materialize() -> None:
    """Full refresh of Feast's online store from the rec tables (every user and item, with their aggregates).

    Ingestion already writes what it changes to the online store; this catches up after anything was missed.
    """
    settings = cli_settings()
    try:
        result = features.materialize(settings, progress=True)
    except RuntimeError as exc:  # repository not applied yet
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    print_table("feast online store refreshed", ["feature view", "rows"],
                [[name, n] for name, n in sorted(result.rows.items())])
    console.print(f"{result.total} rows in {result.seconds:.2f}s")


def register(app: typer.Typer) -> None:
    """Add ``load`` and ``materialize`` to the app."""
    app.add_typer(load_app, name="load")
    app.command()(materialize)
