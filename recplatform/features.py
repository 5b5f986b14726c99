"""Feast access for the platform: apply feature_repo/, write rec rows to the online store at once, serve features.

Postgres is the source of truth; Feast serves it. Ingestion calls :func:`write_online` right after
its transaction commits, so new and changed users/items (and the interaction aggregates of the
entities they touched) are servable immediately, without waiting for a scheduled materialization.
:func:`materialize` is the full refresh that catches up after anything was missed.

The mapping "table -> features" lives only in ``feature_repo/definitions.py``: :func:`write_online`
reads each feature view's source table, join key, feature names and timestamp field from the
registered feature views, so the rows written here are exactly what Feast's offline store would
produce for them.

``import feast`` costs several seconds, so it happens inside functions only; one
``FeatureStore`` per process (and per database) is created lazily by :func:`get_store`, which
makes it safe for Celery's prefork workers (each child creates its own after the fork).
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from psycopg import sql

from recplatform import db
from recplatform.config import Settings, feast_env, get_settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

#: Schemas Feast uses, all outside ``rec`` (Alembic's) and ``public``: see feature_repo/feature_store.yaml.
FEAST_SCHEMAS = ("feast_registry", "feast_online", "feast_offline")
USER_SERVICE, ITEM_SERVICE = "user_features", "item_features"
USER_KEY, ITEM_KEY = "user_id", "item_id"
#: Entities written to the online store per Feast call (bounds memory on large catalogues).
WRITE_BATCH = 5000

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


@dataclass
class OnlineWriteResult:
    """Rows written to the online store per feature view, and the wall time of the whole write."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


