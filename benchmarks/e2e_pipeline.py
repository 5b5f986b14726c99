"""Part (c) of benchmarks/embedding_throughput.py: ingestion → Celery queue → a real worker → pgvector.

Called by ``embedding_throughput.py --e2e`` with the same texts as parts (a) and (b); returns its ``Result``
(group "c") so the caller computes c/a. Lives in its own file because the pipeline engineer owns it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform.config import get_settings  # noqa: E402
from recplatform.text import item_card  # noqa: E402


def _e2e_items(texts: list[str]) -> tuple[list[dict], str]:
    """Item rows whose cards are exactly ``texts`` (the synthetic catalogue build_texts used), else rows titled
    with the texts (their cards then differ slightly from ``texts``: said in the result's params)."""
    try:
        from recplatform.datasets import generate_synthetic

        items = generate_synthetic(n_users=20, n_items=len(texts), seed=0).items.to_dict("records")
        if [item_card(row) for row in items] == texts:
            return items, "same cards"
    except ImportError:
        pass
    return [{"item_id": f"t{n}", "title": text[:500]} for n, text in enumerate(texts)], "titles = texts"


def _phase_totals(log_text: str) -> dict[str, float]:
    """Seconds per phase summed over every batch the worker logged ("(1.23s: current 0.004, features 0.1, ...)")."""
    import re

    totals: dict[str, float] = {}
    for phases in re.findall(r"written \d+ \([0-9.]+s: ([^)]*)\)", log_text):
        for name, value in re.findall(r"(\w+) ([0-9.]+)", phases):
            totals[name] = round(totals.get(name, 0.0) + float(value), 3)
    return totals


@contextlib.contextmanager
def e2e_arm(texts: list[str], args: argparse.Namespace):
    """PART (c) as an arm the caller interleaves with the others: yields ``(run, cpu, params)`` where
    ``run(texts)`` times nothing itself (the caller does) and returns when every item has its vector, and
    ``cpu()`` is the CPU seconds of this process plus the worker tree (ingestion runs here, embedding there).

    Embedded Postgres + Redis under a temporary state directory, one migrated database with the Feast repo applied,
    and one real worker started as ``recplatform worker`` would (``recplatform.workers.process.plan``: prefork on a
    CPU, solo on a GPU; same model and device). Each run empties rec.items / rec.item_embeddings, then calls
    ``ingest_and_publish(items=<the same n items>)`` (validation, commit, Feast online write, enqueue in 256-id
    messages) and waits until ``rec.item_embeddings`` holds a row per item for the active content space.
    """

    import shutil
    import subprocess
    import tempfile

    import psutil

    from recplatform import db, features, services
    from recplatform.config import Settings, feast_env
    from recplatform.embedding import spaces
    from recplatform.publish import ingest_and_publish as ingest
    from recplatform.workers.process import plan, worker_argv

    items, how = _e2e_items(texts)
    state = Path(tempfile.mkdtemp(prefix="recplat-bench-"))
    base = get_settings()
    settings = Settings(state_dir=state, model=args.model or base.model, device=args.device or base.device,
                        database_name="bench_e2e")
    worker = None
    services.up(settings)
    try:
        services.ensure_database(settings)
        db.migrate(settings)
        features.apply(settings)
        p = plan(settings, queues="embed,default")
        log_path = state / "logs" / "bench-worker.log"
        env = {**os.environ, **settings.export_env(), **feast_env(settings),
               "RECPLATFORM_DATABASE_NAME": settings.database_name,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        with open(log_path, "wb") as out:
            worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "recplatform.workers.app:celery_app",
                                       *worker_argv(p, name="bench@%h")],
                                      stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not ("worker process" in log_path.read_text() and " ready." in log_path.read_text()):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark worker did not start:\n" + log_path.read_text()[-2000:])
            time.sleep(0.1)
        tree = psutil.Process(worker.pid)

        def worker_cpu() -> float:
            total = 0.0
            for proc in [tree, *tree.children(recursive=True)]:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            return total

        def run_once(rows: list[dict]) -> tuple[float, float]:
            with db.transaction(settings) as conn:
                conn.execute("DELETE FROM rec.item_embeddings")
                conn.execute("DELETE FROM rec.items")
            cpu0, wall0 = worker_cpu(), time.perf_counter()
            ingest(items=rows, settings=settings, source="benchmark")
            with db.connect(settings, vector=False) as conn:
                while True:
                    done = conn.execute("SELECT count(*) FROM rec.item_embeddings e JOIN rec.embedding_models m "
                                        "USING (space_id) WHERE m.is_active AND m.kind = 'content'").fetchone()[0]
                    if done >= len(rows):
                        break
                    if worker.poll() is not None:
                        raise RuntimeError("benchmark worker died:\n" + log_path.read_text()[-2000:])
                    time.sleep(0.05)  # the poll is harness load on the same cores: every 50 ms, not 10
            return time.perf_counter() - wall0, worker_cpu() - cpu0

        run_once(items[:64])  # warm-up: first space registration, first Feast read, first batch
        space = spaces.active_space(settings)
        params = {"pool": p.pool, "concurrency": p.concurrency, "ids_per_message": 256, "items": how,
                  "space": space.name if space else None}
        by_texts = {len(items): items}

        def run(batch: list[str]) -> None:
            rows = by_texts.get(len(batch)) or items[: len(batch)]
            run_once(rows)

        yield run, lambda: time.process_time() + worker_cpu(), params
        params["worker_phase_s"] = _phase_totals(log_path.read_text(errors="replace"))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, 15)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
        services.down(settings)
        kept = ROOT / "benchmarks" / "results" / "e2e_worker.log"
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state / "logs" / "bench-worker.log", kept)  # the per-batch phase timings, for reading
        except OSError:
            pass
        shutil.rmtree(state, ignore_errors=True)


def measure_e2e(texts: list[str], args: argparse.Namespace, Result: type) -> "Result":
    """PART (c) on its own (not interleaved): ``--repeats`` runs of :func:`e2e_arm`, medians."""
    with e2e_arm(texts, args) as (run, cpu, params):
        result = Result("c", "end to end: ingest → queue → worker → pgvector", "c", params, len(texts), [], [])
        for repeat in range(args.repeats):
            cpu0, wall0 = cpu(), time.perf_counter()
            run(texts)
            result.wall_s.append(round(time.perf_counter() - wall0, 4))
            result.cpu_s.append(round(cpu() - cpu0, 4))
    result.median_wall_s = statistics.median(result.wall_s)
    result.items_per_s = len(texts) / result.median_wall_s
    result.items_per_cpu_s = len(texts) / max(statistics.median(result.cpu_s), 1e-9)
    return result
