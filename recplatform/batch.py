"""Batch recommendations: many users' ``rec.recommend`` rows written to ``rec.batch_recommendations`` by run.

A run (``rec.batch_runs``) fixes its users when it is created (an explicit list, or a segment of age band,
gender and occupation resolved once into ``rec.batch_run_users``), then is written in chunks. A chunk locks its
users that are not done yet (``FOR UPDATE SKIP LOCKED``: a duplicate delivery of the same chunk skips them),
writes their rows and marks them done in one transaction, and advances ``done`` / ``status`` of the run. So a
worker that dies mid-chunk loses nothing (the transaction rolls back), and starting the same ``run_id`` again
only enqueues the users not written yet. Analysts read the tables with SQL (rec_reader may SELECT them).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from recplatform import db
from recplatform.client import RecClient, UnknownUserError
from recplatform.config import Settings

log = logging.getLogger(__name__)

CHUNK_USERS = 500
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SEGMENT_KEYS = ("min_age", "max_age", "gender", "occupation")
PARAM_KEYS = ("k", "exclude_seen", "genres", "min_year", "max_year", "strategy", "popularity_weight",
              "content_weight")

_RUN = "SELECT run_id, status, params, total, done, started_at, finished_at FROM rec.batch_runs WHERE run_id = %s"
_NEW_RUN = "INSERT INTO rec.batch_runs (run_id, params) VALUES (%s, %s::jsonb)"
_MEMBERS_FROM_LIST = """
INSERT INTO rec.batch_run_users (run_id, user_id) SELECT %s, u FROM unnest(%s::text[]) AS u ON CONFLICT DO NOTHING
"""
_MEMBERS_FROM_SEGMENT = """
INSERT INTO rec.batch_run_users (run_id, user_id)
SELECT %(run)s, u.user_id FROM rec.users u
WHERE (%(min_age)s::int IS NULL OR u.age >= %(min_age)s::int) AND (%(max_age)s::int IS NULL OR u.age <= %(max_age)s::int)
  AND (%(gender)s::text IS NULL OR u.gender = %(gender)s::text)
  AND (%(occupation)s::text IS NULL OR u.occupation = %(occupation)s::text)
"""
_SET_TOTAL = """
UPDATE rec.batch_runs SET total = (SELECT count(*) FROM rec.batch_run_users WHERE run_id = %(run)s),
       status = CASE WHEN (SELECT count(*) FROM rec.batch_run_users WHERE run_id = %(run)s) = 0 THEN 'done'
                     ELSE 'running' END,
       finished_at = CASE WHEN (SELECT count(*) FROM rec.batch_run_users WHERE run_id = %(run)s) = 0 THEN now() END
WHERE run_id = %(run)s
"""
_KNOWN_USERS = "SELECT user_id FROM rec.users WHERE user_id = ANY(%s)"
_PENDING = "SELECT user_id FROM rec.batch_run_users WHERE run_id = %s AND done_at IS NULL ORDER BY user_id"
_LOCK_PENDING = """
SELECT user_id FROM rec.batch_run_users WHERE run_id = %s AND user_id = ANY(%s) AND done_at IS NULL
ORDER BY user_id FOR UPDATE SKIP LOCKED
"""
_INSERT_ROW = """
INSERT INTO rec.batch_recommendations (run_id, user_id, rank, item_id, score, source) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, user_id, rank) DO NOTHING
"""
_MARK_DONE = "UPDATE rec.batch_run_users SET done_at = now() WHERE run_id = %s AND user_id = ANY(%s)"
_ADVANCE = """
UPDATE rec.batch_runs SET done = done + %(n)s,
       status = CASE WHEN done + %(n)s >= total THEN 'done' ELSE 'running' END,
       finished_at = CASE WHEN done + %(n)s >= total THEN now() END
WHERE run_id = %(run)s
"""


class BatchRequestError(ValueError):
    """A bad recommend_batch request: ``kind`` (``invalid_argument``, ``unknown_user``) and ``argument``."""

    def __init__(self, kind: str, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.kind, self.argument = kind, argument


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str
    total: int
    done: int
    started_at: str
    finished_at: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def get_run(settings: Settings, run_id: str, conn=None) -> Run | None:
    """The run's progress as stored in ``rec.batch_runs`` (None when there is no such run)."""
    if conn is None:
        with db.connect(settings) as own:
            return get_run(settings, run_id, own)
    row = conn.execute(_RUN, (run_id,)).fetchone()
    if row is None:
        return None
    return Run(row[0], row[1], int(row[3]), int(row[4]), row[5].isoformat(), row[6].isoformat() if row[6] else None)


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise BatchRequestError("invalid_argument", "run_id", "must be 1-128 characters of letters, digits and "
                                                              f"_ . : - (starting with a letter or digit), got {run_id!r}")
    return run_id


def _check_params(params: Mapping[str, Any]) -> dict:
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise BatchRequestError("invalid_argument", unknown[0], f"unknown argument (expected {', '.join(PARAM_KEYS)})")
    if "exclude_seen" in params and not isinstance(params["exclude_seen"], bool):
        raise BatchRequestError("invalid_argument", "exclude_seen", f"must be true or false, got {params['exclude_seen']!r}")
    return {k: params[k] for k in PARAM_KEYS if params.get(k) is not None}


