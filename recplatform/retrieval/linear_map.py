"""Linear maps between embedding spaces: ridge regression, choosing its lambda, and storing a map for SQL.

A stored map (``rec.coldstart_maps`` / ``rec.coldstart_map_rows``, one row per output) is what ``rec.apply_map``
applies in SQL: ``out[j] = <W_j, v> + b_j``. Used for content → item factors (new items, :mod:`.training`) and
demographic prompt → taste (cold users, :mod:`.coldstart`).
"""

from __future__ import annotations

import json

import numpy as np
from pgvector import Vector

from recplatform.retrieval import sql

LAMBDAS = (0.1, 1.0, 10.0, 100.0)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised bias: W = (XcᵀXc + λI)^-1 XcᵀYc, b = ȳ - x̄W."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    return w, y_mean - x_mean @ w


def mean_cosine(pred: np.ndarray, true: np.ndarray) -> float:
    num = np.sum(pred * true, axis=1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def choose_lambda(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The grid lambda with the best mean holdout cosine (20 % of rows held out)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = max(1, len(x) // 5)
    test, train = order[:cut], order[cut:]
    best = (LAMBDAS[0], -np.inf)
    for lam in LAMBDAS:
        w, b = ridge(x[train], y[train], lam)
        score = mean_cosine(x[test] @ w + b, y[test])
        if score > best[1]:
            best = (lam, score)
    return best


def store_map(conn, kind: str, source_space: int, target_space: int, w: np.ndarray, b: np.ndarray,
              params: dict) -> int:
    """Store a linear map (one row per output: weights W[:, j], bias b_j) and make it the active one."""
    conn.execute(sql.DEACTIVATE_MAPS, (kind, source_space, target_space))
    map_id = conn.execute(sql.INSERT_MAP, (kind, source_space, target_space, w.shape[0], w.shape[1],
                                           json.dumps(params))).fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany(sql.INSERT_MAP_ROW,
                        [(map_id, j, Vector(w[:, j].astype(np.float32)), float(b[j])) for j in range(w.shape[1])])
    return map_id
