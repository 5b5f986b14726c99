"""Database connections and migrations: psycopg connections with pgvector adapters, a SQLAlchemy engine, Alembic."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from recplatform.config import Settings, ensure_reader_password, get_settings, redact_url

log = logging.getLogger(__name__)

#: Alembic environment and revisions, shipped inside the package (a wheel migrates from any directory).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: One ``CREATE OR REPLACE FUNCTION`` per file, ``rec.<name>.sql``: what head must equal (``alembic check``).
SQL_DIR = Path(__file__).resolve().parent / "sql"
READER_ROLE = "rec_reader"
START_HINT = "start it with `recplatform up`"


def unreachable_message(settings: Settings, error: BaseException, url: str | None = None) -> str:
    """What to say when Postgres does not answer: the redacted URL, the first line of the reason, and what to
    do (one wording for the command line and the Python client)."""
    hint = START_HINT if settings.uses_embedded_postgres else "check RECPLATFORM_DATABASE_URL"
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return redact_url(f"cannot reach Postgres at {url or settings.postgres_url}: {reason}\n{hint}")


def connect(settings: Settings | None = None, *, autocommit: bool = False, vector: bool = True,
            read: bool = False) -> psycopg.Connection:
    """A new psycopg connection to the platform database, with the ``vector`` type registered.

    ``read=True``: to :attr:`Settings.read_url` (a replica when one is configured or started) for retrieval
    that writes nothing; everything else goes to the primary.
    """
    settings = settings or get_settings()
    url = settings.read_url if read else settings.postgres_url
    conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    if vector:
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            pass  # extension not created yet (before the first migration)
        if not autocommit:
            conn.commit()  # register_vector ran a query; do not leave a transaction open
    return conn


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[psycopg.Connection]:
    """A connection whose work commits on success and rolls back on any error: all in or all out."""
    conn = connect(settings)
    try:
        with conn.transaction():
            yield conn
    finally:
        conn.close()


@lru_cache(maxsize=4)
def _engine(url: str):
    from sqlalchemy import create_engine  # deferred: sqlalchemy

    return create_engine(url, pool_pre_ping=True)


def engine(settings: Settings | None = None):
    """A pooled SQLAlchemy engine (psycopg 3 dialect) for the platform database."""
    return _engine((settings or get_settings()).sqlalchemy_url)


def alembic_config(settings: Settings | None = None):
    """Alembic configuration of the packaged migrations (``recplatform/migrations/alembic.ini``) for a database."""
    from alembic.config import Config  # deferred: alembic

    settings = settings or get_settings()
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    cfg.attributes["settings"] = settings  # migrations read the reader's password from these, not the environment
    return cfg


def sql_function_files() -> list[Path]:
    """The SQL function files, ``recplatform/sql/rec.<name>.sql``, sorted by name."""
    return sorted(SQL_DIR.glob("rec.*.sql"))


def sql_function_text(path: Path) -> str:
    """A function file's ``CREATE OR REPLACE FUNCTION`` statement, without the comment lines above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def sql_functions() -> list:
    """The SQL function files as alembic-utils ``PGFunction`` entities (what ``env.py`` registers)."""
    from alembic_utils.pg_function import PGFunction  # deferred: alembic-utils (migrations only)

    return [PGFunction.from_sql(sql_function_text(path)) for path in sql_function_files()]


def migrate(settings: Settings | None = None, revision: str = "head") -> None:
    """Upgrade the ``rec`` schema to ``revision`` (idempotent), then give the reader role its password and its
    session defaults (``RECPLATFORM_READER_STATEMENT_TIMEOUT``, ``RECPLATFORM_READER_WORK_MEM``)."""
    from alembic import command  # deferred: alembic

    settings = settings or get_settings()
    command.upgrade(alembic_config(settings), revision)
    with connect(settings, vector=False) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone():
            try:
                set_role_password(conn, READER_ROLE, ensure_reader_password(settings))
                set_reader_defaults(conn, settings)
                conn.commit()
            except psycopg.errors.InsufficientPrivilege as exc:  # a role an administrator manages
                conn.rollback()
                log.warning("password or defaults of %s not set: %s", READER_ROLE, exc.diag.message_primary)


def set_reader_defaults(conn: psycopg.Connection, settings: Settings) -> None:
    """The reader's session defaults: ``statement_timeout`` and ``work_mem`` from Settings (``ALTER ROLE ... SET``).

    They bound what one analyst query costs by default; the grants, not these, are what keep the role read-only.
    """
    for name, value in (("statement_timeout", settings.reader_statement_timeout),
                        ("work_mem", settings.reader_work_mem)):
        conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(READER_ROLE), sql.Identifier(name),
                                                                  sql.Literal(value.replace(" ", ""))))


def set_role_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Set a role's password as a SCRAM-SHA-256 verifier computed here, by libpq (``PQencryptPasswordConn``).

    The one place a password reaches the database: the statement carries
    ``SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>``, never the password, so it cannot show up in
    migrations, statement logs or ``pg_stat_statements``. Logging in with ``password`` works as before.
    """
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    from alembic import command  # deferred: alembic

    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings | None = None) -> str | None:
    with connect(settings, vector=False) as conn:
        try:
            row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None
