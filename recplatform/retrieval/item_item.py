"""Item-to-item weights (EASE, Steck 2019) trained with a collaborative space, for warm users' lists.

Why: a factorisation with few factors smooths away which items go together; EASE's item-item weights keep it.
On ML-100K's warm protocol, ranking by the taste dot product plus the summed weights from the user's items scored
above either alone (docs/results.md). Formulas, with X the binary user × item matrix of the ``max_items``
most-interacted items::

    P = (XᵀX + lambda I)^-1        B_ij = -P_ij / P_jj  (i != j),  B_jj = 0

and a user's item-to-item score for item i is sum over their items j of B_ji. Each item i keeps the ``neighbors``
sources j with the largest |B_ji| (signs kept: negative weights are part of the model) in rec.item_neighbors, so
serving re-scores the taste vector's candidates with one row each (docs/retrieval.md, "Item-to-item weights").
"""

from __future__ import annotations

import logging
import time

import numpy as np

from recplatform.retrieval import sql
from recplatform.retrieval.als import CollaborativeParams, Interactions

log = logging.getLogger(__name__)

def ease_weights(matrix, lam: float) -> np.ndarray:
    """The dense EASE weight matrix B of a (binary) user × item scipy matrix, zero diagonal."""
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    precision = np.linalg.inv(gram)
    weights = precision / (-np.diag(precision))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def neighbors(data: Interactions, params: CollaborativeParams) -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    """For each of the ``item_item_max_items`` most-interacted items i: (its id, the ``item_item_neighbors`` items
    j with the largest |B_ji| towards it, those weights). Kept by target so serving scores a candidate from one row.
    Empty when ``item_item_neighbors`` is 0 or fewer than two items have interactions."""
    if params.item_item_neighbors <= 0 or len(data.item_ids) < 2:
        return [], [], []
    import scipy.sparse as sp  # deferred: scipy (keeps `recplatform --help` fast)

    counts = np.bincount(data.indices, minlength=len(data.item_ids))
    keep = np.sort(np.argsort(-counts, kind="stable")[:params.item_item_max_items])
    binary = sp.csr_matrix((np.ones(len(data.indices)), data.indices, data.indptr),
                           shape=(len(data.user_ids), len(data.item_ids)))[:, keep]
    towards = ease_weights(binary.tocsr(), params.item_item_lambda).T  # row i: B_ji for every source j
    k = min(params.item_item_neighbors, len(keep) - 1)
    top = np.argpartition(-np.abs(towards), k - 1, axis=1)[:, :k]
    ids = [data.item_ids[m] for m in keep]
    sources: list[list[str]] = []
    values: list[np.ndarray] = []
    for row, cols in enumerate(top):
        w = towards[row, cols]
        order = np.argsort(-np.abs(w), kind="stable")
        cols, w = cols[order][w[order] != 0], w[order][w[order] != 0]
        sources.append([ids[j] for j in cols])
        values.append(w)
    return ids, sources, values


def store(conn, space_id: int, data: Interactions, params: CollaborativeParams) -> int:
    """Train the item-to-item weights and write them into ``rec.item_neighbors`` for ``space_id`` (the caller's
    transaction). Returns the number of items with weights (items no kept weight points to get no row)."""
    started = time.perf_counter()
    ids, nb_ids, nb_w = neighbors(data, params)
    with conn.cursor().copy(sql.COPY_ITEM_NEIGHBORS) as copy:
        for item, nbs, w in zip(ids, nb_ids, nb_w):
            if nbs:
                copy.write_row((space_id, item, nbs, [float(x) for x in w]))
    log.info("item-to-item weights: %d items, up to %d neighbours each, lambda %g, %.1fs", len(ids),
             params.item_item_neighbors, params.item_item_lambda, time.perf_counter() - started)
    return sum(1 for nbs in nb_ids if nbs)
