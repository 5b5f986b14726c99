"""Learned cold-start map: demographic-prompt embedding → collaborative taste vector, fitted on warm users.

Why: a user with no history has only the embedding of a prompt written from their demographics (content
space). Warm users have both that and a taste vector, so a linear map between the two can be learned and
applied to anyone — stored in the database (rec.coldstart_maps / rec.coldstart_map_rows) so that the SQL
function ``rec.recommend`` applies it with no Python (strategy ``learned_map``).

The map is ridge regression with an unpenalised bias, from demographic vectors d_u (content space,
dimension D) to the directions of the stored taste vectors, t_u = [x_u/|x_u|, 0] (collaborative space,
dimension f + 1; the stored vectors keep their norm, the map is fitted to their unit rows)::

    W, b = argmin  sum_u |W d_u + b - t_u|^2 + lambda |W|_F^2      W = (DcᵀDc + λI)^-1 DcᵀTc,  b = t̄ - d̄ W

lambda is chosen from a small grid by the mean cosine between predicted and true taste vectors on a
20 % holdout of warm users (then refitted on all). SQL applies it as ``out[j] = <W_j, d> + b_j``
(``rec.apply_map``), and the result queries the collaborative item index like any taste vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.embedding.spaces import Space
from recplatform.retrieval import sql
from recplatform.retrieval.linear_map import choose_lambda, ridge, store_map

log = logging.getLogger(__name__)

MIN_USERS = 10


@dataclass(frozen=True)
class MapFit:
    """What fitting produced: the stored map id, the chosen lambda and its holdout cosine."""

    map_id: int | None
    n_users: int
    lam: float | None
    holdout_cosine: float | None




def fit_demographic_map(settings: Settings | None = None, collaborative: Space | None = None) -> MapFit:
    """Fit and store (active) the demographic → taste map for the active content and collaborative spaces.

    Skips (map_id None, logged) when there is no active content space or fewer than MIN_USERS warm users
    with a demographic vector; the SQL then falls back to neighbour voting for ``learned_map``.
    """
    settings = settings or get_settings()
    collaborative = collaborative or spaces.active_space(settings, spaces.COLLABORATIVE)
    content = spaces.active_space(settings, spaces.CONTENT)
    if collaborative is None or content is None:
        log.info("no cold-start map fitted: needs an active content and collaborative space")
        return MapFit(None, 0, None, None)
    with db.connect(settings) as conn:
        rows = conn.execute(sql.DEMOGRAPHIC_AND_TASTE, (collaborative.space_id, content.space_id)).fetchall()
    if len(rows) < MIN_USERS:
        log.info("no cold-start map fitted: only %d warm users have a demographic embedding", len(rows))
        return MapFit(None, len(rows), None, None)
    x = np.stack([np.asarray(r[1].to_numpy(), float) for r in rows])
    y = np.stack([np.asarray(r[2].to_numpy(), float) for r in rows])
    # taste vectors are stored with their fold-in norm (evidence); the map predicts their direction
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    lam, score = choose_lambda(x, y)
    w, b = ridge(x, y, lam)
    with db.transaction(settings) as conn:
        map_id = store_map(conn, "demographic_to_taste", content.space_id, collaborative.space_id, w, b,
                           {"lambda": lam, "n_train": len(rows), "holdout_cosine": score})
    log.info("cold-start map %s: %d warm users, lambda %g, holdout cosine %.3f", map_id, len(rows), lam, score)
    return MapFit(map_id, len(rows), lam, score)
