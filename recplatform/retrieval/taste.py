"""Taste vectors kept up to date: fold users in again from their history into the active collaborative space.

Every taste vector carries a *version*: the newest interaction id of the history it was computed from. A write
only replaces a vector of the same or an older version, so a fold-in that read older data and commits late
never overwrites a newer one; :func:`stale_users` finds tastes whose user has newer interactions (a refresh
message lost while the broker was down) for ``reconcile`` to enqueue again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.embedding.spaces import Space
from recplatform.retrieval import sql
from recplatform.retrieval.als import CollaborativeParams, augment_users, fold_in, usable
from recplatform.retrieval.storage import history_hash, load_interactions

log = logging.getLogger(__name__)


@dataclass
class FoldedIn:
    """Taste vectors computed for some users (augmented, as stored), and the users left without one."""

    user_ids: list[str]
    vectors: np.ndarray
    hashes: list[str]
    versions: list[int]
    dropped: dict[str, int]  # user id -> newest interaction id seen (0: none), for users with no usable taste


def space_params(space: Space) -> tuple[CollaborativeParams, float, np.ndarray]:
    """The hyper-parameters, item scale M and ``YᵀY + λI`` stored with a collaborative space."""
    p = dict(space.params or {})
    params = CollaborativeParams(**{k: p[k] for k in asdict(CollaborativeParams()) if k in p})
    base = np.asarray(p["gram"], dtype=float) + params.reg * np.eye(params.factors)
    return params, float(p["scale"]), base


def fold_in_users(conn, space: Space, user_ids: Sequence[str]) -> FoldedIn:
    """Taste vectors of ``user_ids`` in ``space`` from their history as read on ``conn`` (the module docstring
    of :mod:`.als`: the user step of training, with the space's stored item factors and Gram matrix)."""
    params, scale, base = space_params(space)
    data = load_interactions(conn, params, user_ids)
    vecs = {r[0]: np.asarray(r[1].to_numpy(), float) for r in conn.execute(
        sql.ITEM_VECTORS_FOR, (space.space_id, data.item_ids)).fetchall()}
    out = FoldedIn([], np.zeros((0, params.factors + 1), np.float32), [], [], {})
    rows = []
    for u, user_id in enumerate(data.user_ids):
        idx, s = data.user_rows(u)
        keep = [n for n, i in enumerate(idx) if data.item_ids[i] in vecs]
        x = np.zeros(params.factors)
        if keep:
            y = np.stack([vecs[data.item_ids[idx[n]]][:-1] * scale for n in keep])
            x = fold_in(y, s[keep], base, params.alpha)
        if not usable(x[None, :])[0]:
            out.dropped[user_id] = int(data.versions[u])
            continue
        rows.append(x)
        out.user_ids.append(user_id)
        out.hashes.append(history_hash(len(idx), float(np.sum(s))))
        out.versions.append(int(data.versions[u]))
    if rows:
        out.vectors = augment_users(np.stack(rows))
    served = set(out.user_ids) | set(out.dropped)
    missing = [u for u in user_ids if u not in served]  # no interaction with a positive strength
    if missing:
        out.dropped.update({u: int(v) for u, v in conn.execute(sql.NEWEST_INTERACTION_OF, (missing,)).fetchall()})
        out.dropped.update({u: 0 for u in missing if u not in out.dropped})
    return out


def refresh_user_taste(user_ids: Sequence[str], settings: Settings | None = None) -> int:
    """Fold the given users in again (their taste vector in the active collaborative space) from their history.

    Reads the history inside the writing transaction and writes version-guarded (module docstring). Users
    without a usable history (no interaction with a positive strength, or whose items have no vectors) lose
    their taste vector, unless a newer one was written meanwhile; a zero or NaN vector is never written.
    Returns how many taste vectors were written; 0 when no collaborative space is active yet.
    """
    settings = settings or get_settings()
    user_ids = sorted({str(u) for u in user_ids})
    space = spaces.active_space(settings, spaces.COLLABORATIVE)
    if space is None or not user_ids:
        return 0
    with db.transaction(settings) as conn:
        folded = fold_in_users(conn, space, user_ids)
        written = write_tastes(conn, space, folded)
    log.info("refreshed taste of %d users in space %s (%d computed, %d without a usable history)", written,
             space.name, len(folded.user_ids), len(folded.dropped))
    return written


def write_tastes(conn, space: Space, folded: FoldedIn) -> int:
    """Write computed tastes and remove those of users without a usable history, version-guarded: a vector
    replaces only one of the same or an older version, and a removal only one no newer than the history the
    fold-in saw. Returns how many vectors were written."""
    if folded.dropped:
        conn.execute(sql.DELETE_TASTE, {"space_id": space.space_id, "ids": list(folded.dropped),
                                        "versions": list(folded.dropped.values())})
    if not folded.user_ids:
        return 0
    return conn.execute(sql.UPSERT_TASTE, {
        "space_id": space.space_id, "ids": folded.user_ids, "vecs": list(folded.vectors),
        "hashes": folded.hashes, "versions": folded.versions}).rowcount


def stale_users(settings: Settings | None = None, limit: int = 100_000) -> list[str]:
    """Users whose taste in the active collaborative space is older than their newest interaction, or who have
    interactions newer than the space's training and no taste (their refresh was lost). At most ``limit``."""
    settings = settings or get_settings()
    space = spaces.active_space(settings, spaces.COLLABORATIVE)
    if space is None:
        return []
    watermark = int((space.params or {}).get("interaction_watermark", 0))
    with db.connect(settings, vector=False) as conn:
        return [r[0] for r in conn.execute(sql.STALE_TASTES, {"space_id": space.space_id, "watermark": watermark,
                                                              "limit": limit}).fetchall()]
