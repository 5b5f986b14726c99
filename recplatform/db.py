"""Database connections and migrations: psycopg connections with pgvector adapters, a SQLAlchemy engine, Alembic."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import psycopg
from pgvector.psycopg import register_vector

from recplatform.config import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


def connect(settings: Settings | None = None, *, autocommit: bool = False, vector: bool = True) -> psycopg.Connection:
    """A new psycopg connection to the platform database, with the ``vector`` type registered."""
    settings = settings or get_settings()
    conn = psycopg.connect(settings.postgres_url, autocommit=autocommit, connect_timeout=10)
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
    from alembic.config import Config  # deferred: alembic

    settings = settings or get_settings()
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    cfg.attributes["settings"] = settings  # migrations read the reader's password from these, not the environment
    return cfg


def migrate(settings: Settings | None = None, revision: str = "head") -> None:
    """Upgrade the ``rec`` schema to ``revision`` (idempotent)."""
    from alembic import command  # deferred: alembic

    command.upgrade(alembic_config(settings), revision)


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
