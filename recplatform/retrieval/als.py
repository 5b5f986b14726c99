"""Implicit-feedback matrix factorisation (ALS) in pure numpy: strengths, the solver, fold-in, MIPS augmentation.

Why: on MovieLens the LLM content space carries little taste; interactions do. The maths lives here, with no
database: :mod:`.training` stores the result as a space (kind ``collaborative``) and :mod:`.taste` folds users in
again when their interactions change.

Formulas (Hu, Koren & Volinsky 2008, "Collaborative filtering for implicit feedback datasets"):

* Interaction strength of user u on item i, summed over their events::

      r_ui = sum_events  weight * (rating / rating_max  if rating is known else 1) * 2^(-Δt / half_life)

  where Δt is the time between the event and the user's latest event (recency *within* the user's history,
  so old datasets are not all decayed to zero).
* Confidence ``c_ui = 1 + alpha * r_ui`` and preference ``p_ui = 1`` for observed pairs (0 otherwise).
* Objective, alternating exact least squares for X (users, f factors) and Y (items)::

      min_{X,Y}  sum_{u,i} c_ui (p_ui - x_u·y_i)^2  +  lambda (sum_u |x_u|^2 + sum_i |y_i|^2)

* User step / **fold-in** (the same formula serves training and ``refresh_user_taste``; only user u's items
  I_u enter beyond the shared Gram matrix ``YᵀY``)::

      x_u = (YᵀY + Y_Iᵀ (C_u - I) Y_I + lambda I)^-1  Y_Iᵀ c_u

* Scores are dot products ``x_u·y_i``. The pgvector indexes are cosine, so vectors are stored augmented
  (maximum-inner-product → cosine reduction, Bachrach et al. 2014): with ``M = max_i |y_i|``::

      item  ŷ_i = [y_i / M,  sqrt(1 - |y_i|^2 / M^2)]        user  x̂_u = [x_u,  0]

  so ``cos(x̂_u, ŷ_i) = x_u·y_i / (|x_u| M)``: the cosine ranking equals the dot-product ranking. User vectors
  keep their norm (cosine ignores it) so SQL can recover the dot product, ``x_u·y_i = cos · |x̂_u| · M``: the
  onboarding path weighs a user's evidence by it (a fold-in from few items is short). The space has dimension
  f + 1; ``M``, ``YᵀY`` and the hyper-parameters are kept in the space's params.
* Items without interactions get ``y_i = W_cᵀ e_i + b_c`` from their LLM content embedding ``e_i`` via a ridge
  map fitted on the items that have interactions (stored as a ``content_to_item`` map in rec.coldstart_maps),
  clipped to norm M, so new items stay reachable (they rank by what similar-content items earned).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from rich.progress import track


@dataclass(frozen=True)
class CollaborativeParams:
    """Hyper-parameters of the factorisation (stored with the space so fold-in uses the same ones)."""

    # Defaults picked on MovieLens 100K (last 10 ratings per user held out, NDCG@10 of the dot-product ranking
    # with seen items masked): 0.142 here against 0.082 for popularity; alpha 10 / lambda 0.1 gave 0.132, and
    # lambda 20 / alpha 2 (0.146) made items mapped from content (new items) rank barely above random.
    factors: int = 32
    reg: float = 5.0  # lambda
    alpha: float = 3.0  # confidence slope
    iterations: int = 12
    half_life_days: float = 365.0
    rating_max: float = 5.0
    map_reg: float = 10.0  # ridge lambda of the content -> item-factor map
    seed: int = 0


@dataclass
class Interactions:
    """Aggregated strengths r_ui as a sparse user × item matrix (CSR) with the id ↔ index mappings."""

    user_ids: list[str]
    item_ids: list[str]
    indptr: np.ndarray
    indices: np.ndarray
    strength: np.ndarray

    def user_rows(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[u], self.indptr[u + 1]
        return self.indices[lo:hi], self.strength[lo:hi]


@dataclass
class Factors:
    """Trained factors: users (n_users × f) and items (n_items × f)."""

    users: np.ndarray
    items: np.ndarray
    params: CollaborativeParams
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)


# ----- strengths --------------------------------------------------------------------------------------
def strengths(user_idx: np.ndarray, ratings: np.ndarray, weights: np.ndarray, occurred: np.ndarray,
              params: CollaborativeParams) -> np.ndarray:
    """Per-event strength: weight × rating/rating_max × 2^(-Δt/half_life), Δt from the user's latest event.

    ``occurred`` is seconds since the epoch; ``ratings`` uses NaN for "no rating".
    """
    latest = np.full(user_idx.max() + 1 if len(user_idx) else 0, -np.inf)
    np.maximum.at(latest, user_idx, occurred)
    age_days = (latest[user_idx] - occurred) / 86400.0
    rating_factor = np.where(np.isnan(ratings), 1.0, ratings / params.rating_max)
    return weights * rating_factor * np.power(2.0, -age_days / params.half_life_days)


def to_csr(u: np.ndarray, i: np.ndarray, s: np.ndarray, user_ids: list[str], item_ids: list[str]) -> Interactions:
    """Events (user index, item index, strength) as the CSR matrix; duplicate pairs are summed."""
    from scipy.sparse import coo_matrix  # deferred: scipy (keeps `recplatform --help` fast)

    m = coo_matrix((s, (u, i)), shape=(len(user_ids), len(item_ids))).tocsr()  # duplicates are summed
    m.sum_duplicates()
    m.eliminate_zeros()
    return Interactions(user_ids, item_ids, m.indptr.astype(np.int64), m.indices.astype(np.int64),
                        m.data.astype(float))


def _transpose(data: Interactions) -> Interactions:
    from scipy.sparse import csr_matrix  # deferred: scipy

    m = csr_matrix((data.strength, data.indices, data.indptr), shape=(len(data.user_ids), len(data.item_ids)))
    t = m.T.tocsr()
    return Interactions(data.item_ids, data.user_ids, t.indptr.astype(np.int64), t.indices.astype(np.int64),
                        t.data.astype(float))


# ----- ALS ------------------------------------------------------------------------------------------
def solve_rows(other: np.ndarray, gram: np.ndarray, data: Interactions, reg: float, alpha: float) -> np.ndarray:
    """One ALS half-step: for every row r, x_r = (G + O_Iᵀ(C_r - I)O_I + λI)^-1 O_Iᵀ c_r (the fold-in formula)."""
    f = other.shape[1]
    out = np.zeros((len(data.indptr) - 1, f))
    base = gram + reg * np.eye(f)
    for r in range(len(data.indptr) - 1):
        idx, s = data.user_rows(r)
        if len(idx) == 0:
            continue
        out[r] = fold_in(other[idx], s, base, alpha)
    return out


def fold_in(item_factors: np.ndarray, strength: np.ndarray, base: np.ndarray, alpha: float) -> np.ndarray:
    """x = (base + Y_Iᵀ diag(c - 1) Y_I)^-1 Y_Iᵀ c with c = 1 + alpha·strength and base = YᵀY + λI."""
    conf = 1.0 + alpha * strength
    a = base + (item_factors.T * (conf - 1.0)) @ item_factors
    b = item_factors.T @ conf
    return np.linalg.solve(a, b)


def als(data: Interactions, params: CollaborativeParams, progress: bool = False) -> Factors:
    """Train X, Y by alternating least squares; the last step is the user step (= fold-in of every user)."""
    started = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    n_u, n_i, f = len(data.user_ids), len(data.item_ids), params.factors
    users = rng.normal(0, 0.01, (n_u, f))
    items = rng.normal(0, 0.01, (n_i, f))
    by_item = _transpose(data)
    history = []
    iterator: Iterable[int] = range(params.iterations)
    if progress:
        iterator = track(iterator, description="ALS iterations")
    for _ in iterator:
        items = solve_rows(users, users.T @ users, by_item, params.reg, params.alpha)
        users = solve_rows(items, items.T @ items, data, params.reg, params.alpha)
        history.append(_loss(data, users, items, params))
    return Factors(users, items, params, time.perf_counter() - started, history)


def _loss(data: Interactions, users: np.ndarray, items: np.ndarray, params: CollaborativeParams) -> float:
    """The objective, computed without densifying: sum over all pairs of p=0 terms via Gram matrices."""
    rows = np.repeat(np.arange(len(data.indptr) - 1), np.diff(data.indptr))
    pred = np.einsum("ij,ij->i", users[rows], items[data.indices])
    conf = 1.0 + params.alpha * data.strength
    all_zero = float(np.sum((users.T @ users) * (items.T @ items)))  # sum_{u,i} (x_u·y_i)^2
    observed = float(np.sum(conf * (1 - pred) ** 2) - np.sum(pred ** 2))
    reg = params.reg * float(np.sum(users ** 2) + np.sum(items ** 2))
    return all_zero + observed + reg


# ----- augmentation (MIPS -> cosine) ----------------------------------------------------------------
def augment_items(items: np.ndarray, scale: float) -> np.ndarray:
    """ŷ = [y/M, sqrt(1 - |y|²/M²)] (rows clipped to norm M first)."""
    norms = np.linalg.norm(items, axis=1, keepdims=True)
    clipped = items * np.minimum(1.0, scale / np.maximum(norms, 1e-12))
    unit = clipped / scale
    extra = np.sqrt(np.clip(1.0 - np.sum(unit ** 2, axis=1, keepdims=True), 0.0, None))
    return np.hstack([unit, extra]).astype(np.float32)


def augment_users(users: np.ndarray) -> np.ndarray:
    """x̂ = [x, 0] (the norm is kept: cosine ignores it, and the onboarding path reads it as evidence)."""
    return np.hstack([users, np.zeros((len(users), 1))]).astype(np.float32)
