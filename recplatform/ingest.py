"""Ingestion: validate users, items and interactions, then upsert them in one transaction (all in or all out).

``ingest(users, items, interactions)`` takes pandas DataFrames or iterables of dicts in the canonical columns
(see :mod:`recplatform.datasets`). Every row of every table is checked before anything is written; the first
bad row raises :class:`ValidationError` naming the source, the row (1-based position in the batch, or the file
line when the rows came from a file loader), the field and the value, and nothing is written. Then, in ONE
transaction: rows are COPYed into temporary tables and upserted into ``rec.users``, ``rec.items`` and
``rec.interactions``. An entity row is rewritten (and ``updated_at`` moved) only when its content changed;
``content_hash`` (users: age, gender, occupation, zip_code; items: title, year, genres, description) changes
only when those fields change. Interactions upsert on their unique key (user, item, event type, time), so
loading the same file twice adds nothing.

After the commit, the changed and touched entities are written to Feast's online store
(``recplatform.features.write_online``) and embedding work is enqueued
(``recplatform.workers.enqueue.enqueue_ingested``). Those steps may fail (services down): the failure is
logged and the committed data stays — the tables are the truth, ``materialize`` and ``reconcile`` catch up.

Accepted values (None, NaN and pd.NA mean "not given"):

- ids (user_id, item_id): non-empty strings of at most 256 characters (Python ints are turned into strings);
- age: integer 0-120 or None; gender: one of ``GENDERS`` (M = male, F = female, X = other / non-binary) or None;
  occupation, zip_code, description: strings or None (blank strings become None);
- title: non-empty string (surrounding whitespace is stripped); year: integer 1800-2100 or None;
  genres: a list of non-empty strings (None = []); extra: a JSON-serialisable dict (None = {});
- rating: number 0-5 or None; weight: finite number (default 1.0); event_type: non-empty string of at most
  64 characters (default ``rating`` when a rating is given, else ``interaction``); occurred_at: datetime,
  pandas Timestamp, ISO string or unix seconds (naive times are UTC; default: the time of the call).
- Unknown columns are an error (a typo must not drop data silently); columns starting with ``_`` are ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd

from recplatform.config import Settings, get_settings

log = logging.getLogger(__name__)

GENDERS = ("M", "F", "X")
AGE_RANGE = (0, 120)
YEAR_RANGE = (1800, 2100)
RATING_RANGE = (0.0, 5.0)
MAX_ID_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 64
_COPY_PROGRESS_CHUNK = 10_000


class ValidationError(ValueError):
    """A bad input row: ``source``, ``row`` (1-based batch row or file line), ``field``, ``value``, ``reason``."""

    def __init__(self, source: str, row: int | None, field: str, value: Any, reason: str = "invalid value",
                 *, is_file: bool = False) -> None:
        self.source = source
        self.row = row
        self.field = field
        self.value = value
        self.reason = reason
        self.is_file = is_file
        where = "" if row is None else (f" line {row}" if is_file else f" row {row}")
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{source}:{where} field {field!r}: {reason} (value: {shown})")


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


# ----- content hashes -----------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-ready plain value: numpy scalars and arrays become Python ones, NaN/NA become None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in list(value)]
    if _is_null(value):
        return None
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _digest(values: list[Any]) -> str:
    text = json.dumps([_plain(v) for v in values], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def user_content_hash(user: Mapping[str, Any]) -> str:
    """Hash of the text-relevant user fields (age, gender, occupation, zip_code), as stored in rec.users."""
    return _digest([user.get("age"), user.get("gender"), user.get("occupation"), user.get("zip_code")])


def item_content_hash(item: Mapping[str, Any]) -> str:
    """Hash of the text-relevant item fields (title, year, genres, description), as stored in rec.items."""
    return _digest([item.get("title"), item.get("year"), list(item.get("genres") or []), item.get("description")])


# ----- value converters: return the normalised value or raise _Bad ------------------------------------
class _Bad(Exception):
    pass


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def _text(value: str) -> str:
    if "\x00" in value:
        raise _Bad("contains a NUL character")
    return value


def _entity_id(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = str(int(value))
    if not isinstance(value, str):
        raise _Bad("must be a non-empty string id")
    if not value.strip():
        raise _Bad("must be a non-empty string id")
    if len(value) > MAX_ID_LENGTH:
        raise _Bad(f"longer than {MAX_ID_LENGTH} characters")
    return _text(value)


def _integer(value: Any, low: int, high: int) -> int | None:
    if _is_null(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise _Bad("must be an integer")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        number = int(value)
    else:
        raise _Bad("must be an integer")
    if not low <= number <= high:
        raise _Bad(f"must be between {low} and {high}")
    return number


def _optional_text(value: Any) -> str | None:
    if _is_null(value):
        return None
    if not isinstance(value, str):
        raise _Bad("must be a string")
    value = value.strip()
    return _text(value) if value else None


def _gender(value: Any) -> str | None:
    value = _optional_text(value)
    if value is not None and value not in GENDERS:
        raise _Bad(f"must be one of {', '.join(GENDERS)} or empty")
    return value


def _title(value: Any) -> str:
    if _is_null(value) or not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    return _text(value.strip())


def _genres(value: Any) -> list[str]:
    if _is_null(value):
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise _Bad("must be a list of strings")
    out = []
    for genre in list(value):
        if not isinstance(genre, str) or not genre.strip():
            raise _Bad("must be a list of non-empty strings")
        out.append(_text(genre.strip()))
    return out


def _extra(value: Any) -> dict:
    if _is_null(value):
        return {}
    if not isinstance(value, Mapping):
        raise _Bad("must be a dict")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"must be JSON-serialisable ({exc})") from None
    if "\\u0000" in json.dumps(value):
        raise _Bad("contains a NUL character")
    return dict(value)


def _number(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _Bad("must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise _Bad("must be a finite number")
    return number


def _rating(value: Any) -> float | None:
    if _is_null(value):
        return None
    number = _number(value)
    if not RATING_RANGE[0] <= number <= RATING_RANGE[1]:
        raise _Bad(f"must be between {RATING_RANGE[0]:g} and {RATING_RANGE[1]:g}")
    return number


def _weight(value: Any) -> float:
    return 1.0 if _is_null(value) else _number(value)


def _event_type(value: Any) -> str | None:
    if _is_null(value):
        return None  # filled from the rating below
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    if len(value) > MAX_EVENT_TYPE_LENGTH:
        raise _Bad(f"longer than {MAX_EVENT_TYPE_LENGTH} characters")
    return _text(value.strip())


def _timestamp(value: Any) -> datetime | None:
    if _is_null(value):
        return None  # filled with the call's time below
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (bool, np.bool_)):
        raise _Bad("must be a datetime, ISO string or unix seconds")
    try:
        if isinstance(value, (int, float, np.integer, np.floating)):
            stamp = pd.Timestamp(float(value), unit="s", tz="UTC")
        elif isinstance(value, (str, datetime, np.datetime64)):
            stamp = pd.Timestamp(value)
        else:
            raise _Bad("must be a datetime, ISO string or unix seconds")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise _Bad("not a valid time") from None
    if stamp is pd.NaT:
        raise _Bad("not a valid time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


# ----- tables -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    name: str
    converters: dict[str, Callable[[Any], Any]]
    required: tuple[str, ...]
    key: tuple[str, ...]


_SPECS = {
    "users": _Spec("users", {
        "user_id": _entity_id, "age": lambda v: _integer(v, *AGE_RANGE), "gender": _gender,
        "occupation": _optional_text, "zip_code": _optional_text,
    }, ("user_id",), ("user_id",)),
    "items": _Spec("items", {
        "item_id": _entity_id, "title": _title, "year": lambda v: _integer(v, *YEAR_RANGE), "genres": _genres,
        "description": _optional_text, "extra": _extra,
    }, ("item_id", "title"), ("item_id",)),
    "interactions": _Spec("interactions", {
        "user_id": _entity_id, "item_id": _entity_id, "rating": _rating, "weight": _weight,
        "event_type": _event_type, "occurred_at": _timestamp,
    }, ("user_id", "item_id"), ("user_id", "item_id", "event_type", "occurred_at")),
}


@dataclass
class _Table:
    """One validated table: normalised column lists plus where its rows came from."""

    spec: _Spec
    source: str
    rows: list[int]
    is_file: bool
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def error(self, position: int, field_name: str, value: Any, reason: str) -> ValidationError:
        return ValidationError(self.source, self.rows[position], field_name, value, reason, is_file=self.is_file)


def _to_frame(rows: Any, spec: _Spec, source: str) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ValidationError(source, None, spec.name, type(rows).__name__,
                              "must be a DataFrame or an iterable of dicts")
    records = list(rows)
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValidationError(source, position + 1, spec.name, record, "row must be a dict")
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(spec.converters))


def _validate(rows: Any, spec: _Spec, source: str, now: datetime) -> _Table | None:
    """Check and normalise every row of one table; raise the first bad row's ValidationError."""
    if rows is None:
        return None
    frame = _to_frame(rows, spec, source)
    file_source = frame.attrs.get("source")
    # File loaders index rows by their line (index named "line"); a re-indexed copy falls back to positions.
    is_file = bool(file_source and frame.attrs.get("line_index") and frame.index.name == "line")
    table_source = str(file_source or source)
    row_numbers = [int(i) for i in frame.index] if is_file else list(range(1, len(frame) + 1))
    table = _Table(spec, table_source, row_numbers, is_file, {})
    first_row = row_numbers[0] if row_numbers else None

    for column in frame.columns:
        if not isinstance(column, str) or (column not in spec.converters and not column.startswith("_")):
            raise ValidationError(table_source, None, str(column), None,
                                  f"unknown {spec.name} column (expected {', '.join(spec.converters)})",
                                  is_file=is_file)
    for column in spec.required:
        if column not in frame.columns and len(frame):
            raise ValidationError(table_source, first_row, column, None, f"missing required {spec.name} column",
                                  is_file=is_file)

    first_bad: tuple[int, int, ValidationError] | None = None  # (position, column order, error)
    for order, (column, convert) in enumerate(spec.converters.items()):
        values = _column_values(frame, column)
        out: list[Any] = []
        for position, value in enumerate(values):
            if first_bad is not None and position >= first_bad[0]:
                break
            try:
                out.append(convert(value))
            except _Bad as bad:
                first_bad = (position, order, table.error(position, column, value, str(bad)))
                break
        table.columns[column] = out
    if first_bad is not None:
        raise first_bad[2]

    if spec.name == "interactions":
        cols = table.columns
        cols["event_type"] = [e if e is not None else ("rating" if r is not None else "interaction")
                              for e, r in zip(cols["event_type"], cols["rating"])]
        cols["occurred_at"] = [t if t is not None else now for t in cols["occurred_at"]]
    _check_duplicates(table)
    return table


