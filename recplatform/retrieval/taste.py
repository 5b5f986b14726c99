"""Taste vectors kept up to date: fold users in again from their history into the active collaborative space."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Sequence

import numpy as np
from pgvector import Vector

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.retrieval import sql
from recplatform.retrieval.als import CollaborativeParams, augment_users, fold_in
from recplatform.retrieval.storage import history_hash, load_interactions

log = logging.getLogger(__name__)


def refresh_user_taste(user_ids: Sequence[str], settings: Settings | None = None) -> int:
    """Fold the given users in again (their taste vector in the active collaborative space) from their history.

    Uses the stored item factors, Gram matrix and hyper-parameters of the space (module docstring, fold-in).
    Users without interactions (or whose items have no vectors) lose their taste vector. Returns how many
    taste vectors were written; 0 when no collaborative space is active yet.
    """
    settings = settings or get_settings()
    user_ids = sorted({str(u) for u in user_ids})
    space = spaces.active_space(settings, spaces.COLLABORATIVE)
    if space is None or not user_ids:
        return 0
    p = dict(space.params or {})
    params = CollaborativeParams(**{k: p[k] for k in asdict(CollaborativeParams()) if k in p})
    scale, gram = float(p["scale"]), np.asarray(p["gram"], dtype=float)
    base = gram + params.reg * np.eye(params.factors)
    data = load_interactions(settings, params, user_ids)

    written = 0
    with db.transaction(settings) as conn:
        vecs = {r[0]: np.asarray(r[1].to_numpy(), float) for r in conn.execute(
            sql.ITEM_VECTORS_FOR, (space.space_id, data.item_ids)).fetchall()}
        rows = []
        for u, user_id in enumerate(data.user_ids):
            idx, s = data.user_rows(u)
            keep = [n for n, i in enumerate(idx) if data.item_ids[i] in vecs]
            if not keep:
                continue
            y = np.stack([vecs[data.item_ids[idx[n]]][:-1] * scale for n in keep])
            x = fold_in(y, s[keep], base, params.alpha)
            rows.append((space.space_id, user_id, Vector(augment_users(x[None, :])[0]),
                         history_hash(len(idx), float(np.sum(s)))))
        served = {r[1] for r in rows}
        conn.execute(sql.DELETE_TASTE, (space.space_id, [u for u in user_ids if u not in served]))
        with conn.cursor() as cur:
            cur.executemany(sql.UPSERT_TASTE, rows)
        written = len(rows)
    log.info("refreshed taste of %d users in space %s", written, space.name)
    return written
