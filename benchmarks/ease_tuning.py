"""EASE lambda tuning of ``recplatform evaluate``: one inverse of the Gram matrix per lambda (the code before issue
11) against one eigendecomposition reused for every lambda (``baselines.tune_ease_lambda`` now), in the same run.

Both arms tune over ``EASE_LAMBDAS`` (8 values) on the validation split that the warm protocol carves from its
training interactions (each training user's last 20 % by time), on synthetic datasets of growing catalogues. The
arms run interleaved ``--repeats`` times per size (inverse, eigen, inverse, …); the table gives median seconds and
the inverse/eigen ratio, and checks that both choose the same lambda with the same validation NDCG@10.

Usage: ``python benchmarks/ease_tuning.py [--items 1000 2500] [--repeats 3]``; writes
``benchmarks/results/ease_tuning.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform.datasets import generate_synthetic  # noqa: E402
from recplatform.evaluation import baselines, metrics  # noqa: E402
from recplatform.evaluation.protocols import relevant_mask, temporal_holdout, warm_split  # noqa: E402

console = Console()


def tune_by_inverse(train, item_ids, users, threshold=4.0, fraction=0.2, grid=baselines.EASE_LAMBDAS):
    """The tuning as it was: ``np.linalg.inv`` of the Gram matrix for every lambda, users scored one by one."""
    fit, val = temporal_holdout(train, fraction)
    relevant = val[relevant_mask(val, threshold)].groupby("user_id")["item_id"].agg(set).to_dict()
    sub = baselines.TrainView.build(fit, item_ids, users)
    seen = fit[fit["user_id"].isin(relevant.keys())].groupby("user_id")["item_id"].agg(set).to_dict()
    scores = {}
    for lam in grid:
        recs = baselines.ease_recs_from(baselines.ease_weights(sub.matrix, lam), sub, list(relevant), seen, 10)
        scores[lam] = float(np.mean([metrics.ndcg_at_k(recs[u], relevant[u], 10) for u in relevant]))
    return max(scores, key=lambda lam: (scores[lam], -lam)), scores


def tune_by_eigen(train, item_ids, users):
    return baselines.tune_ease_lambda(train, item_ids, users)


ARMS = {"inverse": tune_by_inverse, "eigen": tune_by_eigen}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 2500], help="catalogue sizes")
    parser.add_argument("--users-per-item", type=float, default=1.0, help="users = this x items")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per size")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ease_tuning.json")
    args = parser.parse_args(argv)

    rows = []
    for n_items in args.items:
        data = generate_synthetic(int(n_items * args.users_per_item), n_items, seed=0)
        split = warm_split(data.interactions)
        item_ids = list(data.items.item_id)
        seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
        chosen: dict[str, tuple] = {}
        for _ in range(args.repeats):
            for arm, tune in ARMS.items():
                started = time.perf_counter()
                lam, scores = tune(split.train, item_ids, data.users)
                seconds[arm].append(time.perf_counter() - started)
                chosen[arm] = (lam, scores)
        worst = max(abs(chosen["inverse"][1][lam] - chosen["eigen"][1][lam]) for lam in baselines.EASE_LAMBDAS)
        row = {"items": n_items, "users": len(data.users), "interactions": len(split.train),
               "repeats": args.repeats, "grid": list(baselines.EASE_LAMBDAS),
               **{f"{arm}_median_s": statistics.median(v) for arm, v in seconds.items()},
               **{f"{arm}_s": [round(x, 3) for x in v] for arm, v in seconds.items()},
               "same_lambda": chosen["inverse"][0] == chosen["eigen"][0], "lambda": chosen["eigen"][0],
               "max_ndcg_difference": worst}
        row["ratio_inverse_over_eigen"] = row["inverse_median_s"] / row["eigen_median_s"]
        rows.append(row)

    table = Table(title=f"EASE lambda tuning over {len(baselines.EASE_LAMBDAS)} lambdas (median of "
                        f"{args.repeats} interleaved runs)")
    for column in ("items", "users", "inverse s", "eigen s", "inverse / eigen", "same lambda", "max |ΔNDCG|"):
        table.add_column(column)
    for r in rows:
        table.add_row(f"{r['items']:,}", f"{r['users']:,}", f"{r['inverse_median_s']:.2f}",
                      f"{r['eigen_median_s']:.2f}", f"{r['ratio_inverse_over_eigen']:.2f}x",
                      str(r["same_lambda"]), f"{r['max_ndcg_difference']:.1e}")
    console.print(table)
    report = {"benchmark": "ease_tuning", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
