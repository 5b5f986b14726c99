"""`recplatform up` runs the whole platform: a worker with its beat and Feast's feature server beside Postgres and
Redis; `status --json` says so with connection strings (secrets only on request); `sql` is a read-only session;
Feast reads and writes go over HTTP, with the in-process path as a fallback. One `up` is shared by the module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from recplatform import db, services
from recplatform.client import RecClient
from recplatform.config import Settings
from recplatform.features import http_client, online_read, server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recplatform.cli", *args], env=env, capture_output=True, check=False,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def platform():
    """`recplatform up` (defaults: worker, beat, feature server) on a fresh state directory, schema applied."""
    state = Path(tempfile.mkdtemp(prefix="recplat-up-"))
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(state), "RECPLATFORM_MODEL": "hashing:64",
           "RECPLATFORM_FEATURE_SERVER_PORT": str(_free_port()), "RECPLATFORM_PG_PORT": str(_free_port()),
           "COLUMNS": "80"}
    env.pop("RECPLATFORM_DATABASE_NAME", None)
    try:
        up = _cli(env, "up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        settings = Settings(state_dir=state, model="hashing:64",  # after `up`: it generates the passwords
                            feature_server_port=int(env["RECPLATFORM_FEATURE_SERVER_PORT"]),
                            pg_port=int(env["RECPLATFORM_PG_PORT"]))
        init = _cli(env, "init")
        assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
        yield settings, env, up
    finally:
        _cli(env, "down", timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def _status(env: dict, *flags: str) -> dict:
    run = _cli(env, "status", "--json", *flags)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_up_runs_worker_beat_and_feature_server_and_a_second_up_keeps_them(platform):
    settings, env, up = platform
    first = _status(env)["services"]
    for name in ("postgres", "redis", "worker", "beat", "feature-server"):
        assert first[name]["state"] == "running" and first[name]["pid"], (name, first[name])
    assert first["feature-server"]["url"] == settings.feature_server_url  # loopback only
    again = _cli(env, "up")
    assert again.returncode == 0, again.stderr[-3000:]
    second = _status(env)["services"]
    assert {n: second[n]["pid"] for n in second} == {n: first[n]["pid"] for n in first}  # idempotent
    # the human table names them all, and the rec_reader connection strings are printed whole at 80 columns
    for name in ("worker", "beat", "feature-server"):
        assert name in up.stdout
    strings = _status(env)["connections"]
    assert strings["reader"] in up.stdout and strings["reader_tcp"] in up.stdout


def test_status_json_carries_connection_strings_and_passwords_only_when_asked(platform):
    settings, env, _ = platform
    passwords = [settings.postgres_password, settings.reader_password]
    assert all(passwords)
    plain = _cli(env, "status", "--json")
    assert not any(p in plain.stdout for p in passwords)
    strings = json.loads(plain.stdout)["connections"]
    assert set(strings) == {"owner", "reader", "owner_tcp", "reader_tcp"}
    with_secrets = _status(env, "--show-secrets")["connections"]
    assert settings.reader_password in with_secrets["reader"] and settings.reader_password in with_secrets["reader_tcp"]
    assert settings.postgres_password in with_secrets["owner"]
    import psycopg

    # every string works as it is: without secrets through the password file, with them inline (TCP too)
    for url in (strings["reader"], strings["reader_tcp"], with_secrets["reader_tcp"], strings["owner"]):
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] in ("rec_reader", "postgres")


def test_sql_runs_one_statement_as_the_read_only_role_and_refuses_writes(platform):
    _, env, _ = platform
    ok = _cli(env, "sql", "-c", "SELECT current_user, 40 + 2 AS answer")
    assert ok.returncode == 0, ok.stderr
    assert "rec_reader" in ok.stdout and "42" in ok.stdout
    write = _cli(env, "sql", "-c", "INSERT INTO rec.users (user_id, content_hash) VALUES ('sql-write', 'h')")
    assert write.returncode != 0
    assert "read-only" in write.stderr or "permission denied" in write.stderr


def test_a_user_added_through_the_client_is_embedded_by_the_worker_up_started(platform):
    settings, env, _ = platform
    load = _cli(env, "load", "synthetic", "--users", "120", "--items", "80", "--seed", "5")
    assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-3000:]
    embed = _cli(env, "embed", "--wait")  # the messages `load` queued are consumed by up's worker alone
    assert embed.returncode == 0, embed.stdout[-3000:] + embed.stderr[-3000:]
    # the worker may be running the training `load` queued (train_if_due): one training at a time, so wait for it
    train = _cli(env, "train", "--wait")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]

    newcomer = {"user_id": "newcomer-1", "age": 31, "gender": "F", "occupation": "writer", "zip_code": "10001"}
    with RecClient(settings) as client:
        client.add_users([newcomer])
        deadline = time.monotonic() + 120
        with db.connect(settings, autocommit=True, vector=False) as conn:
            while not conn.execute("SELECT 1 FROM rec.user_embeddings WHERE user_id = %s AND kind = 'demographic'",
                                   (newcomer["user_id"],)).fetchone():
                assert time.monotonic() < deadline, "the worker `up` started did not embed the new user"
                time.sleep(0.2)
        recs = client.recommend(newcomer["user_id"], k=5)
    assert recs and {r.source for r in recs} == {"demographic_neighbors"}


def test_embed_wait_without_a_worker_exits_1_with_the_hint(make_db):
    settings = make_db("nowork")
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(settings.state_dir),
           "RECPLATFORM_DATABASE_NAME": settings.database_name, "RECPLATFORM_MODEL": "hashing:64",
           # a broker database no worker consumes: as after `up --no-worker`
           "RECPLATFORM_BROKER_URL": f"redis+socket://{settings.redis_socket}?virtual_host=13",
           "RECPLATFORM_EMBED_WAIT_SECONDS": "2"}
    load = _cli(env, "load", "synthetic", "--users", "20", "--items", "15", "--no-online")
    assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-3000:]
    run = _cli(env, "embed", "--wait", timeout=120)  # before, it waited forever: TimeoutExpired
    assert run.returncode == 1, run.stdout[-3000:]
    assert "no worker answered" in run.stdout and "recplatform up" in run.stdout


def test_feature_reads_over_http_import_no_feast_and_equal_the_in_process_read(platform):
    settings, env, _ = platform
    users = ["u1", "u2", "newcomer-1", "nobody"]
    script = ("import json, sys; from recplatform import features; "
              f"rows = features.online_user_features({users!r}); "
              "print(json.dumps({'feast': 'feast' in sys.modules, 'rows': rows}, default=lambda v: v.isoformat()))")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    assert got["feast"] is False  # the HTTP path: no `import feast` (seconds) in the caller
    in_process = online_read._online_in_process(online_read.USER_SERVICE, "user_id", users, settings)
    assert got["rows"] == json.loads(json.dumps(in_process, default=lambda v: v.isoformat()))
    assert got["rows"][0]["age"] is not None and got["rows"][2]["occupation"] == "writer"
    assert got["rows"][3]["age"] is None

    cli = _cli(env, "features", "user", "u1", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout) == got["rows"][0]


def test_online_writes_go_through_the_server_and_fall_back_in_process_when_it_is_down(platform, caplog, monkeypatch):
    settings, env, _ = platform
    from recplatform.publish import ingest_and_publish

    changed = {"user_id": "u2", "age": 77, "gender": "M", "occupation": "retired", "zip_code": "33139"}
    script = ("import sys; from recplatform.client import RecClient; c = RecClient(); "
              f"c.add_users([{changed!r}], enqueue=False); print('feast' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "False"  # written through the feature server
    assert online_read._online_in_process(online_read.USER_SERVICE, "user_id", ["u2"], settings)[0]["age"] == 77

    assert server.stop_feature_server(settings)
    assert _status(env)["services"]["feature-server"]["state"] == "down"
    monkeypatch.setattr(http_client, "_warned", set())  # said once per process: an earlier test may have said it
    with caplog.at_level(logging.WARNING):
        ingest_and_publish(users=[{**changed, "age": 78}], settings=settings, enqueue=False)
        rows = online_read.online_user_features(["u2"], settings)
    assert rows[0]["age"] == 78  # written and read in-process
    assert "in-process Feast path" in caplog.text
    services.status(settings)  # still answers with the server gone


def test_down_stops_everything_up_started(platform):
    settings, env, _ = platform
    pids = [pid for pid in (r.pid for r in services.local_status(settings)) if pid]
    pids += [services.postgres_pid(settings), services.redis_pid(settings)]
    down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert not any(psutil.pid_exists(pid) for pid in pids), pids
    assert all(s["state"] == "down" for s in _status(env)["services"].values())
