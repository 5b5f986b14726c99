"""Authentication of the embedded Postgres: nobody local is a superuser without the password.

One server of its own (started like ``RECPLATFORM_PG_PORT=N recplatform up``, so also on 127.0.0.1:N) for the
socket, TCP, file-mode and upgrade checks; the shared test server for ``rec_reader``, which needs a migrated
database. "Another OS user" is ``nobody`` through ``runuser`` (the tests run as root in CI; skipped otherwise).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from recplatform import db, services
from recplatform.config import Settings, redact_url

NO_PASSFILE = "passfile=/dev/null"  # libpq must not find a password anywhere but where a test puts one


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RECPLATFORM_")}
    environment.update({"RECPLATFORM_STATE_DIR": str(state), **env})
    return subprocess.run([sys.executable, "-m", "recplatform.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=120)


def _refused(conninfo: str) -> str:
    """The error text of a connection attempt that must fail."""
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(conninfo, connect_timeout=5).close()
    return str(caught.value)


def _psql() -> str:
    return services.pg_bin("psql")


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or not runuser:
        pytest.skip("needs root and runuser to act as another OS user")
    env = {"PATH": "/usr/bin:/bin", "PGPASSFILE": "/dev/null", "HOME": "/nonexistent"}
    return subprocess.run([runuser, "-u", "nobody", "--", *argv], env=env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def server():
    """An embedded Postgres + Redis started by the CLI with RECPLATFORM_PG_PORT set."""
    state = Path(tempfile.mkdtemp(prefix="recplat-auth-"))
    port = _free_port()
    started = _cli(state, "up", "--no-worker", "--no-feature-server", RECPLATFORM_PG_PORT=str(port))
    settings = Settings(state_dir=state, pg_port=port)
    yield settings, started
    services.down(settings)
    shutil.rmtree(state, ignore_errors=True)


def test_up_with_a_tcp_port_starts_everything_and_connects(server):
    settings, started = server
    assert started.returncode == 0, started.stdout + started.stderr
    rows = {r.name: r for r in services.status(settings)}
    assert rows["postgres"].running and rows["redis"].running, rows
    assert (settings.pg_socket_dir / f".s.PGSQL.{settings.pg_port}").is_socket()
    ok, detail = services.postgres_answers(settings.postgres_url)
    assert ok, detail
    password = quote(settings.postgres_password, safe="")
    tcp = f"postgresql://postgres:{password}@127.0.0.1:{settings.pg_port}/{settings.database_name}"
    with psycopg.connect(tcp) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_no_password_no_connection_on_the_socket_or_tcp(server):
    settings, _ = server
    socket_dir, port = settings.pg_socket_dir, settings.pg_port
    for conninfo in (f"host={socket_dir} port={port} user=postgres dbname=postgres {NO_PASSFILE}",
                     f"host=127.0.0.1 port={port} user=postgres dbname=postgres {NO_PASSFILE}"):
        assert "no password supplied" in _refused(conninfo)
        assert "password authentication failed" in _refused(conninfo + " password=guess")


def test_another_os_user_cannot_reach_the_socket_or_log_in_over_tcp(server):
    settings, _ = server
    via_socket = _as_nobody(_psql(), "-w", f"host={settings.pg_socket_dir} port={settings.pg_port} "
                            "user=postgres dbname=postgres", "-c", "SELECT 1")
    assert via_socket.returncode != 0 and "Permission denied" in via_socket.stderr, via_socket.stderr
    via_tcp = _as_nobody(_psql(), "-w", f"host=127.0.0.1 port={settings.pg_port} user=postgres dbname=postgres",
                         "-c", "SELECT 1")
    assert via_tcp.returncode != 0 and "no password supplied" in via_tcp.stderr, via_tcp.stderr
    for secret in (settings.postgres_password_file, settings.reader_password_file, settings.pgpass_file):
        assert _as_nobody("cat", str(secret)).returncode != 0


def test_password_files_are_private_and_urls_carry_no_secret(server):
    settings, _ = server
    assert stat.S_IMODE(settings.secrets_dir.stat().st_mode) == 0o700
    for secret in (settings.postgres_password_file, settings.reader_password_file, settings.pgpass_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert stat.S_IMODE(settings.pg_socket_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.pg_data_dir.stat().st_mode) == 0o700
    password = settings.postgres_password
    assert len(password) >= 32 and settings.reader_password and settings.reader_password != password
    shown = [settings.postgres_url, settings.sqlalchemy_url, *(r.url for r in services.status(settings))]
    assert not [text for text in shown if password in text or settings.reader_password in text]
    assert settings.reader_password not in str(settings.export_env())  # generated: children read the file


def test_configured_reader_password_wins_over_the_generated_one(tmp_path):
    assert Settings(state_dir=tmp_path).reader_password is None  # nothing generated before the first `up`
    configured = Settings(state_dir=tmp_path, reader_password="from-env")
    assert configured.reader_password == "from-env"
    assert configured.export_env()["RECPLATFORM_READER_PASSWORD"] == "from-env"


def test_rec_reader_needs_its_password(db_settings):
    settings = db_settings
    host = f"host={settings.pg_socket_dir} user=rec_reader dbname={settings.database_name} {NO_PASSFILE}"
    assert "password authentication failed" in _refused(host + " password=rec_reader")  # the old default
    assert "password authentication failed" in _refused(host + " password=wrong")
    assert "no password supplied" in _refused(host)
    with psycopg.connect(settings.reader_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("rec_reader",)
    with db.connect(settings) as conn:  # the platform itself finds its password through Settings
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)


def test_a_cluster_initialised_with_trust_is_upgraded_by_up(server):
    """Earlier versions ran initdb --auth=trust and kept no password: `up` rewrites pg_hba.conf and sets one."""
    settings, _ = server
    with db.connect(settings, autocommit=True, vector=False) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    services.down(settings)
    hba = settings.pg_data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
    old_password = settings.postgres_password
    shutil.rmtree(settings.secrets_dir)  # as an earlier version left the state directory

    rows = {r.name: r for r in services.up(settings)}
    assert rows["postgres"].running
    assert "trust" not in "".join(line for line in hba.read_text().splitlines() if not line.startswith("#"))
    assert settings.postgres_password and settings.postgres_password != old_password
    with db.connect(settings, vector=False) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
    conninfo = f"host={settings.pg_socket_dir} port={settings.pg_port} user=postgres dbname=postgres {NO_PASSFILE}"
    assert "no password supplied" in _refused(conninfo)
    assert "password authentication failed" in _refused(conninfo + f" password={old_password}")


@pytest.mark.parametrize("text, expected", [
    ("postgresql://app:s3cret@db.example:5432/recs?sslmode=require",
     "postgresql://app:***@db.example:5432/recs?sslmode=require"),
    ("postgresql+psycopg://app:p%40ss@h/recs", "postgresql+psycopg://app:***@h/recs"),
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://user:s3cr@t@cache:6380/1", "rediss://user:***@cache:6380/1"),
    ("amqp://guest:s3cret@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
    ("postgresql:///recs?host=%2Frun&password=s3cret&port=5433", "postgresql:///recs?host=%2Frun&password=***&port=5433"),
    ("host=/run/pg user=app password=s3cret dbname=recs", "host=/run/pg user=app password=*** dbname=recs"),
    ("host=h password = 's3 c\\'ret' dbname=recs", "host=h password = *** dbname=recs"),
    ("broker redis://u:s3cret@h:1/0 refused: [Errno 111]", "broker redis://u:***@h:1/0 refused: [Errno 111]"),
    ("redis+socket:///state/run/redis.sock", "redis+socket:///state/run/redis.sock"),
    ("postgresql://postgres@/recs?host=%2Fs&passfile=%2Fs%2Fpgpass", "postgresql://postgres@/recs?host=%2Fs&passfile=%2Fs%2Fpgpass"),
])
def test_redact_url_removes_every_password(text, expected):
    assert redact_url(text) == expected
    assert "s3" not in redact_url(text)
