"""Ingestion, step 1: check and normalise every row of users, items and interactions before anything is written.

The first bad row raises :class:`ValidationError` naming the source, the row (1-based position in the batch, or
the file line when the rows came from a file loader), the field and the value.

Accepted values (None, NaN and pd.NA mean "not given"):

- ids (user_id, item_id): non-empty strings of at most 256 characters (Python ints are turned into strings);
- age: integer 0-120 or None; gender: one of ``GENDERS`` (M = male, F = female, X = other / non-binary) or None;
  occupation, zip_code: strings of at most 200 characters or None; description: a string of at most 10,000
  characters or None (blank strings become None);
- title: non-empty string of at most 1,000 characters (surrounding whitespace is stripped); year: integer
  1800-2100 or None; genres: a list of at most 100 non-empty strings of at most 200 characters (None = []);
  extra: a JSON-serialisable dict (None = {});
- rating: number with 0 < rating <= 5, or None (0 is refused: a zero strength gives the user no taste);
  weight: finite number with 0 < weight <= 1e6 (default 1.0); event_type: non-empty string of at most
  64 characters (default ``rating`` when a rating is given, else ``interaction``); occurred_at: datetime,
  pandas Timestamp, ISO string or unix seconds (naive times are UTC; default: the time of the call).
- No string may contain a NUL character (Postgres text cannot hold one). The bounds live in
  :mod:`recplatform.input_limits`.
- Unknown columns are an error (a typo must not drop data silently); columns starting with ``_`` are ignored.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from recplatform.content import is_null
from recplatform.input_limits import (AGE_RANGE, GENDERS, MAX_DESCRIPTION_LENGTH, MAX_EVENT_TYPE_LENGTH,
                                     MAX_GENRES_PER_ITEM, MAX_ID_LENGTH, MAX_SHORT_TEXT_LENGTH, MAX_TITLE_LENGTH,
                                     MAX_WEIGHT, RATING_RANGE, YEAR_RANGE)



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


# ----- value converters: return the normalised value or raise _Bad ------------------------------------
class _Bad(Exception):
    pass


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
    if is_null(value):
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


def _optional_text(value: Any, max_length: int = MAX_SHORT_TEXT_LENGTH) -> str | None:
    if is_null(value):
        return None
    if not isinstance(value, str):
        raise _Bad("must be a string")
    value = value.strip()
    if len(value) > max_length:
        raise _Bad(f"longer than {max_length:,} characters")
    return _text(value) if value else None


def _description(value: Any) -> str | None:
    return _optional_text(value, MAX_DESCRIPTION_LENGTH)


def _gender(value: Any) -> str | None:
    value = _optional_text(value)
    if value is not None and value not in GENDERS:
        raise _Bad(f"must be one of {', '.join(GENDERS)} or empty")
    return value


def _title(value: Any) -> str:
    if is_null(value) or not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    if len(value.strip()) > MAX_TITLE_LENGTH:
        raise _Bad(f"longer than {MAX_TITLE_LENGTH:,} characters")
    return _text(value.strip())


def _genres(value: Any) -> list[str]:
    if is_null(value):
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise _Bad("must be a list of strings")
    out = []
    if len(value) > MAX_GENRES_PER_ITEM:
        raise _Bad(f"more than {MAX_GENRES_PER_ITEM} genres")
    for genre in list(value):
        if not isinstance(genre, str) or not genre.strip():
            raise _Bad("must be a list of non-empty strings")
        if len(genre.strip()) > MAX_SHORT_TEXT_LENGTH:
            raise _Bad(f"a genre name is longer than {MAX_SHORT_TEXT_LENGTH} characters")
        out.append(_text(genre.strip()))
    return out


def _extra(value: Any) -> dict:
    if is_null(value):
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
    if is_null(value):
        return None
    number = _number(value)
    if not RATING_RANGE[0] < number <= RATING_RANGE[1]:
        raise _Bad(f"must be greater than {RATING_RANGE[0]:g} and at most {RATING_RANGE[1]:g}")
    return number


def _weight(value: Any) -> float:
    if is_null(value):
        return 1.0
    number = _number(value)
    if not 0 < number <= MAX_WEIGHT:
        raise _Bad(f"must be greater than 0 and at most {MAX_WEIGHT:g}")
    return number


def _event_type(value: Any) -> str | None:
    if is_null(value):
        return None  # filled from the rating below
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    if len(value) > MAX_EVENT_TYPE_LENGTH:
        raise _Bad(f"longer than {MAX_EVENT_TYPE_LENGTH} characters")
    return _text(value.strip())


def _timestamp(value: Any) -> datetime | None:
    if is_null(value):
        return None  # filled with the call's time below
    loaded = sys.modules.get("pandas")  # a pandas Timestamp exists only once pandas is imported
    if isinstance(value, datetime) and not (loaded is not None and isinstance(value, loaded.Timestamp)):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (bool, np.bool_)):
        raise _Bad("must be a datetime, ISO string or unix seconds")
    import pandas as pd  # deferred: pandas (parses strings and epochs; users and items carry no time)

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
class Spec:
    name: str
    converters: dict[str, Callable[[Any], Any]]
    required: tuple[str, ...]
    key: tuple[str, ...]


SPECS = {
    "users": Spec("users", {
        "user_id": _entity_id, "age": lambda v: _integer(v, *AGE_RANGE), "gender": _gender,
        "occupation": _optional_text, "zip_code": _optional_text,
    }, ("user_id",), ("user_id",)),
    "items": Spec("items", {
        "item_id": _entity_id, "title": _title, "year": lambda v: _integer(v, *YEAR_RANGE), "genres": _genres,
        "description": _description, "extra": _extra,
    }, ("item_id", "title"), ("item_id",)),
    "interactions": Spec("interactions", {
        "user_id": _entity_id, "item_id": _entity_id, "rating": _rating, "weight": _weight,
        "event_type": _event_type, "occurred_at": _timestamp,
    }, ("user_id", "item_id"), ("user_id", "item_id", "event_type", "occurred_at")),
}


@dataclass
class Table:
    """One validated table: normalised column lists plus where its rows came from."""

    spec: Spec
    source: str
    rows: list[int]
    is_file: bool
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def error(self, position: int, field_name: str, value: Any, reason: str) -> ValidationError:
        return ValidationError(self.source, self.rows[position], field_name, value, reason, is_file=self.is_file)


def _is_frame(rows: Any) -> bool:
    """Whether ``rows`` is a pandas DataFrame (one exists only once pandas is imported: never import it here)."""
    loaded = sys.modules.get("pandas")
    return loaded is not None and isinstance(rows, loaded.DataFrame)


@dataclass
class _Rows:
    """The input as columns, whatever its form: a DataFrame's, or those of an iterable of dicts (read without
    pandas, so that adding one user does not import it)."""

    columns: list[Any]
    count: int
    values: Callable[[str], list[Any]]
    file_source: Any = None
    line_numbers: list[int] | None = None  # file lines, when a file loader indexed the frame by them


def _rows_of(rows: Any, spec: Spec, source: str) -> _Rows:
    if _is_frame(rows):
        # File loaders index rows by their line (index named "line"); a re-indexed copy falls back to positions.
        file_source = rows.attrs.get("source")
        is_file = bool(file_source and rows.attrs.get("line_index") and rows.index.name == "line")
        return _Rows(list(rows.columns), len(rows), lambda column: _column_values(rows, column), file_source,
                     [int(i) for i in rows.index] if is_file else None)
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ValidationError(source, None, spec.name, type(rows).__name__,
                              "must be a DataFrame or an iterable of dicts")
    records = list(rows)
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValidationError(source, position + 1, spec.name, record, "row must be a dict")
    columns = list(dict.fromkeys(key for record in records for key in record))  # first-seen order, as pandas
    return _Rows(columns, len(records), lambda column: [record.get(column) for record in records])


def validate(rows: Any, spec: Spec, source: str, now: datetime) -> Table | None:
    """Check and normalise every row of one table; raise the first bad row's ValidationError."""
    if rows is None:
        return None
    given = _rows_of(rows, spec, source)
    is_file = given.line_numbers is not None
    table_source = str(given.file_source or source)
    row_numbers = given.line_numbers if is_file else list(range(1, given.count + 1))
    table = Table(spec, table_source, row_numbers, is_file, {})
    first_row = row_numbers[0] if row_numbers else None

    for column in given.columns:
        if not isinstance(column, str) or (column not in spec.converters and not column.startswith("_")):
            raise ValidationError(table_source, None, str(column), None,
                                  f"unknown {spec.name} column (expected {', '.join(spec.converters)})",
                                  is_file=is_file)
    for column in spec.required:
        if column not in given.columns and given.count:
            raise ValidationError(table_source, first_row, column, None, f"missing required {spec.name} column",
                                  is_file=is_file)

    first_bad: tuple[int, int, ValidationError] | None = None  # (position, column order, error)
    for order, (column, convert) in enumerate(spec.converters.items()):
        values = given.values(column) if column in given.columns else [None] * given.count
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


def _column_values(frame: Any, column: str) -> list[Any]:
    """A DataFrame's column as Python values; datetime columns become UTC ``datetime`` objects in one step."""
    import pandas as pd  # deferred: pandas (imported already: the caller holds a DataFrame)

    if column not in frame.columns:
        return [None] * len(frame)
    series = frame[column]
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        return [None if pd.isna(v) else v for v in stamps.array.to_pydatetime()]
    return series.tolist()


def _check_duplicates(table: Table) -> None:
    key = table.spec.key
    seen: dict[tuple, int] = {}
    for position, values in enumerate(zip(*(table.columns[k] for k in key))):
        first = seen.setdefault(values, position)
        if first != position:
            what = key[0] if len(key) == 1 else "(" + ", ".join(key) + ")"
            raise table.error(position, key[-1], values[0] if len(key) == 1 else values,
                              f"duplicate {what} in this batch (first at {'line' if table.is_file else 'row'} "
                              f"{table.rows[first]})")
