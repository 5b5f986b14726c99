"""Baseline recommenders computed in-process on a split's training data: random, popularity, segment
popularity (age band x gender x occupation with back-off) and EASE collaborative filtering.

They share the ranking rule of the platform: full ranking over the catalogue, items in the user's exclusion
set (their training history) removed, top k returned.

EASE (Steck, 2019): with binary user-item matrix X, ``B = I - P / diag(P)`` for ``P = (X^T X + lambda I)^-1``
(diagonal of B forced to zero) and scores ``X B``. ``lambda`` is chosen on a validation split carved from the
training interactions only (each training user's last 20% by time), never on test.

Tuning decomposes the Gram matrix once, ``G = X^T X = V diag(w) V^T``, and reuses it for every lambda:
``P = V diag(1 / (w + lambda)) V^T``, ``diag(P) = (V * V) (1 / (w + lambda))``, and the validation users' scores
``H B = H - (H V) diag(1 / (w + lambda)) V^T diag(P)^-1`` (``B = I - P diag(P)^-1`` already has a zero diagonal),
so each lambda costs one product of the validation users' ``H V`` with ``V^T`` instead of an n x n inverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recplatform.evaluation import metrics
from recplatform.evaluation.protocols import relevant_mask, temporal_holdout
from recplatform.retrieval.item_item import ease_weights  # the baseline and the platform share one EASE

AGE_BANDS: tuple[tuple[int, str], ...] = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"),
                                          (56, "50-55"), (10_000, "56+"))
EASE_LAMBDAS: tuple[float, ...] = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0)
SEGMENT_LEVELS: tuple[tuple[str, ...], ...] = (("age_band", "gender", "occupation"), ("age_band", "gender"),
                                               ("gender",), ())


def age_band(age) -> str | None:
    """MovieLens-1M style age band of an age (None when unknown)."""
    if age is None or (isinstance(age, float) and np.isnan(age)) or pd.isna(age):
        return None
    for upper, label in AGE_BANDS:
        if age < upper:
            return label
    return AGE_BANDS[-1][1]


@dataclass
class TrainView:
    """A split's training interactions indexed against the whole catalogue."""

    item_ids: list[str]
    item_index: dict[str, int]
    user_ids: list[str]
    user_index: dict[str, int]
    matrix: sp.csr_matrix  # binary, training users x catalogue items
    counts: np.ndarray  # training interactions per catalogue item
    users: pd.DataFrame = field(repr=False)  # demographics indexed by user_id
    # equal scores are ordered by this seeded random key, not by catalogue order: items a baseline cannot score
    # (new items: all 0) would otherwise rank by item id, which is not neutral (low MovieLens ids are the
    # older, better-known films)
    tiebreak: np.ndarray = field(default=None, repr=False)

    @classmethod
    def build(cls, train: pd.DataFrame, item_ids: Sequence[str], users: pd.DataFrame,
              seed: int = 0) -> "TrainView":
        item_ids = list(item_ids)
        item_index = {item: i for i, item in enumerate(item_ids)}
        unknown = set(train["item_id"]) - item_index.keys()
        if unknown:
            raise ValueError(f"training interactions name items outside the catalogue, e.g. {sorted(unknown)[:3]}")
        user_ids = sorted(train["user_id"].unique())
        user_index = {u: i for i, u in enumerate(user_ids)}
        pairs = train[["user_id", "item_id"]].drop_duplicates()
        rows = pairs["user_id"].map(user_index).to_numpy()
        cols = pairs["item_id"].map(item_index).to_numpy()
        matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                               shape=(len(user_ids), len(item_ids)))
        counts = np.bincount(train["item_id"].map(item_index).to_numpy(), minlength=len(item_ids)).astype(np.float64)
        tiebreak = np.random.default_rng(seed).permutation(len(item_ids))
        return cls(item_ids, item_index, user_ids, user_index, matrix, counts, users.set_index("user_id", drop=False),
                   tiebreak)


