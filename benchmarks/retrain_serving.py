"""Serving while the platform retrains: p99 of rec.recommend during a collaborative training against at rest.

Data: ``--interactions`` synthetic interactions (default 1M) over ``--items`` items (default 100,000) and
``--users`` users (default 20,000), from :func:`recplatform.datasets.synthetic.generate_interaction_blocks`, in a
database ``bench_retrain_<n>`` (built once by ``train_scale.database``, reused when it holds the same data).

One client on one connection asks ``rec.recommend(user, 10)`` (exclude seen on) for random warm users in a closed
loop, the whole run long, alternating query by query two arms: the default call, and the same call with
``exploration_share => 0`` (no fresh-item slots: the taste/onboarding ranking alone). The run alternates ``--rest``
seconds at rest with a full retrain (:func:`recplatform.retrieval.training.train_collaborative_space` in its own
process, as a worker runs it: load, ALS, writing the new space, CREATE INDEX CONCURRENTLY, activation, dropping the
space before the previous one concurrently in batches), ``--repeats`` times, and ends at rest. Each query is
labelled by whether a training process was alive when it started. The table gives p50/p99/max of each label, pooled
and per repeat, and the during/rest ratio of p99 (pooled; and the median of the per-repeat ratios, each repeat
against the rest window before it). The machine has 2 cores: the training's numpy and its index build compete with
the query for CPU, so the ratio measures CPU sharing as well as locking; ``max`` shows any stall (a lock wait would
be as long as the whole copy and build).

Usage: ``python benchmarks/retrain_serving.py [--interactions 1000000] [--items 100000] [--repeats 3]``.
Prints a table and writes ``benchmarks/results/retrain_serving.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recplatform import db  # noqa: E402
from recplatform.embedding import spaces  # noqa: E402
from recplatform.retrieval import training  # noqa: E402
from train_scale import database  # noqa: E402

console = Console(width=int(os.environ.get("COLUMNS", "150")))
TRAIN = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout, "
         "format='%(asctime)s %(message)s'); from recplatform.retrieval import training; "
         "training.train_collaborative_space()")


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def summarise(samples: list[tuple[str, float, int]], arm: str, repeats: int, trainings: list[dict]) -> dict:
    """Percentiles of one arm at rest and during the retrains, pooled and per repeat, with p99 ratios."""
    by_phase: dict[int, list[float]] = {}
    for name, ms, label in samples:
        if name == arm:
            by_phase.setdefault(label, []).append(ms)
    rest = percentiles([ms for label, v in by_phase.items() if label % 2 == 0 for ms in v])
    during = percentiles([ms for label, v in by_phase.items() if label % 2 == 1 for ms in v])
    per_repeat = []
    for repeat in range(repeats):
        r, d = percentiles(by_phase[2 * repeat]), percentiles(by_phase[2 * repeat + 1])
        per_repeat.append({"rest": r, "during": d, "p99_ratio": d["p99_ms"] / r["p99_ms"],
                           "training_s": trainings[repeat]["seconds"]})
    return {"rest": rest, "during": during, "p99_ratio_pooled": during["p99_ms"] / rest["p99_ms"],
            "p99_ratio_median_of_repeats": statistics.median(p["p99_ratio"] for p in per_repeat),
            "per_repeat": per_repeat}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="retrains (each after a rest window)")
    parser.add_argument("--rest", type=float, default=30.0, help="seconds at rest before each retrain and at the end")
    parser.add_argument("--fresh", action="store_true", help="rebuild the benchmark database")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    settings = database(args.interactions, args.fresh, (args.users, args.items), name="bench_retrain")
    if spaces.active_space(settings, spaces.COLLABORATIVE) is None:
        console.print("first training (not measured)")
        training.train_collaborative_space(settings)
    with db.connect(settings, autocommit=True, vector=False) as conn:
        users = [r[0] for r in conn.execute(
            "SELECT user_id FROM rec.user_embeddings WHERE space_id = rec.active_space_id('collaborative') "
            "AND kind = 'taste' ORDER BY user_id")]
    rng = np.random.default_rng(0)

    arms = {"default": "SELECT item_id FROM rec.recommend(%s, 10)",
            "exploration 0": "SELECT item_id FROM rec.recommend(%s, 10, exploration_share => 0)"}
    samples: list[tuple[str, float, int]] = []  # (arm, ms, phase index); even = rest, odd = retrain
    phase = [0]
    stop = threading.Event()

    def client() -> None:
        with db.connect(settings, autocommit=True, vector=False) as conn:
            while not stop.is_set():
                user = users[int(rng.integers(len(users)))]
                for arm, query in arms.items():
                    started = time.perf_counter()
                    label = phase[0]
                    conn.execute(query, (user,)).fetchall()
                    samples.append((arm, (time.perf_counter() - started) * 1e3, label))

    env = {**os.environ, "RECPLATFORM_DATABASE_NAME": settings.database_name}
    thread = threading.Thread(target=client)
    thread.start()
    trainings = []
    try:
        for repeat in range(args.repeats):
            phase[0] = 2 * repeat
            time.sleep(args.rest)
            phase[0] = 2 * repeat + 1
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"training failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            trainings.append({"seconds": time.perf_counter() - started,
                              "log": [line for line in proc.stdout.splitlines() if "collaborative space" in line]})
            console.print(f"retrain {repeat + 1}/{args.repeats}: {trainings[-1]['seconds']:.1f}s; "
                          f"{len(samples)} queries so far")
        phase[0] = 2 * args.repeats
        time.sleep(args.rest)
    finally:
        stop.set()
        thread.join()

    report = {
        "benchmark": "retrain_serving", "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "data": {"interactions": args.interactions, "items": args.items, "users": args.users},
        "trainings": trainings, "arms": {arm: summarise(samples, arm, args.repeats, trainings) for arm in arms},
    }
    table = Table(title=f"rec.recommend(user, 10) while retraining ({args.items:,} items, {args.interactions:,} "
                        f"interactions; 1 client, arms interleaved)")
    for col in ("arm", "window", "queries", "p50 ms", "p99 ms", "max ms", "p99 / rest"):
        table.add_column(col, justify="left" if col in ("arm", "window") else "right")
    for arm, result in report["arms"].items():
        for n, p in enumerate(result["per_repeat"], 1):
            for name, window in (("rest", f"rest before retrain {n}"),
                                 ("during", f"during retrain {n} ({p['training_s']:.0f}s)")):
                w = p[name]
                table.add_row(arm, window, str(w["n"]), f"{w['p50_ms']:.2f}", f"{w['p99_ms']:.2f}",
                              f"{w['max_ms']:.1f}", f"{p['p99_ratio']:.2f}" if name == "during" else "")
        for name in ("rest", "during"):
            w = result[name]
            table.add_row(arm, f"all {name}", str(w["n"]), f"{w['p50_ms']:.2f}", f"{w['p99_ms']:.2f}",
                          f"{w['max_ms']:.1f}", f"{result['p99_ratio_pooled']:.2f}" if name == "during" else "",
                          end_section=name == "during")
    console.print(table)
    for arm, result in report["arms"].items():
        console.print(f"{arm}: p99 during / at rest: pooled {result['p99_ratio_pooled']:.2f}, median of repeats "
                      f"{result['p99_ratio_median_of_repeats']:.2f} (target <= 2)")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "retrain_serving.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
