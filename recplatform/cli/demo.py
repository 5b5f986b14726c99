"""``recplatform demo``: the whole platform once, end to end, on the embedded defaults.

Services up, schema migrated, Feast applied, a synthetic dataset loaded and read back through Feast, everything
embedded with the real model, the collaborative space trained, then recommendations for a warm user, for a
user who arrived a minute ago (stored, no history) and for a person who is not stored at all. Every step is
idempotent, so the demo can be rerun on the same state directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import typer
from rich.markup import escape

from recplatform import db, features, services
from recplatform.cli.output import cli_settings, console, print_recs, print_table
from recplatform.cli.workers import embed_local, wait_until_full
from recplatform.client import RecClient
from recplatform.config import Settings
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.features.server import start_feature_server
from recplatform.retrieval import training
from recplatform.workers.process import start_local_worker, wait_for_beat

NEW_USER = {"user_id": "demo-newcomer", "age": 27, "gender": "F", "occupation": "engineer", "zip_code": "94110"}
NEW_PERSON = {"age": 63, "gender": "M", "occupation": "retired", "zip_code": "33139"}
ANALYST_SQL = "SELECT rank, item_id, title, round(score::numeric, 4) AS score, source FROM rec.recommend(%s, 5)"


@dataclass
class DemoOptions:
    users: int = 1000
    items: int = 500
    seed: int = 0
    worker: bool = False  # embed through the Celery worker instead of in this process (it is started anyway at the end)
    k: int = 5


@dataclass
class Steps:
    """Seconds per step, printed at the end."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        console.rule(f"[bold]{name}")
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started