def _column_values(frame: pd.DataFrame, column: str) -> list[Any]:
    """The column as Python values; datetime columns become UTC ``datetime`` objects in one vectorised step."""
    if column not in frame.columns:
        return [None] * len(frame)
    series = frame[column]
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        return [None if pd.isna(v) else v for v in stamps.array.to_pydatetime()]
    return series.tolist()


def _check_duplicates(table: _Table) -> None:
    key = table.spec.key
    seen: dict[tuple, int] = {}
    for position, values in enumerate(zip(*(table.columns[k] for k in key))):
        first = seen.setdefault(values, position)
        if first != position:
            what = key[0] if len(key) == 1 else "(" + ", ".join(key) + ")"
            raise table.error(position, key[-1], values[0] if len(key) == 1 else values,
                              f"duplicate {what} in this batch (first at {'line' if table.is_file else 'row'} "
                              f"{table.rows[first]})")


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
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn)

            self._bar = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=False)
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
           settings: Settings | None = None, online: bool = True, enqueue: bool = True,
           progress: bool = False) -> IngestResult:
    """Validate every row, then upsert users, items and interactions in one transaction; see the module doc."""
    from recplatform.db import transaction

    settings = settings or get_settings()
    started = time.perf_counter()
    result = IngestResult()
    now = datetime.now(timezone.utc)
    sizes = [0 if rows is None else len(rows) if hasattr(rows, "__len__") else 0
             for rows in (users, items, interactions)]

    with _Progress(progress, sum(sizes)) as bar:
        tick = bar.task("validating rows", sum(sizes))
        tables: dict[str, _Table] = {}
        for name, rows in (("users", users), ("items", items), ("interactions", interactions)):
            table = _validate(rows, _SPECS[name], source, now)
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
        result.timings["write"] = time.perf_counter() - write_started

    log.info("ingested from %s: users +%d ~%d, items +%d ~%d, interactions +%d ~%d in %.2fs",
             source, result.users_inserted, result.users_updated, result.items_inserted, result.items_updated,
             result.interactions_added, result.interactions_updated, time.perf_counter() - started)
    _after_commit(result, settings, online=online, enqueue=enqueue, progress=progress)
    result.seconds = time.perf_counter() - started
    return result