def _check_segment(segment: Any) -> dict:
    if not isinstance(segment, Mapping) or not segment:
        raise BatchRequestError("invalid_argument", "segment", f"must be an object with some of {', '.join(SEGMENT_KEYS)}")
    unknown = sorted(set(segment) - set(SEGMENT_KEYS))
    if unknown:
        raise BatchRequestError("invalid_argument", f"segment.{unknown[0]}", f"unknown key (expected {', '.join(SEGMENT_KEYS)})")
    out = {key: segment.get(key) for key in SEGMENT_KEYS}
    for key in ("min_age", "max_age"):
        value = out[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120):
            raise BatchRequestError("invalid_argument", f"segment.{key}", f"must be an integer 0-120, got {value!r}")
    if out["min_age"] is not None and out["max_age"] is not None and out["min_age"] > out["max_age"]:
        raise BatchRequestError("invalid_argument", "segment.min_age", "is greater than segment.max_age")
    for key in ("gender", "occupation"):
        if out[key] is not None and not isinstance(out[key], str):
            raise BatchRequestError("invalid_argument", f"segment.{key}", f"must be a string, got {out[key]!r}")
    return out


def _check_user_ids(user_ids: Any) -> list[str]:
    if not isinstance(user_ids, list) or not user_ids or not all(isinstance(u, (str, int)) and not isinstance(u, bool)
                                                                 for u in user_ids):
        raise BatchRequestError("invalid_argument", "user_ids", "must be a non-empty list of user ids")
    return list(dict.fromkeys(str(u) for u in user_ids))


def _recommend(client: RecClient, user_id: str, params: Mapping[str, Any]) -> list:
    return client.recommend(user_id, params.get("k", 10), exclude_seen=params.get("exclude_seen", True),
                            genres=params.get("genres"), years=(params.get("min_year"), params.get("max_year")),
                            strategy=params.get("strategy"), popularity_weight=params.get("popularity_weight"),
                            content_weight=params.get("content_weight"))


def start_run(settings: Settings, run_id: Any, *, user_ids: Any = None, segment: Any = None,
              params: Mapping[str, Any] | None = None, chunk: int = CHUNK_USERS) -> tuple[Run, list[list[str]]]:
    """Create the run (or find it again: a rerun resumes), and the chunks of its users not written yet.

    The arguments are checked by the same code as ``rec.recommend`` for the run's first user before anything is
    stored, so a bad ``k`` or ``strategy`` fails the call, not 500 chunk tasks. Raises :class:`BatchRequestError`
    or the client's errors.
    """
    run_id = _check_run_id(run_id)
    clean = _check_params(params or {})
    if (user_ids is None) == (segment is None):
        raise BatchRequestError("invalid_argument", "user_ids", "give exactly one of user_ids and segment")
    selection = {"user_ids": _check_user_ids(user_ids)} if user_ids is not None else {"segment": _check_segment(segment)}
    stored = {"params": clean, **selection}
    with db.transaction(settings) as conn:
        existing = conn.execute(_RUN, (run_id,)).fetchone()
        if existing is not None:
            if existing[2] != json.loads(json.dumps(stored)):
                raise BatchRequestError("invalid_argument", "run_id",
                                        "a run with this id exists with other arguments (a rerun resumes it with "
                                        "the same ones)")
        else:
            if "user_ids" in selection:
                wanted = selection["user_ids"]
                known = {r[0] for r in conn.execute(_KNOWN_USERS, (wanted,))}
                missing = [u for u in wanted if u not in known]
                if missing:
                    raise BatchRequestError("unknown_user", "user_ids",
                                            f"{len(missing)} unknown user id(s), first: {missing[:5]}")
            conn.execute(_NEW_RUN, (run_id, json.dumps(stored)))
            if "user_ids" in selection:
                conn.execute(_MEMBERS_FROM_LIST, (run_id, selection["user_ids"]))
            else:
                conn.execute(_MEMBERS_FROM_SEGMENT, {"run": run_id, **selection["segment"]})
            conn.execute(_SET_TOTAL, {"run": run_id})
            first = conn.execute(_PENDING + " LIMIT 1", (run_id,)).fetchone()
            if first is not None:
                with RecClient(settings) as client:
                    _recommend(client, first[0], clean)  # a bad argument raises here; the transaction rolls back
        pending = [r[0] for r in conn.execute(_PENDING, (run_id,))]
        run = get_run(settings, run_id, conn)
    log.info("batch run %s: %d users, %d done, %d to write", run_id, run.total, run.done, len(pending))
    return run, [pending[i:i + chunk] for i in range(0, len(pending), chunk)]


def write_chunk(settings: Settings, run_id: str, user_ids: list[str]) -> int:
    """Write the rows of those ``user_ids`` of the run that are not written yet; returns how many users."""
    with db.transaction(settings) as conn:
        row = conn.execute(_RUN, (run_id,)).fetchone()
        if row is None:
            raise LookupError(f"batch run {run_id!r} does not exist")
        params = row[2]["params"]
        todo = [r[0] for r in conn.execute(_LOCK_PENDING, (run_id, list(user_ids)))]
        rows: list[tuple] = []
        with RecClient(settings) as client:
            for user_id in todo:
                try:
                    recs = _recommend(client, user_id, params)
                except UnknownUserError:  # deleted since the run started: done, with no rows
                    log.warning("batch run %s: user %s no longer exists", run_id, user_id)
                    continue
                rows += [(run_id, user_id, r.rank, r.item_id, float(r.score), r.source) for r in recs]
        with conn.cursor() as cur:
            cur.executemany(_INSERT_ROW, rows)
        conn.execute(_MARK_DONE, (run_id, todo))
        conn.execute(_ADVANCE, {"run": run_id, "n": len(todo)})
    log.info("batch run %s: wrote %d users (%d rows); %d of the chunk were already written", run_id, len(todo),
             len(rows), len(user_ids) - len(todo))
    return len(todo)
