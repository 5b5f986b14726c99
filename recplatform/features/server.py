"""The long-running Feast feature server of the embedded default: started by ``recplatform up``, stopped by ``down``.

It is Feast's own Python feature server (``FeatureStore.serve``: gunicorn + FastAPI) on this package's feature
repository, bound to 127.0.0.1 at ``RECPLATFORM_FEATURE_SERVER_PORT``, run as ``python -m
recplatform.features.server`` so that it reads the repository's configuration exactly as the platform does
(:func:`recplatform.features.store.repo_config`). Its pid and log live under the state directory; a small record
beside the pid says which database it serves, so that a process configured for another database never reads
from it. Interactive commands talk to it over HTTP (:mod:`recplatform.features.http_client`) and import no Feast.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from recplatform.config import Settings, feast_env, get_settings
from recplatform.features.views import ensure_spec
from recplatform.logs import setup_logging

log = logging.getLogger(__name__)

MODULE = "recplatform.features.server"
#: Seconds between the server's registry refreshes (Feast's serve CLI defaults to 60; `init` must show up fast).
REGISTRY_TTL_SECONDS = 5


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "pids" / "feature-server.pid"


def _record_file(settings: Settings) -> Path:
    return settings.state_dir / "pids" / "feature-server.json"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "logs" / "feature-server.log"


def target(settings: Settings) -> str:
    """Which database a server for these settings serves (host, port, database, user; no password)."""
    env = feast_env(settings)
    return "{RECPLATFORM_FEAST_PG_USER}@{RECPLATFORM_FEAST_PG_HOST}:{RECPLATFORM_FEAST_PG_PORT}/" \
           "{RECPLATFORM_FEAST_PG_DATABASE}".format(**env)


def server_pid(settings: Settings) -> int | None:
    """The pid of the feature server ``up`` started, if it still runs (checked by command line: no pid reuse)."""
    try:
        pid = int(pid_file(settings).read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and MODULE in " ".join(proc.cmdline()):
            return pid
    except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def _record(settings: Settings) -> dict:
    try:
        return json.loads(_record_file(settings).read_text())
    except (FileNotFoundError, ValueError, OSError):
        return {}


def served_url(settings: Settings) -> str | None:
    """The URL of a feature server started for this database on the configured port, or None (none recorded,
    its process gone, or one that serves another database or port: then whatever else may listen on that port
    is never asked). Whether it answers is the caller's to find out."""
    record = _record(settings)
    if record.get("target") != target(settings) or record.get("port") != settings.feature_server_port:
        return None
    return settings.feature_server_url if server_pid(settings) else None


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when Feast's ``/health`` at ``url`` says 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_feature_server(settings: Settings, *, wait: bool = True, timeout: float = 180.0) -> int:
    """Start the server in the background (idempotent; a server for another database or port is replaced) and,
    with ``wait``, return once ``/health`` answers. Raises RuntimeError with the log's tail if it dies."""
    pid = server_pid(settings)
    record = _record(settings)
    if pid and record.get("target") == target(settings) and record.get("port") == settings.feature_server_port:
        log.info("feature server already running (pid %s, %s)", pid, settings.feature_server_url)
        if wait:
            _wait_ready(settings, pid, timeout)
        return pid
    if pid:
        log.info("feature server (pid %s) serves %s; restarting it for %s", pid, record.get("target"), target(settings))
        stop_feature_server(settings)
    for path in (pid_file(settings).parent, log_file(settings).parent):
        path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.export_env(), **feast_env(settings),
           "RECPLATFORM_DATABASE_NAME": settings.database_name}
    fd = os.open(log_file(settings), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", MODULE], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    pid_file(settings).write_text(f"{proc.pid}\n")
    _record_file(settings).write_text(json.dumps({"target": target(settings), "port": settings.feature_server_port}))
    log.info("feature server starting (pid %s, %s, log %s)", proc.pid, settings.feature_server_url, log_file(settings))
    if wait:
        _wait_ready(settings, proc.pid, timeout)
    return proc.pid


def _wait_ready(settings: Settings, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(settings.feature_server_url):
            return
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            tail = log_file(settings).read_text(errors="replace")[-1500:] if log_file(settings).exists() else ""
            raise RuntimeError(f"the Feast feature server exited at start (port {settings.feature_server_port}); "
                               f"{log_file(settings)}:\n{tail}")
        time.sleep(0.2)
    raise RuntimeError(f"the Feast feature server did not answer on {settings.feature_server_url} within "
                       f"{timeout:.0f}s; see {log_file(settings)}")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def stop_feature_server(settings: Settings, timeout: float = 30.0) -> bool:
    """Stop the server ``up`` started (SIGTERM to gunicorn's master, which stops its workers); by recorded pid."""
    pid = server_pid(settings)
    if pid:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
        os.kill(pid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(family, timeout=timeout)
        for straggler in alive:
            log.warning("feature server process %s did not stop in %ss; killing it", straggler.pid, timeout)
            straggler.kill()
        _reap(pid)
    pid_file(settings).unlink(missing_ok=True)
    _record_file(settings).unlink(missing_ok=True)
    return pid is not None


def main() -> None:
    """Run the server in this process (what ``start_feature_server`` launches): Feast's schemas, the repository
    description the HTTP clients read, then ``FeatureStore.serve`` on 127.0.0.1."""
    from recplatform.features.store import get_store  # deferred: psycopg, yaml (clients import this module)

    settings = get_settings()
    setup_logging(settings.log_level)
    store = get_store(settings)
    ensure_spec(settings)
    log.info("Feast feature server for %s on %s", target(settings), settings.feature_server_url)
    store.serve(host="127.0.0.1", port=settings.feature_server_port, no_access_log=True, workers=1,
                registry_ttl_sec=REGISTRY_TTL_SECONDS)


if __name__ == "__main__":
    main()