def _check_references(conn, tables: dict[str, _Table]) -> None:
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


def _copy(conn, table: _Table, rows: Iterable[tuple], advance: Callable[..., None]) -> None:
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


def _write_entities(conn, table: _Table, result: IngestResult, bar: _Progress) -> None:
    from psycopg.types.json import Jsonb

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


def _write_interactions(conn, table: _Table, result: IngestResult, bar: _Progress) -> None:
    cols = table.columns
    advance = bar.task("writing interactions", len(table))
    rows = zip(cols["user_id"], cols["item_id"], cols["rating"], cols["weight"], cols["event_type"],
               cols["occurred_at"])
    _copy(conn, table, rows, advance)
    added, updated, user_ids, item_ids = conn.execute(_UPSERT_INTERACTIONS).fetchone()
    advance(len(table) - len(table) // 2, description="wrote interactions")
    result.interactions_added, result.interactions_updated = int(added), int(updated)
    result.touched_user_ids, result.touched_item_ids = sorted(user_ids), sorted(item_ids)


# ----- after the commit ---------------------------------------------------------------------------
def _after_commit_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Run a step that follows the commit; a failure is logged, never raised: the data is committed, and
    ``recplatform materialize`` / ``reconcile`` repair whatever the step missed."""
    try:
        step(*args, **kwargs)
        return True
    except Exception as exc:  # noqa: BLE001 - a failed follow-up must not look like a failed ingestion
        log.warning("%s failed after the data was committed (run `recplatform materialize` / reconcile "
                    "to catch up): %s", getattr(step, "__name__", step), exc)
        return False


def _after_commit(result: IngestResult, settings: Settings, *, online: bool, enqueue: bool,
                  progress: bool = False) -> None:
    user_ids = sorted(set(result.changed_user_ids) | set(result.touched_user_ids))
    item_ids = sorted(set(result.changed_item_ids) | set(result.touched_item_ids))
    if not user_ids and not item_ids:
        return
    if online:
        started = time.perf_counter()
        from recplatform.features import write_online

        _after_commit_step(write_online, settings, user_ids=user_ids, item_ids=item_ids, progress=progress)
        result.timings["online"] = time.perf_counter() - started
    if enqueue and settings.enqueue_on_ingest:
        started = time.perf_counter()
        from recplatform.workers.enqueue import enqueue_ingested

        _after_commit_step(enqueue_ingested, result, settings)
        result.timings["enqueue"] = time.perf_counter() - started


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
