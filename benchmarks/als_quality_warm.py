"""Warm-protocol quality of the collaborative training: the old loader and per-row solver against the new SQL
loader and batched solver, on MovieLens 100K, in the same run.

The warm split of ``recplatform evaluate`` (each user's last 20 % of interactions by time held out; relevant =
rating >= 4) is ingested into a scratch database; both arms factorise the training interactions with the default
hyper-parameters, and every test user is ranked over the whole catalogue by the dot product of the factors with
their training items masked (what ``rec.recommend``'s taste strategy approximates through the augmented cosine
index). Reports NDCG@10 / recall@10 of both arms, the largest factor difference and the wall time of each arm.

Usage: ``python benchmarks/als_quality_warm.py [--data ../shared/data/ml-100k]``; writes
``benchmarks/results/als_quality_warm.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from psycopg import sql as psql
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_scale import _baseline_als, _baseline_load  # noqa: E402

from recplatform import db, services  # noqa: E402
from recplatform.config import get_settings  # noqa: E402
from recplatform.datasets.movielens import load_movielens  # noqa: E402
from recplatform.evaluation.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from recplatform.evaluation.protocols import warm_split  # noqa: E402
from recplatform.ingest import ingest  # noqa: E402
from recplatform.retrieval.als import CollaborativeParams, als  # noqa: E402
from recplatform.retrieval.storage import load_interactions  # noqa: E402

console = Console()


def scores(data, users: np.ndarray, items: np.ndarray, split, k: int = 10) -> dict:
    u_index = {u: n for n, u in enumerate(data.user_ids)}
    ndcg, recall = [], []
    for user, relevant in split.relevant.items():
        if not relevant or user not in u_index:
            continue
        u = u_index[user]
        s = items @ users[u]
        idx, _ = data.user_rows(u)
        s[idx] = -np.inf  # training items are excluded, as rec.recommend does
        top = [data.item_ids[i] for i in np.argsort(-s)[:k]]
        ndcg.append(ndcg_at_k(top, relevant, k))
        recall.append(recall_at_k(top, relevant, k))
    return {"ndcg@10": float(np.mean(ndcg)), "recall@10": float(np.mean(recall)), "users": len(ndcg)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="initialisation seeds; arms alternate per seed")
    args = parser.parse_args()
    dataset = load_movielens(args.data)
    split = warm_split(dataset.interactions)
    settings = get_settings().model_copy(update={"database_name": "bench_als_quality"})
    if settings.uses_embedded_postgres:
        services.up(settings)
    admin = settings.model_copy(update={"database_name": "postgres"})
    with db.connect(admin, autocommit=True, vector=False) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(settings.database_name)))
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(settings.database_name)))
    db.migrate(settings)
    ingest(users=dataset.users, items=dataset.items, interactions=split.train, settings=settings)
    out: dict = {"seeds": {}}
    for seed in [int(x) for x in args.seeds.split(",")]:
        params = CollaborativeParams(seed=seed)
        run = {}
        t0 = time.perf_counter()
        old = _baseline_load(settings, params)
        old_users, old_items = _baseline_als(old, params)
        run["old"] = {**scores(old, old_users, old_items, split), "seconds": time.perf_counter() - t0}
        t0 = time.perf_counter()
        with db.connect(settings, vector=False) as conn, conn.transaction():
            new = load_interactions(conn, params)
        factors = als(new, params)
        run["new"] = {**scores(new, factors.users, factors.items, split), "seconds": time.perf_counter() - t0}
        assert old.user_ids == new.user_ids and old.item_ids == new.item_ids
        run["max_abs_strength_difference"] = float(np.max(np.abs(old.strength - new.strength)))
        out["seeds"][seed] = run
        console.print(f"seed {seed}: old NDCG@10 {run['old']['ndcg@10']:.4f}, new {run['new']['ndcg@10']:.4f}")
    for arm in ("old", "new"):
        values = [r[arm]["ndcg@10"] for r in out["seeds"].values()]
        out[arm] = {"ndcg@10_mean": float(np.mean(values)), "ndcg@10_sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "recall@10_mean": float(np.mean([r[arm]["recall@10"] for r in out["seeds"].values()])),
                    "seconds_median": float(np.median([r[arm]["seconds"] for r in out["seeds"].values()]))}
    diff = [r["new"]["ndcg@10"] - r["old"]["ndcg@10"] for r in out["seeds"].values()]
    out["new_minus_old_ndcg@10"] = {"mean": float(np.mean(diff)), "min": float(np.min(diff)), "max": float(np.max(diff))}
    table = Table(title=f"ML-100K warm split, dot-product ranking, seen items excluded, seeds {args.seeds}")
    for col in ("arm", "NDCG@10 mean (sd)", "recall@10 mean", "median seconds"):
        table.add_column(col, justify="right")
    for arm, label in (("old", "old: Python loader, per-row solve"), ("new", "new: SQL + implicit sweeps + exact user step")):
        r = out[arm]
        table.add_row(label, f"{r['ndcg@10_mean']:.4f} ({r['ndcg@10_sd']:.4f})", f"{r['recall@10_mean']:.4f}",
                      f"{r['seconds_median']:.1f}")
    console.print(table)
    d = out["new_minus_old_ndcg@10"]
    console.print(f"new - old NDCG@10 per seed: mean {d['mean']:+.4f} (min {d['min']:+.4f}, max {d['max']:+.4f})")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "als_quality_warm.json").write_text(json.dumps(out, indent=2))
    with db.connect(admin, autocommit=True, vector=False) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(settings.database_name)))
    return out


if __name__ == "__main__":
    main()
