"""Writing to Feast's online store: the current rows of users/items read from the ``rec`` tables, at once.

Ingestion's fan-out (:mod:`recplatform.publish`) calls :func:`write_online` right after its transaction commits, so
new and changed users/items (and the interaction aggregates of the entities they touched) are servable
immediately; :func:`materialize` is the full refresh that catches up after anything was missed. The mapping
"table -> features" lives only in ``feature_repo/definitions.py``: each feature view's source table, join key,
feature names and timestamp field are read from the registered views, so the rows written here are exactly
what Feast's offline store would produce for them.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from psycopg import sql

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.features import http_client, server
from recplatform.features.views import ITEM_KEY, USER_KEY, RepoSpec, ViewSpec, load_spec, save_spec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd  # deferred: pandas
    from feast import FeatureStore, FeatureView  # deferred: feast

log = logging.getLogger(__name__)

#: Entities written to the online store per Feast call (bounds memory on large catalogues).
WRITE_BATCH = 5000


@dataclass
class OnlineWriteResult:
    """Rows written to the online store per feature view, and the wall time of the whole write."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())

def _views(store: "FeatureStore") -> list["FeatureView"]:
    views = sorted(store.list_feature_views(), key=lambda v: v.name)
    if not views:
        raise RuntimeError("the Feast registry has no feature views: run `recplatform init` first")
    return views


def _spec_of(view: "FeatureView") -> ViewSpec:
    """A registered feature view as plain data (the same shape the HTTP path reads from the cache file)."""
    return ViewSpec(view.name, view.entity_columns[0].name, view.batch_source.get_table_query_string(),
                    [(f.name, str(f.dtype)) for f in view.features], view.batch_source.timestamp_field)


def _registered(store: "FeatureStore", settings: Settings) -> list[ViewSpec]:
    """The registry's views, also written to the repository description for later HTTP writes and reads."""
    specs = [_spec_of(v) for v in _views(store)]
    services = {fs.name: [(p.name, [f.name for f in p.features]) for p in fs.feature_view_projections]
                for fs in store.list_feature_services()}
    try:
        save_spec(settings, RepoSpec(specs, services))
    except OSError as exc:  # a read-only state directory only costs the next call its Feast import
        log.debug("repository description not cached: %s", exc)
    return specs


def _source_sql(view: ViewSpec, filtered: bool) -> sql.Composed:
    """``SELECT key, features..., ts FROM <source table>`` of one feature view (names from the definitions)."""
    table = view.table
    if not re.fullmatch(r"\w+(\.\w+)?", table):
        raise ValueError(f"feature view {view.name}: source must be a table or view, got {table!r}")
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in view.columns), sql.Identifier(*table.split(".")))
    if filtered:
        query += sql.SQL(" WHERE {} = ANY(%s)").format(sql.Identifier(view.key))
    return query + sql.SQL(" ORDER BY {}").format(sql.Identifier(view.key))


