"""Collaborative training at 1M and 10M interactions: wall time, CPU time and peak RSS, against the old code at 1M.

Data: :func:`recplatform.datasets.synthetic.generate_interaction_blocks` (segment tastes, Zipf item popularity,
log-normal user activity, repeat events) written straight into ``rec.interactions`` of a database
``bench_train_<n>`` by binary COPY into a staging table and one INSERT … SELECT (users and items are generated in
SQL). A database that already holds the same data (same shape and seed) is reused; ``--fresh`` rebuilds it.

Arms (each in its own subprocess, so its peak RSS is its own — ``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

* ``baseline``: the code before this change, copied below (``_baseline_*``): every event fetched as a Python
  tuple, strengths and CSR in numpy, then ALS solving one f × f system per row in a Python loop;
* ``new``: the same scope with the package's code: strengths aggregated in SQL, binary COPY into numpy,
  batched exact ALS (:func:`recplatform.retrieval.storage.load_interactions`, :func:`recplatform.retrieval.als.als`);
* ``full``: :func:`recplatform.retrieval.training.train_collaborative_space` end to end (load, ALS, writing
  item and taste vectors by COPY, HNSW index build, priors, activation).

At 1M the arms run interleaved ``--repeats`` times (baseline, new, full, baseline, …) and the table gives
medians and the baseline/new ratio of the same run; at 10M ``new`` and ``full`` run once each (the baseline
would need ~3 GB for the tuples alone). The baseline and new arms also report the largest absolute difference
of their user factors (the same maths, so ~1e-10). The machine is shared: read CPU-seconds beside wall time.

Usage: ``python benchmarks/train_scale.py [--sizes 1000000,10000000] [--repeats 3] [--fresh]``.
Prints a table and writes ``benchmarks/results/train_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from psycopg import sql as psql
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform import db, services  # noqa: E402
from recplatform.config import get_settings  # noqa: E402
from recplatform.datasets.synthetic import generate_interaction_blocks  # noqa: E402
from recplatform.retrieval import training  # noqa: E402
from recplatform.retrieval.als import CollaborativeParams, Interactions, als, to_csr  # noqa: E402
from recplatform.retrieval.storage import load_interactions  # noqa: E402

console = Console(width=int(os.environ.get("COLUMNS", "150")))
SEED = 7
USERS_PER_INTERACTION = 1 / 50  # 50 interactions per user on average (ML-100K: 106)


def shape(n: int) -> tuple[int, int]:
    """(users, items) for n interactions."""
    return max(100, int(n * USERS_PER_INTERACTION)), int(min(20_000, max(1_000, n // 100)))


# ----- data -----------------------------------------------------------------------------------------------
STAGE_DTYPE = np.dtype([("n", ">i2"), ("lu", ">i4"), ("u", ">i4"), ("li", ">i4"), ("i", ">i4"),
                        ("lr", ">i4"), ("r", ">f8"), ("lt", ">i4"), ("t", ">i8")])


def database(n: int, fresh: bool, users_items: tuple[int, int] | None = None, name: str = "bench_train"):
    """Settings of ``<name>_<n>`` holding the synthetic data (generated when absent or different); ``users_items``
    overrides :func:`shape`."""
    n_users, n_items = users_items or shape(n)
    marker = f"synthetic n={n} users={n_users} items={n_items} seed={SEED}"
    settings = get_settings().model_copy(update={"database_name": f"{name}_{n}"})
    if settings.uses_embedded_postgres:
        services.up(settings)
    admin = settings.model_copy(update={"database_name": "postgres"})
    with db.connect(admin, autocommit=True, vector=False) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.database_name,)).fetchone()
    if exists and not fresh:
        with db.connect(settings, autocommit=True, vector=False) as conn:
            found = conn.execute("SELECT obj_description(to_regclass('rec.interactions'))").fetchone()[0]
        if found == marker:
            console.print(f"reusing database {settings.database_name} ({marker})")
            return settings
    with db.connect(admin, autocommit=True, vector=False) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(settings.database_name)))
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(settings.database_name)))
    db.migrate(settings)
    started = time.perf_counter()
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO rec.users (user_id, content_hash) SELECT 'u' || g, 'h' FROM generate_series(1, %s) g",
                     (n_users,))
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) SELECT 'i' || g, 'Item ' || g, 'h' "
                     "FROM generate_series(1, %s) g", (n_items,))
        conn.execute("CREATE TEMP TABLE stage (u int4, i int4, rating float8, t int8) ON COMMIT DROP")
        blocks = generate_interaction_blocks(n_users, n_items, n, seed=SEED)
        with conn.cursor() as cur, cur.copy("COPY stage FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(b"PGCOPY\n\xff\r\n\0" + b"\0" * 8)
            for block in track(blocks, description=f"generating {n:,} interactions",
                               total=-(-n_users // 8192)):
                rows = np.zeros(len(block["user"]), STAGE_DTYPE)
                rows["n"], rows["lu"], rows["li"], rows["lr"], rows["lt"] = 4, 4, 4, 8, 8
                rows["u"], rows["i"], rows["r"], rows["t"] = (block["user"] + 1, block["item"] + 1, block["rating"],
                                                              block["occurred_at"])
                copy.write(rows.tobytes())
            copy.write(b"\xff\xff")
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating, weight, event_type, occurred_at) "
                     "SELECT 'u' || s.u, 'i' || s.i, s.rating, 1.0, 'rating', to_timestamp(s.t) FROM stage s")
        conn.execute(psql.SQL("COMMENT ON TABLE rec.interactions IS {}").format(psql.Literal(marker)))
    with db.connect(settings, autocommit=True, vector=False) as conn:
        conn.execute("VACUUM ANALYZE rec.interactions")
    console.print(f"generated {settings.database_name}: {marker} in {time.perf_counter() - started:.0f}s")
    return settings


# ----- the code before this change (baseline arm only) ----------------------------------------------------
_BASELINE_SQL = """
SELECT x.user_id, x.item_id, x.rating, x.weight, extract(epoch FROM x.occurred_at)::float8
FROM rec.interactions x
"""


def _baseline_strengths(user_idx, ratings, weights, occurred, params):
    latest = np.full(user_idx.max() + 1 if len(user_idx) else 0, -np.inf)
    np.maximum.at(latest, user_idx, occurred)
    age_days = (latest[user_idx] - occurred) / 86400.0
    rating_factor = np.where(np.isnan(ratings), 1.0, ratings / params.rating_max)
    return weights * rating_factor * np.power(2.0, -age_days / params.half_life_days)


def _baseline_load(settings, params) -> Interactions:
    with db.connect(settings, vector=False) as conn:
        rows = conn.execute(_BASELINE_SQL).fetchall()
    users = [r[0] for r in rows]
    items = [r[1] for r in rows]
    user_ids_sorted = sorted(set(users))
    item_ids_sorted = sorted(set(items))
    u_index = {u: n for n, u in enumerate(user_ids_sorted)}
    i_index = {i: n for n, i in enumerate(item_ids_sorted)}
    u = np.fromiter((u_index[x] for x in users), np.int64, len(rows))
    i = np.fromiter((i_index[x] for x in items), np.int64, len(rows))
    ratings = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    weights = np.array([r[3] for r in rows], dtype=float)
    occurred = np.array([r[4] for r in rows], dtype=float)
    s = _baseline_strengths(u, ratings, weights, occurred, params)
    return to_csr(u, i, s, user_ids_sorted, item_ids_sorted)


def _baseline_solve_rows(other, gram, data, reg, alpha):
    f = other.shape[1]
    out = np.zeros((len(data.indptr) - 1, f))
    base = gram + reg * np.eye(f)
    for r in range(len(data.indptr) - 1):
        idx, s = data.user_rows(r)
        if len(idx) == 0:
            continue
        conf = 1.0 + alpha * s
        y = other[idx]
        out[r] = np.linalg.solve(base + (y.T * (conf - 1.0)) @ y, y.T @ conf)
    return out


def _baseline_als(data, params):
    from scipy.sparse import csr_matrix  # deferred: scipy (as in the old code)

    rng = np.random.default_rng(params.seed)
    users = rng.normal(0, 0.01, (len(data.user_ids), params.factors))
    items = rng.normal(0, 0.01, (len(data.item_ids), params.factors))
    t = csr_matrix((data.strength, data.indices, data.indptr), shape=(len(data.user_ids), len(data.item_ids))).T.tocsr()
    by_item = Interactions(data.item_ids, data.user_ids, t.indptr.astype(np.int64), t.indices.astype(np.int64),
                           t.data.astype(float))
    for _ in range(params.iterations):
        items = _baseline_solve_rows(users, users.T @ users, by_item, params.reg, params.alpha)
        users = _baseline_solve_rows(items, items.T @ items, data, params.reg, params.alpha)
    return users, items


# ----- one arm (in a subprocess) --------------------------------------------------------------------------
def run_arm(arm: str, n: int, factors_out: Path | None) -> dict:
    settings = get_settings().model_copy(update={"database_name": f"bench_train_{n}"})
    params = CollaborativeParams()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    phases: dict[str, float] = {}
    users = None
    if arm == "baseline":
        data = _baseline_load(settings, params)
        phases["load"] = time.perf_counter() - wall0
        users, _ = _baseline_als(data, params)
    elif arm == "new":
        with db.connect(settings, vector=False) as conn, conn.transaction():
            conn.execute("SET LOCAL work_mem = '256MB'")
            data = load_interactions(conn, params)
        phases["load"] = time.perf_counter() - wall0
        users = als(data, params).users
    elif arm == "full":
        training.train_collaborative_space(settings, params)
    else:
        raise ValueError(f"arm: unknown arm {arm!r}")
    if "load" in phases:
        phases["als"] = time.perf_counter() - wall0 - phases["load"]
    if factors_out is not None and users is not None:
        np.save(factors_out, users)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"arm": arm, "n": n, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(), "phases": phases}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def spawn(arm: str, n: int, factors_out: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--arm", arm, "--n", str(n)]
    if factors_out is not None:
        cmd += ["--factors-out", str(factors_out)]
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise RuntimeError(f"arm {arm} at {n:,} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# ----- driver ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="interaction counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats at the smallest size")
    parser.add_argument("--fresh", action="store_true", help="regenerate the databases")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline arm (e.g. --sizes 10000000 alone, where it would need ~3 GB of tuples)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--factors-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.n, args.factors_out)))
        return {}

    sizes = [int(s) for s in args.sizes.split(",")]
    runs: list[dict] = []
    data_info = {}
    tmp = args.output / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        settings = database(n, args.fresh)
        with db.connect(settings, vector=False) as conn:
            data_info[n] = dict(zip(("interactions", "users", "items", "pairs"), conn.execute(
                "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id), "
                "(SELECT count(*) FROM (SELECT DISTINCT user_id, item_id FROM rec.interactions) d) "
                "FROM rec.interactions").fetchone()))
        with_baseline = n == min(sizes) and not args.no_baseline
        arms = ["baseline", "new", "full"] if with_baseline else ["new", "full"]
        repeats = args.repeats if n == min(sizes) else 1
        for r in range(repeats):
            for arm in arms:
                out = tmp / f"{arm}_{n}.npy" if arm in ("baseline", "new") and r == 0 else None
                result = spawn(arm, n, out)
                result["repeat"] = r
                runs.append(result)
                console.print(f"{n:>12,} {arm:>8} repeat {r}: wall {result['wall_s']:.1f}s, cpu "
                              f"{result['cpu_s']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MB {result['phases']}")
        if with_baseline:
            base, new = np.load(tmp / f"baseline_{n}.npy"), np.load(tmp / f"new_{n}.npy")
            data_info[n]["max_abs_factor_difference"] = float(np.max(np.abs(base - new)))
    report = summarise(runs, data_info, sizes, args.repeats)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "train_scale.json"
    path.write_text(json.dumps(report, indent=2))
    print_report(report)
    console.print(f"wrote {path}")
    return report


def summarise(runs: list[dict], data_info: dict, sizes: list[int], repeats: int) -> dict:
    rows = []
    for n in sizes:
        for arm in ("baseline", "new", "full"):
            mine = [r for r in runs if r["n"] == n and r["arm"] == arm]
            if not mine:
                continue
            rows.append({"n": n, "arm": arm, "runs": len(mine),
                         "wall_s": statistics.median(r["wall_s"] for r in mine),
                         "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                         "load_s": statistics.median(r["phases"].get("load", float("nan")) for r in mine),
                         "als_s": statistics.median(r["phases"].get("als", float("nan")) for r in mine)})
    small = min(sizes)
    pick = {(r["n"], r["arm"]): r for r in rows}
    ratio = {}
    if (small, "baseline") in pick and (small, "new") in pick:
        ratio = {k: pick[(small, "baseline")][k] / pick[(small, "new")][k] for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    return {"benchmark": "train_scale", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average": os.getloadavg()},
            "params": CollaborativeParams().__dict__, "data": {str(k): v for k, v in data_info.items()},
            "repeats_at_smallest": repeats, "rows": rows, "baseline_over_new_at_smallest": ratio, "runs": runs,
            "targets": {"10M_wall_s": 600, "10M_peak_rss_mb": 4096}}


def print_report(report: dict) -> None:
    table = Table(title="collaborative training (medians; peak RSS of the training process)")
    for col in ("interactions", "arm", "runs", "wall s", "cpu s", "load s", "ALS s", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in report["rows"]:
        table.add_row(f"{r['n']:,}", r["arm"], str(r["runs"]), f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}",
                      f"{r['load_s']:.1f}", f"{r['als_s']:.1f}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    if report["baseline_over_new_at_smallest"]:
        ratio = report["baseline_over_new_at_smallest"]
        console.print(f"baseline / new at {min(int(k) for k in report['data']):,}: wall {ratio['wall_s']:.1f}x, "
                      f"cpu {ratio['cpu_s']:.1f}x, peak RSS {ratio['peak_rss_mb']:.1f}x; load average "
                      f"{report['machine']['load_average']}")


if __name__ == "__main__":
    main()