# ----- configuration and store ------------------------------------------------------------------
def repo_config(settings: Settings):
    """Feast's ``RepoConfig`` from ``feature_store.yaml`` with ``${VAR}`` taken from these settings.

    Unlike Feast's own loader (``os.path.expandvars`` over ``os.environ``), values come from
    :func:`recplatform.config.feast_env` first, so two settings objects in one process (tests,
    tools) never see each other's database; a variable that is set nowhere is an error.
    """
    import yaml
    from feast.repo_config import RepoConfig

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
            from feast import FeatureStore

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
def _repo_objects(repo: Path) -> list[Any]:
    """Feast objects defined in the repository's Python files (like ``feast apply``'s parse_repo)."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

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
    from feast import Entity, FeatureService, FeatureView

    settings = settings or get_settings()
    started = time.perf_counter()
    ensure_schemas(settings)
    with db.connect(settings, autocommit=True, vector=False) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (_APPLY_LOCK,))
        try:
            store = get_store(settings)
            objects = _repo_objects(settings.feature_repo)
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


# ----- writing to the online store ----------------------------------------------------------------
def _views(store: "FeatureStore") -> list["FeatureView"]:
    views = sorted(store.list_feature_views(), key=lambda v: v.name)
    if not views:
        raise RuntimeError("the Feast registry has no feature views: run `recplatform init` first")
    return views


def _source_sql(view: "FeatureView", filtered: bool) -> tuple[sql.Composed, list[str]]:
    """``SELECT key, features..., ts FROM <source table>`` of one feature view (names from the definitions)."""
    source = view.batch_source
    table = source.get_table_query_string()
    if not re.fullmatch(r"\w+(\.\w+)?", table):
        raise ValueError(f"feature view {view.name}: source must be a table or view, got {table!r}")
    key = view.entity_columns[0].name
    columns = [key, *(f.name for f in view.features), source.timestamp_field]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(*table.split(".")))
    if filtered:
        query += sql.SQL(" WHERE {} = ANY(%s)").format(sql.Identifier(key))
    return query + sql.SQL(" ORDER BY {}").format(sql.Identifier(key)), columns


def _frame(view: "FeatureView", columns: list[str], rows: list[tuple]) -> "pd.DataFrame":
    """Rows of a source as the typed DataFrame Feast converts (nullable ints, UTC timestamps)."""
    import pandas as pd
    from feast.types import Float64, Int32, Int64, UnixTimestamp

    dtypes = {f.name: f.dtype for f in view.features}
    data: dict[str, Any] = {}
    for i, name in enumerate(columns):
        values = [row[i] for row in rows]
        dtype = dtypes.get(name)
        if dtype in (Int64, Int32):
            data[name] = pd.array(values, dtype="Int64")
        elif dtype == Float64:
            data[name] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
        elif dtype == UnixTimestamp or name == view.batch_source.timestamp_field:
            data[name] = pd.to_datetime(pd.Series(values, dtype="object"), utc=True)
        else:
            data[name] = pd.Series(values, dtype="object")
    return pd.DataFrame(data)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _normalise_ids(ids: Iterable[Any] | None) -> list[str] | None:
    if ids is None:
        return None
    return sorted({str(i) for i in ids})


def write_online(settings: Settings | None = None, user_ids: Iterable[Any] | None = None,
                 item_ids: Iterable[Any] | None = None, *, progress: bool = False) -> OnlineWriteResult:
    """Read the current rows of these users/items from the ``rec`` tables and views, write them to Feast online.

    Writes every feature view of the entity: a user id refreshes ``user_demographics`` and
    ``user_activity``, an item id ``item_metadata`` and ``item_popularity``. ``None`` means all
    entities of that kind, an empty collection none. Uses ``FeatureStore.write_to_online_store``
    (an upsert per entity and feature), so it is idempotent and can be rerun at any time.
    """
    settings = settings or get_settings()
    store = get_store(settings)
    started = time.perf_counter()
    wanted = {USER_KEY: _normalise_ids(user_ids), ITEM_KEY: _normalise_ids(item_ids)}
    result = OnlineWriteResult()
    plans = []
    for view in _views(store):
        key = view.entity_columns[0].name
        if key not in wanted:
            continue
        ids = wanted[key]
        if ids is not None and not ids:
            continue
        plans.append((view, ids))

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
    try:
        with db.connect(settings, vector=False) as conn:
            for view, ids in plans:
                query, columns = _source_sql(view, filtered=ids is not None)
                task = None
                if bar:
                    total = len(ids) if ids is not None else conn.execute(
                        sql.SQL("SELECT count(*) FROM ({}) AS source").format(query)).fetchone()[0]
                    task = bar.add_task(f"online {view.name}", total=total)
                written = 0
                for rows, asked in _batches(conn, query, ids):
                    if rows:
                        _write_rows(store, view, columns, rows)
                        written += len(rows)
                    if task is not None:
                        bar.update(task, advance=asked)
                conn.commit()
                result.rows[view.name] = written
    finally:
        if bar:
            bar.stop()
    result.seconds = time.perf_counter() - started
    log.info("feast online write: %s in %.2fs",
             ", ".join(f"{name}={n}" for name, n in result.rows.items()) or "nothing", result.seconds)
    return result


def _batches(conn, query: sql.Composed, ids: list[str] | None) -> Iterator[tuple[list[tuple], int]]:
    """Rows of a source WRITE_BATCH at a time (with how many ids were asked for): those ids, or all rows
    through a server-side cursor."""
    if ids is not None:
        for chunk in _chunks(ids, WRITE_BATCH):
            yield conn.execute(query, [list(chunk)]).fetchall(), len(chunk)
        return
    with conn.cursor(name="recplatform_feast_online") as cur:
        cur.execute(query)
        while rows := cur.fetchmany(WRITE_BATCH):
            yield rows, len(rows)


def _write_rows(store: "FeatureStore", view: "FeatureView", columns: list[str], rows: list[tuple]) -> None:
    frame = _frame(view, columns, rows)
    feature_names = [f.name for f in view.features]
    if frame[feature_names].isna().all().all():
        # write_to_online_store silently skips a batch whose features are all null (only a warning),
        # which would keep serving stale values for entities whose attributes were all cleared.
        # Its own next step is the provider's ingest_df, so call that directly (pinned Feast 0.67).
        feature_view = store.get_feature_view(view.name)
        store._get_provider().ingest_df(feature_view, frame)
        return
    store.write_to_online_store(view.name, frame)


def materialize(settings: Settings | None = None, *, progress: bool = False) -> OnlineWriteResult:
    """Full refresh of the online store from the ``rec`` tables: :func:`write_online` of every user and item.

    This is used instead of Feast's ``materialize_incremental`` on purpose: incremental
    materialization only picks up rows whose event timestamp is newer than the last run, so
    interactions that arrive late with old timestamps (any historical load, e.g. MovieLens) would
    never reach ``item_popularity``/``user_activity``. Writing everything from the tables has no
    time window to get wrong and uses the same code path as ingestion.
    """
    return write_online(settings, user_ids=None, item_ids=None, progress=progress)


# ----- reading from the online store --------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, datetime) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _online(service: str, key: str, ids: Iterable[Any], settings: Settings | None) -> list[dict]:
    ids = [str(i) for i in ids]
    if not ids:
        return []
    store = get_store(settings or get_settings())
    try:
        features = store.get_feature_service(service)
    except Exception as exc:  # FeatureServiceNotFoundException and friends
        raise RuntimeError(f"Feast feature service {service!r} not found: run `recplatform init` first") from exc
    served = store.get_online_features(features=features, entity_rows=[{key: i} for i in ids]).to_dict()
    names = [key] + [f.name for projection in features.feature_view_projections for f in projection.features]
    return [{name: (ids[n] if name == key else _plain(served[name][n])) for name in names} for n in range(len(ids))]


def online_user_features(user_ids: Iterable[Any], settings: Settings | None = None) -> list[dict]:
    """What Feast's online store serves for these users, in order: user_id, age, gender, occupation,
    zip_code, n_interactions, mean_rating, last_interaction_at (values None for an unknown id)."""
    return _online(USER_SERVICE, USER_KEY, user_ids, settings)


def online_item_features(item_ids: Iterable[Any], settings: Settings | None = None) -> list[dict]:
    """What Feast's online store serves for these items, in order: item_id, title, year, genres (list),
    description, n_interactions, n_users, mean_rating, last_interaction_at (None for an unknown id)."""
    return _online(ITEM_SERVICE, ITEM_KEY, item_ids, settings)