def top_k(scores: np.ndarray, exclude: set[str], view: TrainView, k: int) -> list[str]:
    """The k best-scored catalogue items not in ``exclude`` (ties broken by the view's seeded random key)."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude:
        idx = [view.item_index[i] for i in exclude if i in view.item_index]
        scores[idx] = -np.inf
    n_allowed = int(np.isfinite(scores).sum())
    k = min(k, n_allowed)
    if k <= 0:
        return []
    if k < len(scores):  # every item scored at least the k-th score (all of a tie at the cut), then ordered
        kth = -np.partition(-scores, k - 1)[k - 1]
        part = np.flatnonzero(scores >= kth)
    else:
        part = np.arange(len(scores))
    tie = part if view.tiebreak is None else view.tiebreak[part]
    order = part[np.lexsort((tie, -scores[part]))]
    return [view.item_ids[i] for i in order[:k]]


def random_recs(view: TrainView, users: Sequence[str], exclude: Mapping[str, set[str]], k: int,
                seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {u: top_k(rng.random(len(view.item_ids)), exclude.get(u, set()), view, k) for u in users}


def popularity_recs(view: TrainView, users: Sequence[str], exclude: Mapping[str, set[str]],
                    k: int) -> dict[str, list[str]]:
    return {u: top_k(view.counts, exclude.get(u, set()), view, k) for u in users}


def _segment_keys(row) -> dict[str, object]:
    return {"age_band": age_band(row.get("age")), "gender": row.get("gender"), "occupation": row.get("occupation")}


def segment_scores(view: TrainView, min_users: int = 20) -> "SegmentModel":
    """Per-segment item counts over training users at every back-off level."""
    train_users = view.users.reindex(view.user_ids)
    keys = pd.DataFrame([_segment_keys(r) for r in train_users.to_dict("records")], index=view.user_ids)
    tables: list[dict[tuple, tuple[int, np.ndarray]]] = []
    for level in SEGMENT_LEVELS:
        table: dict[tuple, tuple[int, np.ndarray]] = {}
        if level:
            groups = keys.groupby(list(level), dropna=True).indices
            for key, rows in groups.items():
                key = key if isinstance(key, tuple) else (key,)
                counts = np.asarray(view.matrix[rows].sum(axis=0)).ravel().astype(np.float64)
                table[key] = (len(rows), counts)
        else:
            table[()] = (len(view.user_ids), view.counts)
        tables.append(table)
    return SegmentModel(tables, min_users, view.counts)


@dataclass
class SegmentModel:
    """Finest segment with at least ``min_users`` training users wins; global popularity breaks ties."""

    tables: list[dict[tuple, tuple[int, np.ndarray]]]
    min_users: int
    global_counts: np.ndarray

    def scores(self, user: Mapping) -> tuple[np.ndarray, int]:
        keys = _segment_keys(user)
        for depth, (level, table) in enumerate(zip(SEGMENT_LEVELS, self.tables)):
            key = tuple(keys[name] for name in level)
            if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in key):
                continue
            hit = table.get(key)
            if hit is not None and (hit[0] >= self.min_users or not level):
                n_users, counts = hit
                tie = self.global_counts / (self.global_counts.max() + 1.0)
                return counts + tie, depth
        return self.global_counts.copy(), len(SEGMENT_LEVELS) - 1


def segment_popularity_recs(view: TrainView, users: Sequence[str], exclude: Mapping[str, set[str]], k: int,
                            min_users: int = 20) -> dict[str, list[str]]:
    model = segment_scores(view, min_users)
    out = {}
    for u in users:
        record = view.users.loc[u].to_dict() if u in view.users.index else {}
        out[u] = top_k(model.scores(record)[0], exclude.get(u, set()), view, k)
    return out


def tune_segment_min_users(view: TrainView, train: pd.DataFrame, *, seed: int = 0, threshold: float = 4.0,
                           grid: Sequence[int] = (5, 10, 20, 40, 80)) -> int:
    """Pick the back-off size on a user-disjoint validation fold carved from training users (NDCG@10)."""
    users = np.array(view.user_ids)
    held = set(users[np.random.default_rng(seed + 7919).permutation(len(users))[: max(1, len(users) // 5)]])
    fit = train[~train["user_id"].isin(held)]
    val = train[train["user_id"].isin(held) & relevant_mask(train, threshold)]
    relevant = val.groupby("user_id")["item_id"].agg(set).to_dict()
    if not relevant or fit.empty:
        return 20
    sub = TrainView.build(fit, view.item_ids, view.users.reset_index(drop=True), seed)
    best, best_score = grid[0], -1.0
    for m in grid:
        recs = segment_popularity_recs(sub, list(relevant), {}, 10, min_users=m)
        score = float(np.mean([metrics.ndcg_at_k(recs[u], relevant[u], 10) for u in relevant]))
        if score > best_score + 1e-12:
            best, best_score = m, score
    return best


# ----- EASE --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GramEigen:
    """The Gram matrix ``X^T X`` of one training matrix as ``V diag(w) V^T``: EASE for any lambda from it."""

    values: np.ndarray  # w, ascending (numpy.linalg.eigh)
    vectors: np.ndarray  # V, orthonormal columns
    squared: np.ndarray  # V * V, for diag(P) at every lambda

    @classmethod
    def of(cls, matrix: sp.csr_matrix) -> "GramEigen":
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        values, vectors = np.linalg.eigh(gram)
        del gram
        return cls(np.maximum(values, 0.0), vectors, vectors ** 2)  # PSD: clip rounding noise below zero

    def _inverse_values(self, lam: float) -> np.ndarray:
        return 1.0 / (self.values + lam)

    def precision_diagonal(self, lam: float) -> np.ndarray:
        """``diag((G + lambda I)^-1)`` without forming the inverse."""
        return self.squared @ self._inverse_values(lam)

    def weights(self, lam: float) -> np.ndarray:
        """The EASE weight matrix B for ``lambda`` (what :func:`ease_weights` computes by inversion)."""
        precision = (self.vectors * self._inverse_values(lam)) @ self.vectors.T
        weights = precision / (-np.diag(precision))
        weights[np.diag_indices_from(weights)] = 0.0
        return weights

    def scores(self, histories: np.ndarray, projected: np.ndarray, lam: float) -> np.ndarray:
        """``H B`` for the users' binary histories ``H`` (rows), given ``projected = H V`` (computed once)."""
        hp = (projected * self._inverse_values(lam)) @ self.vectors.T
        return histories - hp / self.precision_diagonal(lam)


