"""Embedding throughput with 1 and 2 worker processes on this machine: the ratio, and why it is what it is.

Arms (each its own database and Redis database on one embedded server, workers started once, solo pool):

- ``1w``: one worker process, torch intra-op threads = torch's default (all cores);
- ``2w``: two worker processes, each with torch's default threads (the cores are oversubscribed);
- ``2w-1t``: two worker processes with one intra-op thread each (``OMP_NUM_THREADS=1``, what ``recplatform
  worker`` does for its prefork children: cores / children).

Each repeat deletes the arm's vectors and has ``reconcile`` enqueue the whole catalogue (256 ids per message),
timed until every item has its vector; the arms are interleaved and their order alternates per repeat, so load
from other work on the machine falls on every arm. Reported: median wall time, items/s, the workers' CPU-seconds,
and each arm's ratio to ``1w`` measured in the same run. JSON goes to benchmarks/results/worker_scaling.json.

    PYTHONPATH=. python benchmarks/worker_scaling.py --items 1024 --repeats 3 [--model hashing:384]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform import db, features, services
from recplatform.config import Settings, feast_env, get_settings
from recplatform.datasets import generate_synthetic
from recplatform.embedding import spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.embedding.loader import available_cpus
from recplatform.publish import ingest_and_publish as ingest
from recplatform.workers.enqueue import reconcile_spaces

ARMS = {"1w": (1, None), "2w": (2, None), "2w-1t": (2, 1)}  # name: (worker processes, OMP threads or default)


def start_workers(settings: Settings, n: int, threads: int | None, logs: Path, tag: str) -> list[subprocess.Popen]:
    env = {**os.environ, **settings.export_env(), **feast_env(settings),
           "RECPLATFORM_DATABASE_NAME": settings.database_name, "RECPLATFORM_BROKER_URL": settings.celery_broker_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs, paths = [], []
    for k in range(n):
        path = logs / f"{tag}-{k}.log"
        with open(path, "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "recplatform.workers.app:celery_app", "worker", "-Q", "embed",
                 "-P", "solo", "-n", f"{tag}-{k}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True))
        paths.append(path)
    deadline = time.monotonic() + 600
    for proc, path in zip(procs, paths):
        while " ready." not in path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
    return procs


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    total = 0.0
    for proc in procs:
        try:
            tree = psutil.Process(proc.pid)
            for p in [tree, *tree.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_once(settings: Settings, procs: list[subprocess.Popen], n: int) -> tuple[float, float]:
    with db.transaction(settings) as conn:
        conn.execute("DELETE FROM rec.item_embeddings")
    cpu0, wall0 = cpu_seconds(procs), time.perf_counter()
    reconcile_spaces(settings, force=True, register=False)
    with db.connect(settings, vector=False) as conn:
        while conn.execute("SELECT count(*) FROM rec.item_embeddings").fetchone()[0] < n:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a benchmark worker died")
            time.sleep(0.02)
    return time.perf_counter() - wall0, cpu_seconds(procs) - cpu0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="encoder (default: Settings.model; hashing:384 = no model)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "worker_scaling.json")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    model = args.model or get_settings().model
    state = Path(tempfile.mkdtemp(prefix="recplat-scaling-"))
    base = Settings(state_dir=state, model=model)
    items = generate_synthetic(n_users=20, n_items=args.items, seed=0).items.to_dict("records")
    running: dict[str, list[subprocess.Popen]] = {}
    arm_settings: dict[str, Settings] = {}
    results = {a: {"wall_s": [], "cpu_s": []} for a in arms}
    services.up(base)
    try:
        encoder = load_encoder(model)
        for number, arm in enumerate(arms, start=1):
            settings = base.model_copy(update={
                "database_name": f"scaling_{arm.replace('-', '_')}",
                "broker_url": f"redis+socket://{base.redis_socket}?virtual_host={number + 4}"})
            services.ensure_database(settings)
            db.migrate(settings)
            features.apply(settings)
            ingest(items=items, settings=settings, enqueue=False)
            spaces.ensure_content_space(settings, encoder)
            n, threads = ARMS[arm]
            running[arm] = start_workers(settings, n, threads, state, arm)
            arm_settings[arm] = settings
            run_once(settings, running[arm], args.items)  # warm-up: first Feast read, first batch per worker
        for repeat in range(args.repeats):
            order = arms if repeat % 2 == 0 else arms[::-1]
            for arm in order:
                wall, cpu = run_once(arm_settings[arm], running[arm], args.items)
                results[arm]["wall_s"].append(round(wall, 3))
                results[arm]["cpu_s"].append(round(cpu, 3))
                print(f"  repeat {repeat + 1}/{args.repeats} {arm:>6}: {args.items / wall:8.1f} items/s, "
                      f"{cpu:6.1f} CPU-s in {wall:6.1f} s", flush=True)
    finally:
        for procs in running.values():
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
        for procs in running.values():
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        services.down(base)
        shutil.rmtree(state, ignore_errors=True)

    base_wall = statistics.median(results[arms[0]]["wall_s"])
    print(f"\nworker scaling: {args.items} items, model {model}, {available_cpus()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (medians of {args.repeats}, arms interleaved)")
    print(f"{'arm':>7} | {'items/s':>8} | {'wall s':>7} | {'CPU-s':>6} | {'CPU/wall':>8} | {'vs ' + arms[0]:>7}")
    for arm in arms:
        wall, cpu = statistics.median(results[arm]["wall_s"]), statistics.median(results[arm]["cpu_s"])
        results[arm].update(items_per_s=round(args.items / wall, 1), median_wall_s=wall, median_cpu_s=cpu,
                            ratio_to_first=round(base_wall / wall, 3), processes=ARMS[arm][0],
                            omp_threads=ARMS[arm][1])
        print(f"{arm:>7} | {args.items / wall:8.1f} | {wall:7.2f} | {cpu:6.1f} | {cpu / wall:8.2f} | "
              f"{base_wall / wall:7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"items": args.items, "repeats": args.repeats, "model": model,
                                    "cpus": available_cpus(), "load_average_end": os.getloadavg(),
                                    "arms": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
