"""Feast on the interactive path: the feature server over HTTP against the in-process Feast path, in one run.

What it measures, each in a fresh process as a user meets it (interleaved round by round, alternating which arm
goes first; medians over ``--rounds``):

* ``recplatform features user ID --json``: the wall time of the whole command (process start to exit);
* ``RecClient().add_users([one user])`` (enqueue on, as by default): the call's wall time inside a fresh process
  (the first call pays for whatever it imports), a second call in the same process, and the process's wall time;
* floors that no Feast path goes below: ``python -c pass`` and ``python -c "import recplatform.cli"``.

Beside each wall time, the CPU seconds the child process used (user + system, from ``getrusage``): on a shared,
loaded machine the wall time is mostly waiting for a core, and the CPU time is what the command itself costs.
It also records which heavy modules each measured process imported (``features user`` over HTTP should import
none of psycopg, numpy, pandas, pydantic, Feast, Celery).

Arm ``http``: the feature server ``recplatform up`` starts answers (``RECPLATFORM_FEATURE_SERVER_PORT`` = its
port). Arm ``in-process``: the same commands with the port pointing where no server runs, so the platform falls
back to Feast in the calling process (what every call did before the server existed). Targets (issue 11):
``features user`` <= 0.5 s, ``add_users`` of one user <= 0.3 s.

Everything runs on a fresh state directory (embedded Postgres and Redis, the feature server; no worker), with a
small synthetic dataset written to Feast's online store. Prints a table and writes
``benchmarks/results/feature_latency.json``. Usage: ``python benchmarks/feature_latency.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform import db, features, services
from recplatform.config import Settings
from recplatform.features.server import start_feature_server, stop_feature_server

console = Console(width=int(os.environ.get("COLUMNS", "150")))
TARGETS = {"features user (command wall)": 0.5, "add_users one user (first call)": 0.3,
           "add_users one user (next call)": 0.3}
HEAVY = ("psycopg", "numpy", "pandas", "pydantic", "feast", "celery")
ADD_USER = ("import json, sys, time; from recplatform.client import RecClient; client = RecClient(); "
            "user = {'user_id': sys.argv[1], 'age': 31, 'gender': 'F', 'occupation': 'writer', 'zip_code': '10001'}; "
            "t = time.perf_counter(); c = time.process_time(); client.add_users([user]); "
            "first, first_cpu = time.perf_counter() - t, time.process_time() - c; "
            "t = time.perf_counter(); c = time.process_time(); "
            "client.add_users([{**user, 'user_id': sys.argv[1] + '-b'}]); "
            "print(json.dumps({'call': first, 'call_cpu': first_cpu, 'again': time.perf_counter() - t, "
            "'again_cpu': time.process_time() - c, "
            f"'imported': [m for m in {HEAVY!r} if m in sys.modules]}}))")
FEATURES_USER = ("import json, runpy, sys; sys.argv = ['recplatform', 'features', 'user', sys.argv[1], '--json']\n"
                 "try:\n    runpy.run_module('recplatform.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                 f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)")
FLOORS = {"floor: python -c pass": ["-c", "pass"], "floor: import recplatform.cli": ["-c", "import recplatform.cli"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], env: dict) -> tuple[float, float, str, str]:
    """Wall and CPU seconds (user + system) of one child process, with its stdout and stderr."""
    cpu, started = _cpu_of_children(), time.perf_counter()
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {run.stderr[-2000:]}")
    return wall, _cpu_of_children() - cpu, run.stdout, run.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "feature_latency.json")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    state = Path(tempfile.mkdtemp(prefix="recplat-bench-feat-"))
    port = _free_port()
    settings = Settings(state_dir=state, feature_server_port=port, model="hashing:64")
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(state), "RECPLATFORM_MODEL": "hashing:64",
           "RECPLATFORM_LOG_LEVEL": "WARNING"}
    env.pop("RECPLATFORM_DATABASE_NAME", None)
    arms = {"http": {**env, "RECPLATFORM_FEATURE_SERVER_PORT": str(port)},
            "in-process": {**env, "RECPLATFORM_FEATURE_SERVER_PORT": str(_free_port())}}  # nobody listens there
    samples: dict[str, dict[str, list[float]]] = {
        arm: {name: [] for name in ("features user (command wall)", "features user (command CPU)",
                                    "add_users one user (first call)", "add_users one user (first call CPU)",
                                    "add_users one user (next call)", "add_users one user (next call CPU)",
                                    "add_users one user (process wall)",
                                    "add_users one user (process CPU)", *FLOORS, *(f"{f} CPU" for f in FLOORS))}
        for arm in arms}
    imported: dict[str, dict[str, set]] = {arm: {"features user": set(), "add_users": set()} for arm in arms}
    try:
        with console.status("services, schema, Feast repository, synthetic data"):
            services.up(settings)
            start_feature_server(settings, wait=False)
            db.migrate(settings)
            features.apply(settings)
            from recplatform.datasets import generate_synthetic
            from recplatform.publish import ingest_and_publish

            ingest_and_publish(dataset=generate_synthetic(args.users, 200, seed=1), settings=settings, enqueue=False)
            start_feature_server(settings, wait=True)
            time.sleep(6)  # one registry refresh of the server after `apply`
        python = sys.executable
        for n in range(args.rounds):
            order = list(arms) if n % 2 == 0 else list(reversed(arms))
            for arm in order:
                wall, cpu, out, err = _timed([python, "-c", FEATURES_USER, f"u{n + 1}"], arms[arm])
                assert f'"user_id": "u{n + 1}"' in out, out
                samples[arm]["features user (command wall)"].append(wall)
                samples[arm]["features user (command CPU)"].append(cpu)
                imported[arm]["features user"].update(json.loads(err.strip().splitlines()[-1]))
            for arm in order:
                wall, cpu, out, _ = _timed([python, "-c", ADD_USER, f"bench-{arm}-{n}"], arms[arm])
                got = json.loads(out.strip().splitlines()[-1])
                samples[arm]["add_users one user (first call)"].append(got["call"])
                samples[arm]["add_users one user (first call CPU)"].append(got["call_cpu"])
                samples[arm]["add_users one user (next call)"].append(got["again"])
                samples[arm]["add_users one user (next call CPU)"].append(got["again_cpu"])
                samples[arm]["add_users one user (process wall)"].append(wall)
                samples[arm]["add_users one user (process CPU)"].append(cpu)
                imported[arm]["add_users"].update(got["imported"])
            for arm in order:  # what no Feast path can go below: the interpreter, and the CLI's own imports
                for name, argv in FLOORS.items():
                    wall, cpu, _, _ = _timed([python, *argv], arms[arm])
                    samples[arm][name].append(wall)
                    samples[arm][f"{name} CPU"].append(cpu)
            console.print(f"round {n + 1}/{args.rounds} done")
    finally:
        stop_feature_server(settings)
        services.down(settings)
        shutil.rmtree(state, ignore_errors=True)

    rows = []
    for measure in samples["http"]:
        http = statistics.median(samples["http"][measure])
        local = statistics.median(samples["in-process"][measure])
        target = TARGETS.get(measure)
        rows.append({"measure": measure, "http_median_s": round(http, 4), "in_process_median_s": round(local, 4),
                     "in_process_over_http": round(local / http, 2), "target_s": target,
                     "http_meets_target": None if target is None else http <= target,
                     "http_samples_s": [round(v, 4) for v in samples["http"][measure]],
                     "in_process_samples_s": [round(v, 4) for v in samples["in-process"][measure]]})
    table = Table(title=f"Feast on the interactive path: feature server (HTTP) vs in-process, {args.rounds} rounds "
                        "interleaved, medians")
    for column in ("measure", "http (s)", "in-process (s)", "in-process / http", "target (s)", "met"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["measure"], f"{r['http_median_s']:.3f}", f"{r['in_process_median_s']:.3f}",
                      f"{r['in_process_over_http']:.1f}x", "" if r["target_s"] is None else f"{r['target_s']}",
                      "" if r["http_meets_target"] is None else ("yes" if r["http_meets_target"] else "NO"))
    console.print(table)
    for arm in arms:
        console.print(f"{arm}: heavy modules imported by " + "; ".join(
            f"{what}: {', '.join(sorted(mods)) or 'none'}" for what, mods in imported[arm].items()))
    console.print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "feature_latency", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/feature_latency.py " + " ".join(sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "rounds": args.rounds, "users": args.users,
        "load_avg_at_start": load_at_start,
        "heavy_modules_imported": {arm: {what: sorted(m) for what, m in v.items()} for arm, v in imported.items()},
        "rows": rows,
    }, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
