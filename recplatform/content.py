"""Entity content: the text-relevant fields of users and items and their content hashes.

A content hash changes exactly when the text an entity is embedded from changes, so ingestion (which stores it),
the embedding pipeline (which skips ids whose current hash already has a vector) and Feast reads (checked against
it) agree on one definition.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

USER_CONTENT_FIELDS = ("age", "gender", "occupation", "zip_code")
ITEM_CONTENT_FIELDS = ("title", "year", "genres", "description")


def is_null(value: Any) -> bool:
    """None, NaN, pd.NA and NaT all mean "not given"."""
    if value is None:
        return True
    pd = sys.modules.get("pandas")  # a pandas value exists only once pandas is imported: never import it here
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def json_ready(value: Any) -> Any:
    """A JSON-ready plain value: numpy scalars and arrays become Python ones, NaN/NA become None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in list(value)]
    if is_null(value):
        return None
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _digest(values: list[Any]) -> str:
    text = json.dumps([json_ready(v) for v in values], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def user_content_hash(user: Mapping[str, Any]) -> str:
    """Hash of the text-relevant user fields (age, gender, occupation, zip_code), as stored in rec.users."""
    return _digest([user.get(f) for f in USER_CONTENT_FIELDS])


def item_content_hash(item: Mapping[str, Any]) -> str:
    """Hash of the text-relevant item fields (title, year, genres, description), as stored in rec.items."""
    return _digest([item.get("title"), item.get("year"), list(item.get("genres") or []), item.get("description")])


def content_hash(kind: str, row: Mapping[str, Any]) -> str:
    """The content hash of a ``user`` or ``item`` row."""
    return user_content_hash(row) if kind == "user" else item_content_hash(row)
