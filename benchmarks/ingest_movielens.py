"""Benchmark: how long ingesting MovieLens 100K takes (database part), against a row-by-row baseline.

Each repeat gets a fresh migrated database on an embedded Postgres started for this run, then measures:

- ``ingest``: ``ingest_dataset(load_movielens(path))`` — validation, then COPY into
  temp tables and set-based upserts in one transaction (what ``recplatform load movielens`` does before Feast);
- ``reload``: the same call again on the loaded database (must change nothing);
- ``baseline``: the naive way on another fresh database — the same validated rows sent with psycopg
  ``executemany`` as ``INSERT ... ON CONFLICT DO NOTHING`` statements, one transaction.

Prints a table of medians and writes JSON (``--out``). Usage:
``python benchmarks/ingest_movielens.py [--path ../shared/data/ml-100k] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform import db, services  # noqa: E402
from recplatform.config import Settings  # noqa: E402
from recplatform.datasets import load_movielens  # noqa: E402
from recplatform.content import item_content_hash, user_content_hash  # noqa: E402
from recplatform.ingest import ingest_dataset  # noqa: E402
from recplatform.ingest.validate import SPECS, validate  # noqa: E402

_NAIVE = {
    "users": "INSERT INTO rec.users (user_id, age, gender, occupation, zip_code, content_hash) "
             "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "items": "INSERT INTO rec.items (item_id, title, year, genres, description, extra, content_hash) "
             "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "interactions": "INSERT INTO rec.interactions (user_id, item_id, rating, weight, event_type, occurred_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
}


def _fresh(base: Settings, name: str) -> Settings:
    settings = base.model_copy(update={"database_name": name})
    services.ensure_database(settings)
    db.migrate(settings)
    return settings


def _baseline(settings: Settings, dataset) -> float:
    from psycopg.types.json import Jsonb

    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    tables = {name: validate(getattr(dataset, name), SPECS[name], "bench", now)
              for name in ("users", "items", "interactions")}
    u, i, x = (tables[n].columns for n in ("users", "items", "interactions"))
    users = [(a, b, c, d, e, user_content_hash({"age": b, "gender": c, "occupation": d, "zip_code": e}))
             for a, b, c, d, e in zip(u["user_id"], u["age"], u["gender"], u["occupation"], u["zip_code"])]
    items = [(a, b, c, d, e, Jsonb(f), item_content_hash({"title": b, "year": c, "genres": d, "description": e}))
             for a, b, c, d, e, f in zip(i["item_id"], i["title"], i["year"], i["genres"], i["description"],
                                         i["extra"])]
    inter = list(zip(x["user_id"], x["item_id"], x["rating"], x["weight"], x["event_type"], x["occurred_at"]))
    with db.transaction(settings) as conn:
        with conn.cursor() as cur:
            cur.executemany(_NAIVE["users"], users)
            cur.executemany(_NAIVE["items"], items)
            cur.executemany(_NAIVE["interactions"], inter)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_movielens.json")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="recplat-bench-"))
    base = Settings(state_dir=state)
    services.up(base)
    runs: list[dict[str, float]] = []
    try:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            dataset = load_movielens(args.path)
            read = time.perf_counter() - started
            settings = _fresh(base, f"bench_ingest_{repeat}")
            result = ingest_dataset(dataset, settings=settings)
            assert (result.users_inserted, result.items_inserted, result.interactions_added) == (943, 1682, 100_000)
            again = ingest_dataset(dataset, settings=settings)
            assert again.interactions_added == 0 and not again.changed_item_ids and not again.changed_user_ids
            baseline = _baseline(_fresh(base, f"bench_naive_{repeat}"), dataset)
            runs.append({
                "read_files": read, "validate": result.timings["validate"], "database_write": result.timings["write"],
                "ingest_total": result.seconds, "reload_total": again.seconds, "baseline_executemany": baseline,
            })
            print(f"repeat {repeat + 1}/{args.repeats}: ingest {result.seconds:.2f}s, baseline {baseline:.2f}s",
                  file=sys.stderr)
    finally:
        services.down(base)
        shutil.rmtree(state, ignore_errors=True)

    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    ratio = medians["baseline_executemany"] / medians["ingest_total"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ML-100K ingestion (943 users, 1,682 items, 100,000 ratings), median of {len(runs)}")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for key, value in medians.items():
        table.add_row(key, f"{value:.2f}")
    table.add_row("baseline / ingest", f"{ratio:.1f}x")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": str(args.path), "repeats": runs, "median": medians,
                                    "baseline_over_ingest": ratio}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