def _frame(view: ViewSpec, rows: list[tuple]) -> "pd.DataFrame":
    """Rows of a source as the typed DataFrame Feast converts (nullable ints, UTC timestamps)."""
    import pandas as pd  # deferred: pandas

    dtypes = dict(view.features)
    data: dict[str, Any] = {}
    for i, name in enumerate(view.columns):
        values = [row[i] for row in rows]
        dtype = dtypes.get(name)
        if dtype in ("Int64", "Int32"):
            data[name] = pd.array(values, dtype="Int64")
        elif dtype == "Float64":
            data[name] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
        elif dtype == "UnixTimestamp" or name == view.timestamp_field:
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
    entities of that kind, an empty collection none. Goes through the feature server's
    ``/write-to-online-store`` when ``recplatform up`` runs one for this database, else (or when it fails)
    through ``FeatureStore.write_to_online_store`` in this process; both upsert per entity and feature, so a
    write is idempotent and can be rerun at any time.
    """
    settings = settings or get_settings()
    started = time.perf_counter()
    wanted = {USER_KEY: _normalise_ids(user_ids), ITEM_KEY: _normalise_ids(item_ids)}
    url, spec = server.served_url(settings), load_spec(settings)
    result = None
    if url and spec:
        try:
            result = _write(settings, spec.views, wanted, _HttpWriter(settings, url), progress)
        except http_client.FeatureServerError as exc:
            http_client.fall_back(str(exc))
    else:
        http_client.fall_back("no feature server runs for this database: `recplatform up` starts one")
    if result is None:
        from recplatform.features.store import get_store  # deferred: yaml, Feast (the HTTP path needs neither)

        store = get_store(settings)
        result = _write(settings, _registered(store, settings), wanted, _StoreWriter(store), progress)
    result.seconds = time.perf_counter() - started
    log.info("feast online write: %s in %.2fs",
             ", ".join(f"{name}={n}" for name, n in result.rows.items()) or "nothing", result.seconds)
    return result


class _StoreWriter:
    """Writes through this process's ``FeatureStore``."""

    def __init__(self, store: "FeatureStore"):
        self.store = store

    def __call__(self, view: ViewSpec, rows: list[tuple]) -> None:
        frame = _frame(view, rows)
        feature_names = [name for name, _ in view.features]
        if frame[feature_names].isna().all().all():
            # write_to_online_store silently skips a batch whose features are all null (only a warning),
            # which would keep serving stale values for entities whose attributes were all cleared.
            # Its own next step is the provider's ingest_df, so call that directly (pinned Feast 0.67).
            self.store._get_provider().ingest_df(self.store.get_feature_view(view.name), frame)
            return
        self.store.write_to_online_store(view.name, frame)


class _HttpWriter:
    """Writes through the feature server; a batch whose features are all null goes in-process (the server's
    ``write_to_online_store`` would skip it and keep serving stale values)."""

    def __init__(self, settings: Settings, url: str):
        self.settings, self.url = settings, url

    def __call__(self, view: ViewSpec, rows: list[tuple]) -> None:
        if all(value is None for row in rows for value in row[1:1 + len(view.features)]):
            from recplatform.features.store import get_store  # deferred: yaml, Feast (an all-null batch only)

            _StoreWriter(get_store(self.settings))(view, rows)
            return
        http_client.write(self.url, view, rows)


def _write(settings: Settings, specs: list[ViewSpec], wanted: dict, writer, progress: bool) -> OnlineWriteResult:
    result = OnlineWriteResult()
    plans = []
    for view in specs:
        if view.key not in wanted:
            continue
        ids = wanted[view.key]
        if ids is not None and not ids:
            continue
        plans.append((view, ids))
    bar = None
    if progress:
        from recplatform.progress import count, elapsed, progress_bar  # deferred: rich (only with progress)

        bar = progress_bar(count(), elapsed(), transient=False)
        bar.start()
    try:
        with db.connect(settings, vector=False) as conn:
            for view, ids in plans:
                query = _source_sql(view, filtered=ids is not None)
                task = None
                if bar:
                    total = len(ids) if ids is not None else conn.execute(
                        sql.SQL("SELECT count(*) FROM ({}) AS source").format(query)).fetchone()[0]
                    task = bar.add_task(f"online {view.name}", total=total)
                written = 0
                for rows, asked in _batches(conn, query, ids):
                    if rows:
                        writer(view, rows)
                        written += len(rows)
                    if task is not None:
                        bar.update(task, advance=asked)
                conn.commit()
                result.rows[view.name] = written
    finally:
        if bar:
            bar.stop()
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


def materialize(settings: Settings | None = None, *, progress: bool = False) -> OnlineWriteResult:
    """Full refresh of the online store from the ``rec`` tables: :func:`write_online` of every user and item.

    This is used instead of Feast's ``materialize_incremental`` on purpose: incremental
    materialization only picks up rows whose event timestamp is newer than the last run, so
    interactions that arrive late with old timestamps (any historical load, e.g. MovieLens) would
    never reach ``item_popularity``/``user_activity``. Writing everything from the tables has no
    time window to get wrong and uses the same code path as ingestion.
    """
    return write_online(settings, user_ids=None, item_ids=None, progress=progress)
