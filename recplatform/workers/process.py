"""Starting and stopping Celery worker processes: pool defaults from the hardware, the command line, and the
one background worker (with the single beat) that ``recplatform up`` runs for the embedded default (pids under
state_dir).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil

from recplatform.config import Settings, feast_env

log = logging.getLogger(__name__)

APP = "recplatform.workers.app:celery_app"


@dataclass(frozen=True)
class WorkerPlan:
    """How a worker runs: pool, concurrency, queues, and the device its encoder will use."""

    pool: str
    concurrency: int
    queues: tuple[str, ...]
    device: str
    beat: bool = False


def detect_device(settings: Settings) -> str:
    if settings.device:
        return settings.device
    try:
        import torch  # deferred: torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


def plan(settings: Settings, *, queues: str = "embed,default", concurrency: int | None = None,
         pool: str | None = None, beat: bool = False) -> WorkerPlan:
    """Sensible defaults: one ``solo`` process owns a GPU (the model loads once, batches fill the device);
    on a CPU, ``prefork`` with one child per 4 cores (each child's torch uses its share of the cores)."""
    names = tuple(q.strip() for q in queues.split(",") if q.strip())
    unknown = [q for q in names if q not in ("embed", "default")]
    if not names or unknown:
        raise ValueError(f"queues: expected a comma-separated subset of embed,default, got {queues!r}")
    device = detect_device(settings)
    if pool is None:
        pool = "solo" if device.startswith("cuda") else "prefork"
    if pool not in ("solo", "threads", "prefork", "processes"):
        raise ValueError(f"pool: expected solo, threads or prefork, got {pool!r}")
    if concurrency is None:
        from recplatform.embedding.loader import available_cpus  # deferred: numpy (the embedding package)

        concurrency = 1 if pool == "solo" else max(1, available_cpus() // 4)
    if concurrency < 1:
        raise ValueError(f"concurrency: must be >= 1, got {concurrency}")
    return WorkerPlan(pool=pool, concurrency=concurrency, queues=names, device=device, beat=beat)


def worker_argv(p: WorkerPlan, *, loglevel: str = "INFO", name: str | None = None,
                schedule: str | None = None) -> list[str]:
    """Arguments after ``celery -A APP`` for this plan."""
    argv = ["worker", "-Q", ",".join(p.queues), "-P", p.pool, "-c", str(p.concurrency), "--loglevel", loglevel,
            "-n", name or f"recplatform-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if p.beat:
        argv += ["-B"] + (["-s", schedule] if schedule else [])
    return argv


def _pid_file(settings: Settings):
    return settings.state_dir / "pids" / "worker.pid"


def _celery_pid(path) -> int | None:
    """The pid a file names (its first word), when that process is a live (not zombie) Celery process."""
    try:
        pid = int(path.read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and "celery" in " ".join(proc.cmdline()):
            return pid
    except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def local_worker_pid(settings: Settings) -> int | None:
    return _celery_pid(_pid_file(settings))


def beat_pid(settings: Settings) -> int | None:
    """The beat that holds the local schedule's lock (``<schedule>.lock`` names its holder), if it runs."""
    return _celery_pid(settings.state_dir / "celerybeat-schedule.lock")


def workers_answering(settings: Settings, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answer a ping on the configured broker within ``timeout`` seconds."""
    from recplatform.workers.app import make_app  # deferred: celery

    try:
        replies = make_app(settings).control.ping(timeout=timeout) or []
    except Exception as exc:  # noqa: BLE001 - a broker that does not answer has no worker answering either
        log.warning("could not ping workers: %s", exc)
        return []
    return sorted(name for reply in replies for name in reply)


def start_local_worker(settings: Settings, *, beat: bool = True) -> int:
    """Start one background worker (both queues, beat for reconcile) for the embedded default. Idempotent."""
    pid = local_worker_pid(settings)
    if pid:
        log.info("worker already running (pid %s)", pid)
        return pid
    p = plan(settings, beat=beat)
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pid_file(settings).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.export_env(), **feast_env(settings),
           "RECPLATFORM_DATABASE_NAME": settings.database_name}
    argv = [sys.executable, "-m", "celery", "-A", APP,
            *worker_argv(p, name="recplatform-local@%h", schedule=str(settings.state_dir / "celerybeat-schedule"))]
    log_fd = os.open(logs / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    _pid_file(settings).write_text(f"{proc.pid}\n")
    log.info("worker started (pid %s, pool %s x%d on %s, log %s)", proc.pid, p.pool, p.concurrency, p.device,
             logs / "worker.log")
    return proc.pid


def wait_for_beat(settings: Settings, timeout: float = 60.0) -> int | None:
    """Wait until the local worker runs its beat (it starts once the worker has booted); its pid, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = beat_pid(settings)
        if pid or local_worker_pid(settings) is None:
            return pid
        time.sleep(0.2)
    return None


def stop_local_worker(settings: Settings, timeout: float = 60.0) -> bool:
    """Warm shutdown (SIGTERM: finish the current task) of the worker ``up --worker`` started; by pid."""
    pid = local_worker_pid(settings)
    _pid = _pid_file(settings)
    if pid:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        os.kill(pid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs([proc, *children], timeout=timeout)
        for straggler in alive:
            log.warning("worker process %s did not stop in %ss; killing it", straggler.pid, timeout)
            straggler.kill()
    _pid.unlink(missing_ok=True)
    return pid is not None
