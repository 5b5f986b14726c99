"""Ingestion, step 2: upsert validated users, items and interactions in ONE transaction (all in or all out).

Rows are COPYed into temporary tables and upserted into ``rec.users``, ``rec.items`` and ``rec.interactions``.
An entity row is rewritten (and ``updated_at`` moved) only when its content changed; ``content_hash`` (see
:mod:`recplatform.content`) changes only when the text-relevant fields change. Interactions upsert on their unique
key (user, item, event type, time), so loading the same file twice adds nothing. Nothing here talks to Feast or
the broker: with ``enqueue``, the follow-up work (embeddings, taste refreshes) goes into the task outbox in the same
transaction (:mod:`recplatform.outbox`), and the caller writes Feast's online store after the commit
(:mod:`recplatform.publish`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from psycopg.types.json import Jsonb

from recplatform import outbox
from recplatform.config import Settings, get_settings
from recplatform.content import item_content_hash, user_content_hash
from recplatform.db import transaction
from recplatform.ingest.validate import SPECS, Table, ValidationError, validate

log = logging.getLogger(__name__)

_COPY_PROGRESS_CHUNK = 10_000


@dataclass
class IngestResult:
    """What one ``ingest`` call changed; ``changed_*`` = new or content hash changed, ``touched_*`` = got interactions."""

    users_inserted: int = 0
    users_updated: int = 0
    items_inserted: int = 0
    items_updated: int = 0
    interactions_added: int = 0
    changed_user_ids: list[str] = field(default_factory=list)
    changed_item_ids: list[str] = field(default_factory=list)
    touched_user_ids: list[str] = field(default_factory=list)
    touched_item_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interactions_updated: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    messages_queued: int = 0  # written to the task outbox with the data (``enqueue``)


# ----- SQL (all of ingestion's SQL lives here) ------------------------------------------------------
_TEMP_TABLES = {
    "users": ("CREATE TEMP TABLE ingest_users (user_id text, age int, gender text, occupation text, "
              "zip_code text, content_hash text) ON COMMIT DROP",
              "COPY ingest_users (user_id, age, gender, occupation, zip_code, content_hash) FROM STDIN",
              ["text", "int4", "text", "text", "text", "text"]),
    "items": ("CREATE TEMP TABLE ingest_items (item_id text, title text, year int, genres text[], description text, "
              "extra jsonb, content_hash text) ON COMMIT DROP",
              "COPY ingest_items (item_id, title, year, genres, description, extra, content_hash) FROM STDIN",
              ["text", "text", "int4", "text[]", "text", "jsonb", "text"]),
    "interactions": ("CREATE TEMP TABLE ingest_interactions (user_id text, item_id text, rating float8, "
                     "weight float8, event_type text, occurred_at timestamptz) ON COMMIT DROP",
                     "COPY ingest_interactions (user_id, item_id, rating, weight, event_type, occurred_at) FROM STDIN",
                     ["text", "text", "float8", "float8", "text", "timestamptz"]),
}

# Sorting and joining 100k-row batches spills to disk at the default 4MB; this transaction only.
_WORK_MEM = "SET LOCAL work_mem = '64MB'"
_KNOWN_USERS = "SELECT user_id FROM rec.users WHERE user_id = ANY(%s)"
_KNOWN_ITEMS = "SELECT item_id FROM rec.items WHERE item_id = ANY(%s)"

_UPSERT_USERS = """
WITH prev AS (
    SELECT t.user_id FROM rec.users t JOIN ingest_users s USING (user_id)
), up AS (
    INSERT INTO rec.users AS t (user_id, age, gender, occupation, zip_code, content_hash)
    SELECT user_id, age, gender, occupation, zip_code, content_hash FROM ingest_users ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE
       SET age = excluded.age, gender = excluded.gender, occupation = excluded.occupation,
           zip_code = excluded.zip_code, content_hash = excluded.content_hash, updated_at = now()
     WHERE t.content_hash IS DISTINCT FROM excluded.content_hash
    RETURNING t.user_id
)
SELECT up.user_id, prev.user_id IS NULL AS inserted, true AS hash_changed
FROM up LEFT JOIN prev USING (user_id)
"""

_UPSERT_ITEMS = """
WITH prev AS (
    SELECT t.item_id, t.content_hash FROM rec.items t JOIN ingest_items s USING (item_id)
), up AS (
    INSERT INTO rec.items AS t (item_id, title, year, genres, description, extra, content_hash)
    SELECT item_id, title, year, genres, description, extra, content_hash FROM ingest_items ORDER BY item_id
    ON CONFLICT (item_id) DO UPDATE
       SET title = excluded.title, year = excluded.year, genres = excluded.genres,
           description = excluded.description, extra = excluded.extra, content_hash = excluded.content_hash,
           updated_at = now()
     WHERE t.content_hash IS DISTINCT FROM excluded.content_hash OR t.extra IS DISTINCT FROM excluded.extra
    RETURNING t.item_id, t.content_hash
)
SELECT up.item_id, prev.item_id IS NULL AS inserted, prev.content_hash IS DISTINCT FROM up.content_hash AS hash_changed
FROM up LEFT JOIN prev USING (item_id)
"""

_UPSERT_INTERACTIONS = """
WITH prev AS (
    SELECT t.user_id, t.item_id, t.event_type, t.occurred_at
    FROM rec.interactions t JOIN ingest_interactions s USING (user_id, item_id, event_type, occurred_at)
), up AS (
    INSERT INTO rec.interactions AS t (user_id, item_id, rating, weight, event_type, occurred_at)
    SELECT user_id, item_id, rating, weight, event_type, occurred_at FROM ingest_interactions
    ORDER BY user_id, item_id  -- key order: index inserts stay local (about 30% faster on ML-100K)
    ON CONFLICT (user_id, item_id, event_type, occurred_at) DO UPDATE
       SET rating = excluded.rating, weight = excluded.weight
     WHERE (t.rating, t.weight) IS DISTINCT FROM (excluded.rating, excluded.weight)
    RETURNING t.user_id, t.item_id, t.event_type, t.occurred_at
)
SELECT count(*) FILTER (WHERE prev.user_id IS NULL) AS added,
       count(*) FILTER (WHERE prev.user_id IS NOT NULL) AS updated,
       coalesce(array_agg(DISTINCT up.user_id), '{}') AS user_ids,
       coalesce(array_agg(DISTINCT up.item_id), '{}') AS item_ids
