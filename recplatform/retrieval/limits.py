"""Request limits and strategy names as the database defines them (``rec.limits()``, ``rec.strategies``), read once.

The SQL functions enforce these (``rec._check_request``); Python reads them to check arguments early (before
embedding a profile) and to size evaluation requests, so the only copy is the database's. Read once per
database URL and cached for the process: they change only with a migration.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.retrieval import sql


@dataclass(frozen=True)
class Limits:
    max_k: int
    min_year: int
    max_year: int
    max_genre_length: int
    max_genres: int  # genre names in one request's filter
    strategies: tuple[str, ...]  # every strategy rec.recommend accepts, in rec.strategies.position order
    cold_strategies: tuple[str, ...]  # those that serve a user with no history (rec.strategies.serves_cold)


_cache: dict[str, Limits] = {}
_lock = threading.Lock()


def read_limits(conn: psycopg.Connection) -> Limits:
    """The limits and strategies from the database behind ``conn`` (no cache)."""
    max_k, min_year, max_year, max_genre_length, max_genres = conn.execute(sql.LIMITS).fetchone()
    strategies = conn.execute(sql.STRATEGIES).fetchall()
    return Limits(max_k, min_year, max_year, max_genre_length, max_genres, tuple(name for name, _ in strategies),
                  tuple(name for name, serves_cold in strategies if serves_cold))


def limits(settings: Settings | None = None, conn: psycopg.Connection | None = None) -> Limits:
    """The limits of the database ``settings`` points at, read once per process (over ``conn`` when given)."""
    settings = settings or get_settings()
    key = settings.postgres_url
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    if conn is not None:
        found = read_limits(conn)
    else:
        with db.connect(settings, autocommit=True, vector=False) as own:
            found = read_limits(own)
    with _lock:
        return _cache.setdefault(key, found)
