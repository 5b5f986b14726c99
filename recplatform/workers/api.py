"""The public task API's work as plain functions that take and return JSON (the contract is docs/tasks.md).

A service that does not install recplatform sends ``recplatform.ingest_events``, ``recplatform.recommend`` and
``recplatform.recommend_batch`` by name (:mod:`recplatform.workers.tasks` wraps these functions). Every result is
a JSON object with ``contract_version``; a caller's mistake is *returned* as ``{"error": {"type", "argument",
"message", ...}}`` (the task succeeds, nothing is retried, nothing is written), while infrastructure failures
(database or broker unreachable) *raise* and are retried with backoff, a bounded number of times.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from recplatform import batch
from recplatform.client import RecClient, RecClientError, UnknownItemError, UnknownUserError
from recplatform.config import Settings
from recplatform.ingest import ValidationError, ingest
from recplatform.publish import publish

log = logging.getLogger(__name__)

#: Bumped on any incompatible change of a task's name, arguments or result (docs/tasks.md, "Versioning").
CONTRACT_VERSION = 1
TABLES = ("users", "items", "interactions")
RECOMMEND_ARGUMENTS = ("user_id", "k", "exclude_seen", "genres", "min_year", "max_year", "strategy",
                       "popularity_weight", "content_weight")


def ok(**fields: Any) -> dict:
    return {"contract_version": CONTRACT_VERSION, **fields}


def error(kind: str, argument: str | None, message: str, **extra: Any) -> dict:
    return {"contract_version": CONTRACT_VERSION,
            "error": {"type": kind, "argument": argument, "message": message, **extra}}


def client_error(exc: RecClientError) -> dict:
    """The structured form of the Python client's errors (same argument names as ``rec.recommend``)."""
    if isinstance(exc, UnknownUserError):
        return error("unknown_user", "user_id", str(exc))
    if isinstance(exc, UnknownItemError):
        return error("unknown_item", "item_id", str(exc))
    argument = getattr(exc, "argument", None)
    return error("invalid_argument", "min_year/max_year" if argument == "years" else argument, str(exc))


# ----- recplatform.ingest_events ----------------------------------------------------------------------------
def _frame(name: str, rows: Any) -> Any:
    """Rows as a DataFrame whose validation errors name the table as their source (positions stay 1-based)."""
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        return rows  # validation reports the shape error itself
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    frame.attrs["source"] = name
    return frame


def _missing_occurred_at(interactions: Any) -> dict | None:
    """A redelivered message must write nothing twice: interactions are keyed by (user, item, event type,
    occurred_at), and a default ``occurred_at`` (the time of the call) would differ between deliveries."""
    if not isinstance(interactions, list):
        return None
    for row, record in enumerate(interactions, start=1):
        if isinstance(record, Mapping) and record.get("occurred_at") in (None, ""):
            reason = "required by the task API (a redelivered message must not add the event twice)"
            return error("invalid_rows", "interactions", f"interactions: row {row} field 'occurred_at': {reason}",
                         errors=[{"source": "interactions", "row": row, "field": "occurred_at", "reason": reason,
                                  "value": None}])
    return None


def ingest_events(settings: Settings, users: Any = None, items: Any = None, interactions: Any = None,
                  *, publish_after: bool = True) -> dict:
    """Validate and upsert in one transaction (all or nothing), with the follow-up work in the task outbox;
    then the Feast online write, as :func:`recplatform.publish.ingest_and_publish` does."""
    given = {name: rows for name, rows in zip(TABLES, (users, items, interactions)) if rows is not None}
    if not given:
        return error("invalid_argument", None, "give at least one of users, items, interactions")
    bad = _missing_occurred_at(interactions)
    if bad:
        return bad
    try:
        result = ingest(*(_frame(name, given.get(name)) if name in given else None for name in TABLES),
                        source="ingest_events", settings=settings,
                        enqueue=publish_after and settings.enqueue_on_ingest)
    except ValidationError as exc:
        field = {"source": exc.source, "row": exc.row, "field": exc.field, "reason": exc.reason,
                 "value": exc.value if isinstance(exc.value, (str, int, float, bool, type(None))) else repr(exc.value)}
        argument = exc.source if exc.source in TABLES else None
        return error("invalid_rows", argument, str(exc), errors=[field])
    if publish_after:
        publish(result, settings)
    return ok(users_inserted=result.users_inserted, users_updated=result.users_updated,
              items_inserted=result.items_inserted, items_updated=result.items_updated,
              interactions_added=result.interactions_added, interactions_updated=result.interactions_updated,
              changed_user_ids=len(result.changed_user_ids), changed_item_ids=len(result.changed_item_ids))


# ----- recplatform.recommend ---------------------------------------------------------------------------------
def recommend(settings: Settings, user_id: Any = None, k: Any = 10, exclude_seen: Any = True, genres: Any = None,
              min_year: Any = None, max_year: Any = None, strategy: Any = None, popularity_weight: Any = None,
              content_weight: Any = None) -> dict:
    """``rec.recommend`` for one stored user; rows as ``{rank, item_id, title, score, source}``."""
    if user_id is None:
        return error("invalid_argument", "user_id", "user_id is required")
    if not isinstance(exclude_seen, bool):
        return error("invalid_argument", "exclude_seen", f"must be true or false, got {exclude_seen!r}")
    try:
        with RecClient(settings) as client:
            rows = client.recommend(user_id, k, exclude_seen=exclude_seen, genres=genres, years=(min_year, max_year),
                                    strategy=strategy, popularity_weight=popularity_weight,
                                    content_weight=content_weight)
    except RecClientError as exc:
        return client_error(exc)
    return ok(user_id=str(user_id), rows=[{"rank": r.rank, "item_id": r.item_id, "title": r.title,
                                           "score": float(r.score), "source": r.source} for r in rows])


# ----- recplatform.recommend_batch ---------------------------------------------------------------------------
def start_batch(settings: Settings, run_id: Any = None, user_ids: Any = None, segment: Any = None,
                **params: Any) -> tuple[dict, list[list[str]]]:
    """Create (or resume) a run; the result and the chunks of users still to write."""
    try:
        run, chunks = batch.start_run(settings, run_id, user_ids=user_ids, segment=segment, params=params)
    except batch.BatchRequestError as exc:
        return error(exc.kind, exc.argument, str(exc)), []
    except RecClientError as exc:
        return client_error(exc), []
    return ok(**run.as_dict(), chunks=len(chunks)), chunks


def batch_chunk(settings: Settings, run_id: str, user_ids: list[str]) -> dict:
    """Write one chunk's users (those not written yet) and advance the run's progress."""
    written = batch.write_chunk(settings, run_id, list(user_ids))
    return ok(run_id=run_id, users_written=written)
