"""Implicit-feedback matrix factorisation (ALS): sweeps by `implicit`, the exact batched user step, fold-in, MIPS.

Why: on MovieLens the LLM content space carries little taste; interactions do. The maths lives here, with no
database: :mod:`.training` stores the result as a space (kind ``collaborative``) and :mod:`.taste` folds users in
again when their interactions change.

Formulas (Hu, Koren & Volinsky 2008, "Collaborative filtering for implicit feedback datasets"):

* Interaction strength of user u on item i, summed over their events::

      r_ui = sum_events  weight * (rating / rating_max  if rating is known else 1) * 2^(-Δt / half_life)

  where Δt is the time between the event and the user's latest event (recency *within* the user's history,
  so old datasets are not all decayed to zero). Computed in SQL (:mod:`.storage`); only pairs with a positive,
  finite r_ui enter the model, and users left with none get no taste vector.
* Confidence ``c_ui = 1 + alpha * r_ui`` and preference ``p_ui = 1`` for observed pairs (0 otherwise).
* Objective, alternating least squares for X (users, f factors) and Y (items) (sweeps by `implicit`, conjugate
  gradient; the last user step exact)::

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

import numpy as np


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
    # item-to-item weights trained with the space (:mod:`.item_item`): EASE's lambda, the sources kept per item
    # (0 = none), and how many of the most-interacted items take part (the dense Gram matrix is items^2 floats)
    item_item_lambda: float = 300.0
    item_item_neighbors: int = 100
    item_item_max_items: int = 5000


@dataclass
class Interactions:
    """Aggregated strengths r_ui as a sparse user × item matrix (CSR) with the id ↔ index mappings."""

    user_ids: list[str]
    item_ids: list[str]
    indptr: np.ndarray
    indices: np.ndarray
    strength: np.ndarray
    versions: np.ndarray | None = None  # per user: the newest interaction id of their history (taste version)

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


# ----- sparse layout ---------------------------------------------------------------------------------
def strengths(user_idx: np.ndarray, ratings: np.ndarray, weights: np.ndarray, occurred: np.ndarray,
              params: CollaborativeParams) -> np.ndarray:
    """Per-event strength in numpy: weight × rating/rating_max × 2^(-Δt/half_life), Δt from the user's latest event.

    The same formula as the SQL aggregation in :mod:`.storage` (used where the events are already in memory, e.g.
    tuning's validation split). ``occurred`` is seconds since the epoch; ``ratings`` uses NaN for "no rating".
    """
    latest = np.full(user_idx.max() + 1 if len(user_idx) else 0, -np.inf)
    np.maximum.at(latest, user_idx, occurred)
    age_days = (latest[user_idx] - occurred) / 86400.0
    rating_factor = np.where(np.isnan(ratings), 1.0, ratings / params.rating_max)
    return weights * rating_factor * np.power(2.0, -age_days / params.half_life_days)


def to_csr(u: np.ndarray, i: np.ndarray, s: np.ndarray, user_ids: list[str], item_ids: list[str],
           versions: np.ndarray | None = None) -> Interactions:
    """(user index, item index, strength) triples as the CSR matrix; duplicate pairs are summed."""
    from scipy.sparse import coo_matrix  # deferred: scipy (keeps `recplatform --help` fast)

    m = coo_matrix((s, (u, i)), shape=(len(user_ids), len(item_ids))).tocsr()  # duplicates are summed
    m.sum_duplicates()
    m.eliminate_zeros()
    return Interactions(user_ids, item_ids, m.indptr.astype(np.int64), m.indices.astype(np.int64),
                        m.data.astype(float), versions)


def _transpose(data: Interactions) -> Interactions:
    from scipy.sparse import csr_matrix  # deferred: scipy

    m = csr_matrix((data.strength, data.indices, data.indptr), shape=(len(data.user_ids), len(data.item_ids)))
    t = m.T.tocsr()
    return Interactions(data.item_ids, data.user_ids, t.indptr.astype(np.int64), t.indices.astype(np.int64),
                        t.data.astype(float))


# ----- ALS ------------------------------------------------------------------------------------------
BATCH_ENTRIES = 1 << 19  # padded (row, interaction) entries gathered at once by solve_rows (~128 MB at f = 32)
BATCH_ROWS = 8192  # rows whose f × f systems are stacked into one batched solve


def solve_rows(other: np.ndarray, gram: np.ndarray, data: Interactions, reg: float, alpha: float) -> np.ndarray:
    """One ALS half-step: for every row r, x_r = (G + O_Iᵀ(C_r - I)O_I + λI)^-1 O_Iᵀ c_r (the fold-in formula).

    Vectorised, with the exact solution of :func:`fold_in` row by row:

    * ``O_Iᵀ c_r`` for all rows at once as one sparse × dense product;
    * rows sorted by length and cut into batches of similar length (padding ≤ 25 %, at most
      :data:`BATCH_ENTRIES` padded entries); a batch gathers its rows' factors scaled by ``sqrt(c - 1)`` into one
      zero-padded B × L × f array, and ``O_Iᵀ(C_r - I)O_I`` for the batch is one batched matrix product;
    * the B f × f systems are solved by one stacked ``np.linalg.solve``.

    Rows without interactions stay zero. Needs ``alpha · strength ≥ 0`` (only positive strengths are loaded).
    """
    from scipy.sparse import csr_matrix  # deferred: scipy (keeps `recplatform --help` fast)

    f = other.shape[1]
    n_rows = len(data.indptr) - 1
    conf = csr_matrix((1.0 + alpha * data.strength, data.indices, data.indptr), shape=(n_rows, other.shape[0]))
    rhs = np.asarray(conf @ other)
    out = np.zeros((n_rows, f))
    base = gram + reg * np.eye(f)
    root = np.sqrt(alpha * data.strength)
    lengths = np.diff(data.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_lengths = lengths[order]
    start = 0
    while start < len(order):
        shortest = int(sorted_lengths[start])
        # rows up to 1.25 × the shortest length, and B × L within the budget
        end = int(np.searchsorted(sorted_lengths, max(shortest + 1, int(shortest * 1.25)), side="right"))
        width = int(lengths[order[end - 1]])
        end = min(end, start + max(1, min(BATCH_ROWS, BATCH_ENTRIES // width)))
        rows = order[start:end]
        out[rows] = _solve_batch(other, base, data, root, rhs[rows], rows, int(lengths[rows[-1]]))
        start = end
    return out


def _solve_batch(other: np.ndarray, base: np.ndarray, data: Interactions, root: np.ndarray, rhs: np.ndarray,
                 rows: np.ndarray, width: int) -> np.ndarray:
    """x_r for a batch of rows, their interactions zero-padded to ``width`` (padding has weight 0)."""
    lens = data.indptr[rows + 1] - data.indptr[rows]
    offsets = np.arange(width)
    mask = offsets[None, :] < lens[:, None]
    pos = np.where(mask, data.indptr[rows][:, None] + offsets[None, :], 0)
    y = np.take(other, np.take(data.indices, pos), axis=0)  # B × L × f
    np.multiply(y, np.where(mask, np.take(root, pos), 0.0)[:, :, None], out=y)  # rows of sqrt(c - 1) · O_I
    a = base + np.matmul(np.swapaxes(y, 1, 2), y)
    try:
        x = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # singular only when λ = 0 and the factors are degenerate: least squares
        x = np.matmul(np.linalg.pinv(a), rhs[:, :, None])[:, :, 0]
    x[~np.isfinite(x).all(axis=1)] = 0.0  # never hand on NaN / inf (such rows are skipped when stored)
    return x


def fold_in(item_factors: np.ndarray, strength: np.ndarray, base: np.ndarray, alpha: float) -> np.ndarray:
    """x = (base + Y_Iᵀ diag(c - 1) Y_I)^-1 Y_Iᵀ c with c = 1 + alpha·strength and base = YᵀY + λI.

    Only positive, finite strengths enter (a non-positive confidence would make the system indefinite);
    returns a zero vector when none is left or the solution is not finite (callers skip zero vectors).
    """
    keep = np.isfinite(strength) & (strength > 0)
    if not keep.any():
        return np.zeros(base.shape[0])
    item_factors, strength = item_factors[keep], strength[keep]
    conf = 1.0 + alpha * strength
    a = base + (item_factors.T * (conf - 1.0)) @ item_factors
    b = item_factors.T @ conf
    try:
        x = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        x = np.linalg.pinv(a) @ b
    return x if np.isfinite(x).all() else np.zeros(base.shape[0])


def usable(vectors: np.ndarray) -> np.ndarray:
    """Rows that may be stored: finite and not zero (a zero or NaN taste would give NaN cosine scores)."""
    return np.isfinite(vectors).all(axis=1) & (np.abs(vectors).sum(axis=1) > 0)


def als(data: Interactions, params: CollaborativeParams, progress: bool = False) -> Factors:
    """Train X, Y by alternating least squares: ``params.iterations`` sweeps of ``implicit``'s CPU ALS (the same
    objective and confidences, conjugate-gradient steps in float32, multi-threaded), then one exact user step in
    float64 with :func:`solve_rows` — the fold-in formula, so every stored taste is exactly what
    ``refresh_user_taste`` computes from the same item factors."""
    from implicit.cpu.als import AlternatingLeastSquares  # deferred: implicit (compiled, heavy import)
    from scipy.sparse import csr_matrix  # deferred: scipy
    from threadpoolctl import threadpool_limits  # deferred: with implicit's own threads, BLAS runs one thread

    started = time.perf_counter()
    shape = (len(data.user_ids), len(data.item_ids))
    confidence = csr_matrix(((1.0 + params.alpha * data.strength).astype(np.float32), data.indices, data.indptr),
                            shape=shape)  # implicit reads c_ui itself (its alpha = 1)
    from recplatform.progress import count, elapsed, progress_bar  # deferred: rich (training only)

    with threadpool_limits(limits=1, user_api="blas"), progress_bar(count(), elapsed(), disable=not progress) as bar:
        model = AlternatingLeastSquares(factors=params.factors, regularization=params.reg, alpha=1.0,
                                        iterations=params.iterations, random_state=params.seed,
                                        calculate_training_loss=False)
        task = bar.add_task("ALS iterations", total=params.iterations)
        model.fit(confidence, show_progress=False, callback=lambda *_: bar.advance(task))
    items = np.asarray(model.item_factors, dtype=float)
    users = solve_rows(items, items.T @ items, data, params.reg, params.alpha)
    return Factors(users, items, params, time.perf_counter() - started, [_loss(data, users, items, params)])


def _loss(data: Interactions, users: np.ndarray, items: np.ndarray, params: CollaborativeParams,
          chunk: int = 1 << 20) -> float:
    """The objective, computed without densifying: sum over all pairs of p=0 terms via Gram matrices.

    The observed terms are summed over chunks of about ``chunk`` interactions (bounded memory at 10M)."""
    observed = 0.0
    n_rows = len(data.indptr) - 1
    lo = 0
    while lo < n_rows:
        hi = int(np.searchsorted(data.indptr, data.indptr[lo] + chunk, side="right")) - 1
        hi = min(max(hi, lo + 1), n_rows)
        a, b = data.indptr[lo], data.indptr[hi]
        rows = np.repeat(np.arange(lo, hi), np.diff(data.indptr[lo:hi + 1]))
        pred = np.einsum("ij,ij->i", np.take(users, rows, axis=0), np.take(items, data.indices[a:b], axis=0))
        conf = 1.0 + params.alpha * data.strength[a:b]
        observed += float(np.sum(conf * (1 - pred) ** 2) - np.sum(pred ** 2))
        lo = hi
    all_zero = float(np.sum((users.T @ users) * (items.T @ items)))  # sum_{u,i} (x_u·y_i)^2
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