FROM up LEFT JOIN prev USING (user_id, item_id, event_type, occurred_at)
"""


# ----- progress -----------------------------------------------------------------------------------
class _Progress:
    """A rich progress bar when asked for, otherwise nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = None
        if enabled:
            from recplatform.progress import count, elapsed, progress_bar  # deferred: rich (only with progress)

            self._bar = progress_bar(count(), elapsed(), transient=False)
            self._total = total

    def __enter__(self) -> "_Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def task(self, description: str, total: int) -> Callable[..., None]:
        """A function ``advance(n, description=None)`` for one bar (the description can change as work moves on)."""
        if self._bar is None:
            return lambda n, description=None: None
        bar = self._bar
        task_id = bar.add_task(description, total=max(total, 1))
        if total == 0:
            bar.update(task_id, completed=1)
        return lambda n, description=None: bar.update(task_id, advance=n, description=description)


# ----- the ingestion call -------------------------------------------------------------------------
def ingest(users: Any = None, items: Any = None, interactions: Any = None, *, source: str = "<input>",
           settings: Settings | None = None, progress: bool = False, enqueue: bool = False) -> IngestResult:
    """Validate every row, then upsert users, items and interactions in one transaction; see the module doc.

    ``enqueue``: the same transaction writes the messages this ingestion implies to the task outbox. The workers'
    relays send them when notified (:func:`recplatform.publish.publish` does, after the Feast online write), or
    by their poll within about ten seconds."""
    settings = settings or get_settings()
    started = time.perf_counter()
    result = IngestResult()
    now = datetime.now(timezone.utc)
    sizes = [0 if rows is None else len(rows) if hasattr(rows, "__len__") else 0
             for rows in (users, items, interactions)]

    with _Progress(progress, sum(sizes)) as bar:
        tick = bar.task("validating rows", sum(sizes))
        tables: dict[str, Table] = {}
        for name, rows in (("users", users), ("items", items), ("interactions", interactions)):
            table = validate(rows, SPECS[name], source, now)
            if table is not None:
                tables[name] = table
                tick(len(table))
        result.timings["validate"] = time.perf_counter() - started

        write_started = time.perf_counter()
        with transaction(settings) as conn:
            conn.execute(_WORK_MEM)
            if "interactions" in tables:
                _check_references(conn, tables)
            if "users" in tables:
                _write_entities(conn, tables["users"], result, bar)
            if "items" in tables:
                _write_entities(conn, tables["items"], result, bar)
            if "interactions" in tables:
                _write_interactions(conn, tables["interactions"], result, bar)
            if enqueue:
                result.messages_queued = outbox.write(conn, outbox.ingestion_messages(result))
        result.timings["write"] = time.perf_counter() - write_started

    log.info("ingested from %s: users +%d ~%d, items +%d ~%d, interactions +%d ~%d in %.2fs%s",
             source, result.users_inserted, result.users_updated, result.items_inserted, result.items_updated,
             result.interactions_added, result.interactions_updated, time.perf_counter() - started,
             f"; {result.messages_queued} messages to the task outbox" if result.messages_queued else "")
    result.seconds = time.perf_counter() - started
    return result


