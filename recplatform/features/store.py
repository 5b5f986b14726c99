"""Feast's store for the platform: the repository's configuration, one ``FeatureStore`` per process, ``apply``.

``import feast`` costs several seconds, so it happens inside functions only (marked "deferred: feast"); one
``FeatureStore`` per process (and per database) is created lazily by :func:`get_store`, which makes it safe for
Celery's prefork workers (each child creates its own after the fork).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from psycopg import sql

from recplatform import db
from recplatform.config import Settings, feast_env, get_settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from feast import FeatureStore  # deferred: feast

log = logging.getLogger(__name__)

#: Schemas Feast uses, all outside ``rec`` (Alembic's) and ``public``: see feature_repo/feature_store.yaml.
FEAST_SCHEMAS = ("feast_registry", "feast_online", "feast_offline")

_SCHEMA_LOCK = 7302282  # pg advisory lock keys (the migration uses 7302281)
_APPLY_LOCK = 7302283
_VAR = re.compile(r"\$\{(\w+)\}")

#: Stores kept per process; one in production, more only for tools/tests that switch databases.
MAX_STORES = 4
_stores: "OrderedDict[tuple, FeatureStore]" = OrderedDict()
_stores_pid = os.getpid()
_stores_lock = threading.Lock()


@dataclass
class ApplyResult:
    """What :func:`apply` registered (names) and removed from the registry, and how long it took."""

    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    deleted: list[str]
    seconds: float


# ----- configuration and store ------------------------------------------------------------------
def repo_config(settings: Settings):
    """Feast's ``RepoConfig`` from ``feature_store.yaml`` with ``${VAR}`` taken from these settings.

    Unlike Feast's own loader (``os.path.expandvars`` over ``os.environ``), values come from
    :func:`recplatform.config.feast_env` first, so two settings objects in one process (tests,
    tools) never see each other's database; a variable that is set nowhere is an error.
    """
    from feast.repo_config import RepoConfig  # deferred: feast

    path = settings.feature_repo / "feature_store.yaml"
    env = {**os.environ, **feast_env(settings)}
    missing: set[str] = set()

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in env:
            missing.add(name)
            return match.group(0)
        return json.dumps(env[name])[1:-1]  # escaped for a YAML double-quoted scalar

    text = _VAR.sub(substitute, path.read_text())
    if missing:
        raise RuntimeError(f"{path}: environment variable(s) not set: {', '.join(sorted(missing))}")
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = settings.feature_repo
    return config


def ensure_schemas(settings: Settings) -> None:
    """Create Feast's schemas (registry, online, offline scratch) if missing; safe to run concurrently."""
    with db.transaction(settings) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for schema in FEAST_SCHEMAS:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def get_store(settings: Settings | None = None) -> "FeatureStore":
    """The process's ``FeatureStore`` for this database, created on first use (after any fork)."""
    global _stores_pid
    settings = settings or get_settings()
    key = (str(settings.feature_repo), tuple(sorted(feast_env(settings).items())))
    with _stores_lock:
        if _stores_pid != os.getpid():  # forked: the parent's pools and sockets are not ours
            _stores.clear()
            _stores_pid = os.getpid()
        store = _stores.get(key)
        if store is None:
            from feast import FeatureStore  # deferred: feast

            ensure_schemas(settings)  # the SQL registry creates its tables on connect
            store = FeatureStore(repo_path=str(settings.feature_repo), config=repo_config(settings))
            _stores[key] = store
            while len(_stores) > MAX_STORES:  # each store holds pooled connections to its database
                _close_store(_stores.popitem(last=False)[1])
        _stores.move_to_end(key)
        return store


def close_stores() -> None:
    """Close every cached store's connections (registry engine, online-store pool) in this process."""
    with _stores_lock:
        while _stores:
            _close_store(_stores.popitem()[1])


def _close_store(store: "FeatureStore") -> None:
    # Feast 0.67 has no synchronous close(): release what the Postgres stores and SQL registry hold.
    provider = getattr(store, "_provider", None)
    online = getattr(provider, "_online_store", None)
    try:
        if getattr(online, "_conn_pool", None) is not None:
            online._conn_pool.close()
            online._conn_pool = None
        if getattr(online, "_conn", None) is not None:
            online._conn.close()
            online._conn = None
        registry = getattr(store, "_registry", None)
        for engine in {getattr(registry, "write_engine", None), getattr(registry, "read_engine", None)} - {None}:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        log.debug("closing a Feast store: %s", exc)


# ----- apply -----------------------------------------------------------------------------------
def repo_objects(repo: Path) -> list[Any]:
    """Feast objects defined in the repository's Python files (like ``feast apply``'s parse_repo)."""
    from feast import Entity, FeatureService, FeatureView  # deferred: feast
    from feast.data_source import DataSource  # deferred: feast

    kinds = (Entity, FeatureView, FeatureService, DataSource)
    objects: list[Any] = []
    seen: set[int] = set()
    for path in sorted(repo.glob("*.py")):
        if path.name == "__init__.py":
            continue
        spec = importlib.util.spec_from_file_location(f"_recplatform_feature_repo_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if isinstance(value, kinds) and id(value) not in seen:
                seen.add(id(value))
                objects.append(value)
    return objects


def apply(settings: Settings | None = None) -> ApplyResult:
    """``feast apply`` of feature_repo/: schemas, registry objects and online tables (idempotent).

    Objects that are in the registry but no longer in the repository are deleted (their online
    tables too), as ``feast apply`` does. Concurrent calls are serialised by an advisory lock.
    """
    from feast import Entity, FeatureService, FeatureView  # deferred: feast

    settings = settings or get_settings()
    started = time.perf_counter()
    ensure_schemas(settings)
    with db.connect(settings, autocommit=True, vector=False) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (_APPLY_LOCK,))
        try:
            store = get_store(settings)
            objects = repo_objects(settings.feature_repo)
            names = {(type(o).__name__, o.name) for o in objects}
            registered = [
                *store.list_entities(allow_cache=False),
                *store.list_feature_views(allow_cache=False),
                *store.list_feature_services(),
                *store.list_data_sources(allow_cache=False),
            ]
            stale = [o for o in registered if (type(o).__name__, o.name) not in names]
            store.apply(objects, objects_to_delete=stale, partial=False)
            store.refresh_registry()
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (_APPLY_LOCK,))
    result = ApplyResult(
        entities=sorted(o.name for o in objects if isinstance(o, Entity)),
        feature_views=sorted(o.name for o in objects if isinstance(o, FeatureView)),
        feature_services=sorted(o.name for o in objects if isinstance(o, FeatureService)),
        deleted=sorted(f"{type(o).__name__}:{o.name}" for o in stale),
        seconds=time.perf_counter() - started,
    )
    log.info("feast apply: %d views, %d entities, %d services%s in %.2fs", len(result.feature_views),
             len(result.entities), len(result.feature_services),
             f", deleted {', '.join(result.deleted)}" if result.deleted else "", result.seconds)
    return result
