"""Freshness: seconds from ingesting one new item or user to being served, through the real worker.

A platform under a temporary state directory (``recplatform up``, ``init``, ``load synthetic``, ``embed --wait``,
``train``: embedded Postgres+pgvector, Redis, one Celery worker with beat, Feast's feature server, the
configured encoder), then, ``--rounds`` times, interleaved:

* **item**: ``RecClient.add_items`` of one new item (validation, commit, Feast online write, embed message);
  timed until the item has a content vector and a collaborative vector mapped from it (what ``rec.recommend``
  ranks warm users by) and ``rec.similar_items`` of an old item can return it;
* **user**: ``RecClient.add_users`` of one new user with demographics; timed until ``rec.recommend`` serves them
  ``demographic_neighbors`` (their demographic vector exists), the cold default.

Reported: median, p90 and max seconds, split into the client call (commit with the outbox rows + online write +
NOTIFY) and the wait for the worker. The baseline is the embedding work itself for one item (``embed_batch`` in process, same
encoder, content vector only, the encoder already loaded), so the ratio shows what the queue hop costs.

Usage: ``python benchmarks/freshness.py [--rounds 10] [--model hashing:384]``. Prints a table and writes
``benchmarks/results/freshness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

console = Console(width=int(os.environ.get("COLUMNS", "150")))
ITEM_READY = """
SELECT count(*) = 2 FROM rec.item_embeddings e JOIN rec.embedding_models m ON m.space_id = e.space_id AND m.is_active
WHERE e.item_id = %s
"""
USER_READY = "SELECT source FROM rec.recommend(%s, 5) LIMIT 1"


def cli(env: dict, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "recplatform.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"recplatform {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def wait_until(check, timeout: float = 120.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"not served within {timeout:.0f}s")
        time.sleep(0.01)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "median_s": statistics.median(values),
            "p90_s": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "max_s": ordered[-1]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--model", default=None, help="encoder (default: the platform's, RECPLATFORM_MODEL)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="rp-fresh-"))
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(state / ".recplatform")}
    if args.model:
        env["RECPLATFORM_MODEL"] = args.model
    os.environ.update(env)
    from recplatform import db  # deferred: settings come from the environment set above
    from recplatform.client import RecClient
    from recplatform.config import get_settings
    from recplatform.embedding import spaces
    from recplatform.embedding.pipeline import embed_batch
    from recplatform.ingest import upsert_items

    get_settings.cache_clear()
    settings = get_settings()
    started = time.perf_counter()
    try:
        for step in (("up",), ("init",), ("load", "synthetic", "--users", "300", "--items", "200"),
                     ("embed", "--wait"), ("train",)):
            cli(env, *step)
        console.print(f"platform ready in {time.perf_counter() - started:.0f}s (state {state})")
        rows: dict[str, dict[str, list[float]]] = {"item": {"call": [], "wait": [], "total": []},
                                                   "user": {"call": [], "wait": [], "total": []}}
        baseline: list[float] = []
        with RecClient(settings) as client, db.connect(settings, autocommit=True, vector=False) as conn:
            client.add_items([{"item_id": "warm-up", "title": "Warm-up", "genres": ["Drama"]}])  # imports, caches
            wait_until(lambda: conn.execute(ITEM_READY, ("warm-up",)).fetchone()[0])
            content = spaces.active_space(settings, spaces.CONTENT)
            for n in range(args.rounds):
                item, user = f"fresh-item-{n}", f"fresh-user-{n}"
                t0 = time.perf_counter()
                client.add_items([{"item_id": item, "title": f"The Harbour Light {n}", "year": 2031,
                                   "genres": ["Drama", "Romance"],
                                   "description": "A lighthouse keeper and a letter that arrives forty years late."}])
                call = time.perf_counter() - t0
                wait = wait_until(lambda: conn.execute(ITEM_READY, (item,)).fetchone()[0])
                for name, value in (("call", call), ("wait", wait), ("total", call + wait)):
                    rows["item"][name].append(value)
                t0 = time.perf_counter()
                client.add_users([{"user_id": user, "age": 20 + n, "gender": "FM"[n % 2], "occupation": "writer",
                                   "zip_code": "10001"}])
                call = time.perf_counter() - t0
                wait = wait_until(lambda: (conn.execute(USER_READY, (user,)).fetchone() or [""])[0]
                                  == "demographic_neighbors")
                for name, value in (("call", call), ("wait", wait), ("total", call + wait)):
                    rows["user"][name].append(value)
                base = {"item_id": f"base-item-{n}", "title": f"The Harbour Light {n}, again", "genres": ["Drama"]}
                upsert_items([base], settings=settings)  # no message: embedded below, in process
                if n == 0:  # load the encoder once, outside the timing
                    embed_batch("item", ["warm-up"], content, settings)
                t0 = time.perf_counter()
                embed_batch("item", [base["item_id"]], content, settings)
                baseline.append(time.perf_counter() - t0)
    finally:
        subprocess.run([sys.executable, "-m", "recplatform.cli", "down", "--purge"], env=env, capture_output=True)
    report = {"benchmark": "freshness", "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
              "model": settings.model, "rounds": args.rounds,
              "item": {k: summary(v) for k, v in rows["item"].items()},
              "user": {k: summary(v) for k, v in rows["user"].items()},
              "worker_batch_in_process": summary(baseline)}
    report["item_total_over_in_process"] = (report["item"]["total"]["median_s"]
                                            / report["worker_batch_in_process"]["median_s"])
    table = Table(title=f"freshness: ingestion to served ({args.rounds} rounds, encoder {settings.model})")
    for col in ("entity", "part", "median s", "p90 s", "max s"):
        table.add_column(col, justify="left" if col in ("entity", "part") else "right")
    for entity in ("item", "user"):
        for part, label in (("call", "client call (commit + outbox, online write, notify)"), ("wait", "worker"),
                            ("total", "total")):
            s = report[entity][part]
            table.add_row(entity, label, f"{s['median_s']:.3f}", f"{s['p90_s']:.3f}", f"{s['max_s']:.3f}")
    s = report["worker_batch_in_process"]
    table.add_row("item", "baseline: embed_batch in process (content vector)", f"{s['median_s']:.3f}",
                  f"{s['p90_s']:.3f}", f"{s['max_s']:.3f}")
    console.print(table)
    console.print(f"item total / in-process batch: {report['item_total_over_in_process']:.1f}x")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "freshness.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
