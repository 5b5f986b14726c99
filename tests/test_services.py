"""`recplatform up | down | status` on real processes: idempotent, crash-tolerant, and tidy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from recplatform import services
from recplatform.config import Settings


def _cli(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RECPLATFORM_STATE_DIR": str(state), **env}
    environment.pop("RECPLATFORM_DATABASE_NAME", None)
    return subprocess.run([sys.executable, "-m", "recplatform.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=120)


def _processes_under(state: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(state) in part for part in (proc.info["cmdline"] or [])):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture
def state_dir():
    path = Path(tempfile.mkdtemp(prefix="recplat-svc-"))
    yield path
    services.down(Settings(state_dir=path))
    shutil.rmtree(path, ignore_errors=True)


def test_up_twice_is_harmless_and_down_leaves_nothing(state_dir):
    first = _cli(state_dir, "up")
    assert first.returncode == 0, first.stderr
    settings = Settings(state_dir=state_dir)
    pg_pid, redis_pid = services.postgres_pid(settings), services.redis_pid(settings)
    assert pg_pid and redis_pid
    second = _cli(state_dir, "up")
    assert second.returncode == 0, second.stderr
    assert (services.postgres_pid(settings), services.redis_pid(settings)) == (pg_pid, redis_pid)
    status = _cli(state_dir, "status")
    assert "running" in status.stdout and "postgres" in status.stdout and "redis" in status.stdout
    assert _processes_under(state_dir), "up started processes under the state directory"

    down = _cli(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not psutil.pid_exists(pg_pid) and not psutil.pid_exists(redis_pid)
    assert _processes_under(state_dir) == []
    assert "DOWN" in _cli(state_dir, "status").stdout


def test_up_recovers_after_a_crash(state_dir):
    settings = Settings(state_dir=state_dir)
    services.up(settings)
    for pid in (services.postgres_pid(settings), services.redis_pid(settings)):
        os.kill(pid, signal.SIGKILL)
        psutil.Process(pid).wait(10) if psutil.pid_exists(pid) else None
    # Both pid files (ours and postmaster.pid) now name dead processes.
    rows = {r.name: r for r in services.up(settings)}
    assert rows["postgres"].running and rows["redis"].running
    ok, detail = services.postgres_answers(settings.postgres_url)
    assert ok, detail


def test_nothing_listens_on_a_network_address(state_dir):
    settings = Settings(state_dir=state_dir)
    services.up(settings)
    pids = {services.postgres_pid(settings), services.redis_pid(settings)}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            pytest.fail(f"embedded service listens on {conn.laddr}")


def test_down_does_not_touch_processes_it_did_not_start(state_dir):
    settings = Settings(state_dir=state_dir)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (state_dir / "pids").mkdir(parents=True, exist_ok=True)
        (state_dir / "pids" / "redis.pid").write_text(f"{bystander.pid}\n")  # a pid reused by another program
        services.down(settings)
        assert bystander.poll() is None
    finally:
        bystander.kill()


def test_external_database_is_left_alone_and_checked(state_dir):
    settings = Settings(state_dir=state_dir, database_url="postgresql://nobody@127.0.0.1:1/none",
                        broker_url="redis://127.0.0.1:1/0")
    rows = {r.name: r for r in services.up(settings)}
    assert not rows["postgres"].managed and not rows["postgres"].running
    assert not rows["broker"].running
    assert not (state_dir / "pgdata").exists()


# ----- faults: a port, a zombie postmaster, a killed worker ----------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_up_with_a_port_uses_that_port_for_the_socket_too(state_dir):
    port = _free_port()
    started = _cli(state_dir, "up", RECPLATFORM_PG_PORT=str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    settings = Settings(state_dir=state_dir, pg_port=port)
    assert services.postgres_pid(settings) and services.redis_pid(settings)
    assert (settings.pg_socket_dir / f".s.PGSQL.{port}").is_socket()
    ok, detail = services.postgres_answers(settings.postgres_url)
    assert ok, detail
    assert _cli(state_dir, "up", RECPLATFORM_PG_PORT=str(port)).returncode == 0  # and again, idempotent


# Runs `up` as a child subreaper that never reaps: a killed postmaster stays a zombie, as under a container
# init that does not reap (the pid still "exists", so Postgres's own lock-file check thinks it is alive).
_ZOMBIE_KEEPER = r"""
import ctypes, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
from recplatform import services
from recplatform.config import Settings
settings = Settings(state_dir=sys.argv[1])
services.up(settings)
print(services.postgres_pid(settings), flush=True)
sys.stdin.read()
"""


def test_up_recovers_after_sigkill_of_the_postmaster_left_as_a_zombie(state_dir):
    from recplatform import db

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(services.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    keeper = subprocess.Popen([sys.executable, "-c", _ZOMBIE_KEEPER, str(state_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(keeper.stdout.readline())
        settings = Settings(state_dir=state_dir)
        with db.connect(settings, autocommit=True, vector=False) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        os.kill(pid, signal.SIGKILL)
        zombie = psutil.Process(pid)
        for _ in range(100):
            if zombie.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        assert zombie.status() == psutil.STATUS_ZOMBIE

        rows = {r.name: r for r in services.up(settings)}
        assert rows["postgres"].running and rows["postgres"].pid != pid
        assert zombie.status() == psutil.STATUS_ZOMBIE  # `up` coped with the zombie; it could not reap it
        with db.connect(settings, vector=False) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    finally:
        keeper.stdin.close()
        keeper.wait(10)
