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
    params = CollaborativeParams()
    out = {}
    t0 = time.perf_counter()
    old = _baseline_load(settings, params)
    old_users, old_items = _baseline_als(old, params)
    out["old"] = {**scores(old, old_users, old_items, split), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    with db.connect(settings, vector=False) as conn, conn.transaction():
        new = load_interactions(conn, params)
    factors = als(new, params)
    out["new"] = {**scores(new, factors.users, factors.items, split), "seconds": time.perf_counter() - t0}
    assert old.user_ids == new.user_ids and old.item_ids == new.item_ids
    out["max_abs_strength_difference"] = float(np.max(np.abs(old.strength - new.strength)))
    out["max_abs_user_factor_difference"] = float(np.max(np.abs(old_users - factors.users)))
    table = Table(title="ML-100K warm split, dot-product ranking, seen items excluded")
    for col in ("arm", "NDCG@10", "recall@10", "users", "seconds"):
        table.add_column(col, justify="right")
    for arm in ("old", "new"):
        r = out[arm]
        table.add_row(arm, f"{r['ndcg@10']:.4f}", f"{r['recall@10']:.4f}", str(r["users"]), f"{r['seconds']:.1f}")
    console.print(table)
    console.print(f"max |strength old - new| = {out['max_abs_strength_difference']:.2e}, max |user factors old - "
                  f"new| = {out['max_abs_user_factor_difference']:.2e}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "als_quality_warm.json").write_text(json.dumps(out, indent=2))
    with db.connect(admin, autocommit=True, vector=False) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(settings.database_name)))
    return out


if __name__ == "__main__":
    main()