def ease_recs_from(weights: np.ndarray, view: TrainView, users: Sequence[str], exclude: Mapping[str, set[str]],
                   k: int) -> dict[str, list[str]]:
    out = {}
    for u in users:
        row = view.user_index.get(u)
        if row is None:
            out[u] = top_k(view.counts * 0.0, exclude.get(u, set()), view, k)
            continue
        history = view.matrix[row].toarray().ravel()
        out[u] = top_k(history @ weights, exclude.get(u, set()), view, k)
    return out


def tune_ease_lambda(train: pd.DataFrame, item_ids: Sequence[str], users: pd.DataFrame, *, threshold: float = 4.0,
                     fraction: float = 0.2, grid: Sequence[float] = EASE_LAMBDAS,
                     progress: Callable[[str], None] | None = None) -> tuple[float, dict[float, float]]:
    """Choose lambda by NDCG@10 on each training user's last ``fraction`` of training interactions.

    One eigendecomposition of the validation fit's Gram matrix serves every lambda of ``grid`` (see the module
    docstring); ``progress`` is told each step, the decomposition first (the long one on a large catalogue)."""
    note = progress or (lambda _text: None)
    fit, val = temporal_holdout(train, fraction)
    relevant = val[relevant_mask(val, threshold)].groupby("user_id")["item_id"].agg(set).to_dict()
    sub = TrainView.build(fit, item_ids, users)
    seen = fit[fit["user_id"].isin(relevant.keys())].groupby("user_id")["item_id"].agg(set).to_dict()
    n = len(sub.item_ids)
    note(f"EASE tuning: eigendecomposition of the {n:,}x{n:,} Gram matrix")
    eigen = GramEigen.of(sub.matrix)
    val_users = list(relevant)
    rows = [sub.user_index.get(u) for u in val_users]
    histories = np.zeros((len(val_users), n))
    known = [i for i, r in enumerate(rows) if r is not None]
    if known:
        histories[known] = sub.matrix[[rows[i] for i in known]].toarray()
    projected = histories @ eigen.vectors
    scores: dict[float, float] = {}
    for step, lam in enumerate(grid, 1):
        note(f"EASE tuning: lambda {lam:g} ({step}/{len(grid)})")
        # rounded: rounding noise (1e-17 where the inverse gives an exact 0) must not reorder ties
        user_scores = np.round(eigen.scores(histories, projected, lam), 10)
        recs = {u: top_k(user_scores[i] if rows[i] is not None else sub.counts * 0.0, seen.get(u, set()), sub, 10)
                for i, u in enumerate(val_users)}
        scores[lam] = float(np.mean([metrics.ndcg_at_k(recs[u], relevant[u], 10) for u in relevant]))
    best = max(scores, key=lambda lam: (scores[lam], -lam))
    return best, scores


def ease_recs(view: TrainView, train: pd.DataFrame, users: Sequence[str], exclude: Mapping[str, set[str]], k: int,
              *, threshold: float = 4.0, lam: float | None = None,
              progress: Callable[[str], None] | None = None) -> tuple[dict[str, list[str]], float]:
    """EASE recommendations, lambda tuned on a validation split of ``train`` unless given."""
    if lam is None:
        lam, _ = tune_ease_lambda(train, view.item_ids, view.users.reset_index(drop=True), threshold=threshold,
                                  progress=progress)
    if progress:
        progress(f"EASE: fitting lambda {lam:g} on the training users")
    return ease_recs_from(ease_weights(view.matrix, lam), view, users, exclude, k), lam


def ease_recs_from_items(weights: np.ndarray, view: TrainView, histories: Mapping[str, Sequence[str]],
                         exclude: Mapping[str, set[str]], k: int) -> dict[str, list[str]]:
    """EASE scores of users who are not in the training matrix, from the items they are known to have
    (onboarding: the first N items); a user with no known item gets nothing to rank by and returns []."""
    out = {}
    for u, items in histories.items():
        idx = [view.item_index[i] for i in items if i in view.item_index]
        if not idx:
            out[u] = []
            continue
        out[u] = top_k(weights[idx].sum(axis=0), exclude.get(u, set()), view, k)
    return out