def _check_references(conn, tables: dict[str, Table]) -> None:
    """Interactions must name users and items known in this batch or already in the database."""
    inter = tables["interactions"]
    first_bad: tuple[int, ValidationError] | None = None
    for column, entity, query in (("user_id", "users", _KNOWN_USERS), ("item_id", "items", _KNOWN_ITEMS)):
        known = set(tables[entity].columns[column]) if entity in tables else set()
        missing = set(inter.columns[column]) - known
        if missing:
            found = {row[0] for row in conn.execute(query, (sorted(missing),))}
            missing -= found
        if missing:
            position = next(i for i, v in enumerate(inter.columns[column]) if v in missing)
            if first_bad is None or position < first_bad[0]:
                value = inter.columns[column][position]
                first_bad = (position, inter.error(position, column, value,
                                                   f"unknown {entity[:-1]} (not in this batch nor in the database)"))
    if first_bad is not None:
        raise first_bad[1]


def _copy(conn, table: Table, rows: Iterable[tuple], advance: Callable[..., None]) -> None:
    create, copy_sql, types = _TEMP_TABLES[table.spec.name]
    conn.execute(create)
    with conn.cursor().copy(copy_sql) as copy:
        copy.set_types(types)
        done = 0  # the COPY is shown as the first half of the bar, the upsert as the second
        for n, row in enumerate(rows, 1):
            copy.write_row(row)
            if n % _COPY_PROGRESS_CHUNK == 0:
                advance(n // 2 - done)
                done = n // 2
    advance(len(table) // 2 - done, description=f"upserting {table.spec.name}")
    conn.execute(f"ANALYZE ingest_{table.spec.name}")  # fixed names from _TEMP_TABLES, never caller input


def _write_entities(conn, table: Table, result: IngestResult, bar: _Progress) -> None:
    cols = table.columns
    advance = bar.task(f"writing {table.spec.name}", len(table))
    if table.spec.name == "users":
        rows = [(uid, age, gender, occ, zip_code,
                 user_content_hash({"age": age, "gender": gender, "occupation": occ, "zip_code": zip_code}))
                for uid, age, gender, occ, zip_code in zip(cols["user_id"], cols["age"], cols["gender"],
                                                           cols["occupation"], cols["zip_code"])]
        sql = _UPSERT_USERS
    else:
        rows = [(iid, title, year, genres, desc, Jsonb(extra),
                 item_content_hash({"title": title, "year": year, "genres": genres, "description": desc}))
                for iid, title, year, genres, desc, extra in zip(cols["item_id"], cols["title"], cols["year"],
                                                                 cols["genres"], cols["description"], cols["extra"])]
        sql = _UPSERT_ITEMS
    _copy(conn, table, rows, advance)
    inserted = updated = 0
    changed: list[str] = []
    returned = conn.execute(sql).fetchall()
    advance(len(table) - len(table) // 2, description=f"wrote {table.spec.name}")
    for entity_id, was_inserted, hash_changed in returned:
        inserted += bool(was_inserted)
        updated += not was_inserted
        if was_inserted or hash_changed:
            changed.append(entity_id)
    if table.spec.name == "users":
        result.users_inserted, result.users_updated = inserted, updated
        result.changed_user_ids = sorted(changed)
    else:
        result.items_inserted, result.items_updated = inserted, updated
        result.changed_item_ids = sorted(changed)


def _write_interactions(conn, table: Table, result: IngestResult, bar: _Progress) -> None:
    cols = table.columns
    advance = bar.task("writing interactions", len(table))
    rows = zip(cols["user_id"], cols["item_id"], cols["rating"], cols["weight"], cols["event_type"],
               cols["occurred_at"])
    _copy(conn, table, rows, advance)
    added, updated, user_ids, item_ids = conn.execute(_UPSERT_INTERACTIONS).fetchone()
    advance(len(table) - len(table) // 2, description="wrote interactions")
    result.interactions_added, result.interactions_updated = int(added), int(updated)
    result.touched_user_ids, result.touched_item_ids = sorted(user_ids), sorted(item_ids)


# ----- convenience wrappers -----------------------------------------------------------------------
def upsert_users(rows: Any, **kwargs: Any) -> IngestResult:
    """Validate and upsert users only (see :func:`ingest` for the keyword arguments)."""
    return ingest(users=rows, **kwargs)


def upsert_items(rows: Any, **kwargs: Any) -> IngestResult:
    """Validate and upsert items only (see :func:`ingest` for the keyword arguments)."""
    return ingest(items=rows, **kwargs)


def add_interactions(rows: Any, **kwargs: Any) -> IngestResult:
    """Validate and add interactions only; their users and items must already exist (see :func:`ingest`)."""
    return ingest(interactions=rows, **kwargs)


def ingest_dataset(dataset: Any, **kwargs: Any) -> IngestResult:
    """Ingest a :class:`recplatform.datasets.Dataset` (users, items, then interactions) in one call."""
    kwargs.setdefault("source", dataset.source or dataset.name)
    return ingest(users=dataset.users, items=dataset.items, interactions=dataset.interactions, **kwargs)
