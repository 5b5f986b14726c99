"""Ingestion: validate every row (:mod:`.validate`), then upsert in one transaction (:mod:`.write`); all in or all out.

``ingest(users, items, interactions)`` takes pandas DataFrames or iterables of dicts in the canonical columns (see
:mod:`recplatform.datasets`). It touches only Postgres; :func:`recplatform.publish.ingest_and_publish` adds the
steps that follow a commit (Feast online write, embedding queue).
"""

from recplatform.ingest.validate import AGE_RANGE, GENDERS, MAX_ID_LENGTH, RATING_RANGE, YEAR_RANGE, ValidationError
from recplatform.ingest.write import IngestResult, add_interactions, ingest, ingest_dataset, upsert_items, upsert_users

__all__ = ["AGE_RANGE", "GENDERS", "MAX_ID_LENGTH", "RATING_RANGE", "YEAR_RANGE", "IngestResult", "ValidationError",
           "add_interactions", "ingest", "ingest_dataset", "upsert_items", "upsert_users"]
