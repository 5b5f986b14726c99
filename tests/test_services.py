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
    first = _cli(state_dir, "up", "--no-worker", "--no-feature-server")  # those two: tests/test_platform_up.py
    assert first.returncode == 0, first.stderr
    settings = Settings(state_dir=state_dir)
    pg_pid, redis_pid = services.postgres_pid(settings), services.redis_pid(settings)
    assert pg_pid and redis_pid
    second = _cli(state_dir, "up", "--no-worker", "--no-feature-server")
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
    started = _cli(state_dir, "up", "--no-worker", "--no-feature-server", RECPLATFORM_PG_PORT=str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    settings = Settings(state_dir=state_dir, pg_port=port)
    assert services.postgres_pid(settings) and services.redis_pid(settings)
    assert (settings.pg_socket_dir / f".s.PGSQL.{port}").is_socket()
    ok, detail = services.postgres_answers(settings.postgres_url)
    assert ok, detail
    assert _cli(state_dir, "up", "--no-worker", "--no-feature-server", RECPLATFORM_PG_PORT=str(port)).returncode == 0  # and again, idempotent


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


def _beat_of(settings: Settings, worker_pid: int, timeout: float = 90) -> int:
    """The worker's beat process: its child that is not one of the pool processes the worker reports."""
    import socket

    from recplatform.workers.app import make_app

    control = make_app(settings).control
    name = f"recplatform-local@{socket.gethostname()}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = (control.inspect(destination=[name], timeout=1).stats() or {}).get(name, {})
        pool = set(stats.get("pool", {}).get("processes", []))
        others = {c.pid for c in psutil.Process(worker_pid).children()} - pool
        if pool and len(others) == 1:
            return others.pop()
        time.sleep(0.2)
    raise AssertionError(f"worker {worker_pid} did not report its pool and start beat")


def _wait_for(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_worker_leaves_no_beat_and_the_next_worker_runs_exactly_one(services_settings, tmp_path):
    from recplatform.workers.process import start_local_worker, stop_local_worker

    settings = Settings(state_dir=tmp_path, database_url=services_settings.postgres_url, model="hashing:64",
                        broker_url=f"redis+socket://{services_settings.redis_socket}?virtual_host=15")
    lock = tmp_path / "celerybeat-schedule.lock"
    beats: list[int] = []
    workers: list[int] = []  # each leads its own session (start_new_session)
    try:
        first = start_local_worker(settings)
        workers.append(first)
        beats.append(_beat_of(settings, first))
        os.kill(first, signal.SIGKILL)  # as the OOM killer or `kill -9` would: no shutdown of its children
        assert _wait_for(lambda: not _live(beats[0]), 10), f"beat {beats[0]} outlived its worker {first}"

        second = start_local_worker(settings)
        workers.append(second)
        beats.append(_beat_of(settings, second))
        assert _wait_for(lambda: lock.exists() and lock.read_text().strip() == str(beats[1]))  # it holds the lock
        time.sleep(1)
        running = [pid for pid in beats if _live(pid)]
        assert running == [beats[1]], f"beat processes running: {running}"
    finally:
        for pid in [*workers, *beats]:  # whatever is left, without waiting for a warm shutdown
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        stop_local_worker(settings, timeout=10)


def test_a_second_beat_on_the_same_schedule_waits_until_the_first_ends(tmp_path):
    import select

    script = ("import sys, time; from recplatform.workers.app import _take_beat_lock; "
              "_take_beat_lock(sys.argv[1]); print('scheduling', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(services.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    schedule = str(tmp_path / "celerybeat-schedule")
    beat = lambda: subprocess.Popen([sys.executable, "-c", script, schedule], stdout=subprocess.PIPE,  # noqa: E731
                                    stderr=subprocess.PIPE, text=True, env=env)
    first = beat()
    second = None
    try:
        assert first.stdout.readline().strip() == "scheduling"
        second = beat()
        assert "waits to take over" in second.stderr.readline()  # it tried, and found the first one there
        assert not select.select([second.stdout], [], [], 1.5)[0], "a second beat ran beside the first"
        first.kill()
        first.wait(10)
        assert select.select([second.stdout], [], [], 10)[0] and second.stdout.readline().strip() == "scheduling"
    finally:
        for proc in (first, second):
            if proc:
                proc.kill()
                proc.wait(10)