def run(settings: Settings, options: DemoOptions) -> Steps:
    """Run every step, printing what each one did; returns the seconds per step."""
    from recplatform.datasets import generate_synthetic  # deferred: pandas
    from recplatform.publish import ingest_and_publish  # deferred: pandas

    steps = Steps()
    with steps.step("1. services"):
        services.up(settings)
        if options.worker:
            start_local_worker(settings)
        print_table("services", ["service", "state", "url"],
              [[s.name, "running" if s.running else "DOWN", s.url] for s in services.status(settings)])

    with steps.step("2. schema and feature repository"):
        db.migrate(settings)
        applied = features.apply(settings)
        console.print(f"schema rec at revision {db.current_revision(settings)}; feast apply: "
                      f"{len(applied.feature_views)} feature views, {len(applied.entities)} entities "
                      f"in {applied.seconds:.2f}s")
        try:  # after apply: a server starting beside `feast apply` races it creating the SQL registry's tables
            start_feature_server(settings, wait=True)
            console.print(f"Feast feature server on {settings.feature_server_url}")
        except RuntimeError as exc:
            console.print(f"[yellow]the Feast feature server did not start[/yellow] ({exc}); Feast runs in-process")

    with steps.step("3. load a synthetic dataset"):
        dataset = generate_synthetic(options.users, options.items, seed=options.seed)
        result = ingest_and_publish(dataset=dataset, settings=settings, online=True, enqueue=options.worker,
                                    progress=True)
        counts = dataset.counts()
        print_table(f"loaded {dataset.name}", ["table", "rows", "inserted", "updated"], [
            ["users", counts["users"], result.users_inserted, result.users_updated],
            ["items", counts["items"], result.items_inserted, result.items_updated],
            ["interactions", counts["interactions"], result.interactions_added, result.interactions_updated],
        ])

    warm_user = str(dataset.users["user_id"].iloc[0])
    with steps.step("4. features served by Feast"):
        user = features.online_user_features([warm_user], settings)[0]
        item = features.online_item_features([str(dataset.items["item_id"].iloc[0])], settings)[0]
        print_table("Feast online store", ["entity", "features"], [
            [f"user {warm_user}", ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in user.items() if k != "user_id")],
            [f"item {item['item_id']}", ", ".join(f"{k}={v}" for k, v in item.items()
                                                  if k in ("title", "year", "genres", "n_interactions"))],
        ])

    with steps.step("5. embed users and items with the language model"):
        space = spaces.ensure_content_space(settings, load_encoder(settings.model))
        if options.worker:
            wait_until_full(settings, space)
        else:
            embed_local(settings, space, 256)
        spaces.activate_if_complete(settings, spaces.get_space(settings, space.space_id))
        done = spaces.completeness(settings, space.space_id)
        console.print(f"content space {space.name}: {done.done}/{done.total} embedded")

    with steps.step("6. train the collaborative space and the cold-start map"):
        trained = training.train_collaborative_space(settings, progress=True, wait=True)
        console.print(f"collaborative space {trained.name} ({trained.dimension} dimensions) is active")

    with steps.step("7. a user arrives (demographics only) and is embedded"):
        with RecClient(settings) as client:
            client.add_users([NEW_USER], source="demo", enqueue=options.worker)
        if options.worker:
            _wait_for_user_vector(settings, NEW_USER["user_id"])
        else:
            pipeline.embed_ids("user", [NEW_USER["user_id"]], settings)
        console.print(f"stored {NEW_USER} and its demographic-prompt embedding")

    with steps.step("8. recommendations"), RecClient(settings) as client:
        warm = client.recommend(warm_user, options.k)
        print_recs(f"warm user {warm_user} (history: {user.get('n_interactions')} interactions)", warm)
        print_recs(f"cold user {NEW_USER['user_id']}: stored a moment ago, no history",
                   client.recommend(NEW_USER["user_id"], options.k))
        print_recs(f"a person who is not stored: {NEW_PERSON}", client.recommend_for_profile(**NEW_PERSON, k=options.k))
        if warm:
            print_recs(f"items similar to {warm[0].item_id} ({warm[0].title})",
                       client.similar_items(warm[0].item_id, options.k))
        with db.connect(settings, vector=False) as conn:
            rows = conn.execute(ANALYST_SQL, (NEW_USER["user_id"],)).fetchall()
        print_table(f"the same from plain SQL: {ANALYST_SQL % repr(NEW_USER['user_id'])}",
              ["rank", "item_id", "title", "score", "source"], [list(r) for r in rows])
    with steps.step("9. the platform keeps running"):
        start_local_worker(settings)  # consumes the queue from now on: new users and items get embedded
        wait_for_beat(settings)
        print_table("services", ["service", "state", "pid"],
                    [[s.name, "running" if s.running else "DOWN", s.pid] for s in services.status(settings)])
    return steps


def _wait_for_user_vector(settings: Settings, user_id: str, timeout: float = 120.0) -> None:
    """Poll until the worker has stored the user's demographic embedding (ingestion enqueued it)."""
    deadline = time.monotonic() + timeout
    with db.connect(settings, autocommit=True, vector=False) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM rec.user_embeddings WHERE user_id = %s AND kind = 'demographic'",
                            (user_id,)).fetchone():
                return
            time.sleep(0.2)
    raise TimeoutError(f"no worker embedded user {user_id!r} within {timeout:.0f}s (is `recplatform worker` running?)")


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
    settings = cli_settings()
    started = time.perf_counter()
    options = DemoOptions(users=users, items=items, seed=seed, worker=worker)
    from recplatform.ingest.catalogues import MixedCataloguesError  # deferred: pandas (ingestion)

    try:
        steps = run(settings, options)
    except MixedCataloguesError as exc:
        console.print(f"[red]the demo needs a database of its own[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    print_table("demo steps", ["step", "seconds"],
                [[name, f"{seconds:.2f}"] for name, seconds in steps.seconds.items()]
                + [["total", f"{time.perf_counter() - started:.2f}"]])
    console.print("[green]done[/green]: Postgres, Redis, a worker with beat and the Feast feature server keep "
                  "running (`recplatform status`, `recplatform down`)")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the app."""
    app.command()(demo)
