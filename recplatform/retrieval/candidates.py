"""Cold and onboarding users' neighbour votes, precomputed so that serving them does not vote.

``rec.refresh_cold_candidates`` stores, per user with fewer items than the onboarding switch, the best-voted
items of their demographic neighbours (``rec.cold_candidates``); ``rec.recommend`` ranks a current row instead of
voting live (docs/retrieval.md, "Precomputed votes"). The worker refreshes users when it embeds them, and
reconcile the rows past half of ``candidates_max_age``.
"""

from __future__ import annotations

import logging
from typing import Iterable

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.retrieval import sql

log = logging.getLogger(__name__)


def refresh(settings: Settings | None, user_ids: Iterable[str]) -> int:
    """Recompute the rows of these users in one transaction (warm users and users without demographics lose
    theirs); returns the rows written."""
    ids = sorted({str(u) for u in user_ids})
    if not ids:
        return 0
    with db.transaction(settings or get_settings()) as conn:
        written = conn.execute(sql.REFRESH_COLD_CANDIDATES, (ids,)).fetchone()[0]
    log.info("cold candidates: %d of %d users refreshed", written, len(ids))
    return written


def aging_users(settings: Settings | None = None, limit: int | None = None) -> list[str]:
    """Users whose row is older than half of the cold row's ``candidates_max_age``, oldest first; at most
    ``limit`` (default: the ``cold_candidates_per_reconcile`` setting)."""
    settings = settings or get_settings()
    limit = settings.cold_candidates_per_reconcile if limit is None else limit
    with db.connect(settings, vector=False) as conn:
        return [r[0] for r in conn.execute(sql.AGING_COLD_CANDIDATES, (limit,)).fetchall()]


def status_line(settings: Settings | None = None) -> str:
    """One line for ``recplatform status``: how many users have precomputed votes, how many are aging (sent for
    refresh) and how many are past their age (voted for live until refreshed)."""
    with db.connect(settings or get_settings(), autocommit=True, vector=False) as conn:
        row = conn.execute(sql.COLD_CANDIDATES_STATUS).fetchone()
    if row is None or row[3] is None:
        return "precomputed votes off"
    total, aging, expired, max_age = row
    return f"precomputed votes ~{total} users, {aging} aging, {expired} past {max_age}"
