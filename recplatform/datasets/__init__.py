"""Datasets as plain DataFrames in the canonical ingestion columns: MovieLens loaders and a synthetic generator.

A :class:`Dataset` holds three DataFrames whose columns are exactly what :func:`recplatform.ingest.ingest`
takes, so ``ingest_dataset(load_movielens(path))`` loads a dataset:

- ``users``: user_id (str), age (Int64, nullable), gender, occupation, zip_code (str)
- ``items``: item_id (str), title, year (Int64, nullable), genres (list[str]), description (str or None),
  extra (dict)
- ``interactions``: user_id, item_id (str), rating (float), weight (float), event_type (str),
  occurred_at (datetime64[ns, UTC])

Loaders that read files record where each row came from: ``frame.attrs["source"]`` is the file and the
frame's index holds the 1-based line number in that file (``frame.attrs["line_index"] = True``), so a
validation error during ingestion names the file and the line. ``truth`` carries the ground truth the
synthetic generator planted (empty for real data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres", "description", "extra"]
INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "weight", "event_type", "occurred_at"]


@dataclass
class Dataset:
    """Users, items and interactions of one dataset, in the canonical columns; ``truth`` for planted signal."""

    name: str
    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    truth: dict = field(default_factory=dict)
    source: str = ""
    catalogue: str = ""  # the id space (recplatform.ingest.catalogues); "" = the name

    @property
    def catalogue_name(self) -> str:
        return self.catalogue or self.name

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "items": len(self.items), "interactions": len(self.interactions)}


def with_source(frame: pd.DataFrame, source: str, lines: list[int] | None = None) -> pd.DataFrame:
    """Mark ``frame`` as read from ``source``; ``lines`` (1-based file lines) become its index."""
    if lines is not None:
        frame.index = pd.Index(lines, dtype="int64", name="line")
        frame.attrs["line_index"] = True
    frame.attrs["source"] = source
    return frame


from recplatform.datasets.movielens import load_movielens  # noqa: E402
from recplatform.datasets.synthetic import generate_synthetic  # noqa: E402

__all__ = [
    "Dataset", "load_movielens", "generate_synthetic", "with_source",
    "USER_COLUMNS", "ITEM_COLUMNS", "INTERACTION_COLUMNS",
]
