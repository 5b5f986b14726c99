"""Collaborative embedding space: implicit-feedback matrix factorisation (ALS) trained from rec.interactions.

Why: on MovieLens the LLM content space carries little taste (issue 4); interactions do. This module learns
item factors and user taste vectors, stores them in pgvector like any other space (kind ``collaborative``),
and folds users in again when their interactions change.

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

      item  ŷ_i = [y_i / M,  sqrt(1 - |y_i|^2 / M^2)]        user  x̂_u = [x_u / |x_u|,  0]

  so ``cos(x̂_u, ŷ_i) = x_u·y_i / (|x_u| M)``: the cosine ranking equals the dot-product ranking. The space
  has dimension f + 1; ``M``, ``YᵀY`` and the hyper-parameters are kept in the space's params.
* Items without interactions get ``y_i = W_cᵀ e_i + b_c`` from their LLM content embedding ``e_i`` via a ridge
  map fitted on the items that have interactions (stored as a ``content_to_item`` map in rec.coldstart_maps),
  clipped to norm M, so new items stay reachable (they rank by what similar-content items earned).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.embedding.spaces import Space
from recplatform.retrieval import sql

log = logging.getLogger(__name__)

KEEP_SPACES = 2  # collaborative spaces kept (the active one and its predecessor); older ones are dropped
_TRAIN_LOCK = 0x7265_6374_7261_696E  # advisory lock: one training at a time per database


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


def load_interactions(settings: Settings, params: CollaborativeParams, user_ids: Sequence[str] | None = None
                      ) -> Interactions:
    """Read rec.interactions (all, or those of ``user_ids``) into aggregated strengths."""
    with db.connect(settings, vector=False) as conn:
        if user_ids is None:
            rows = conn.execute(sql.INTERACTIONS_ALL).fetchall()
        else:
            rows = conn.execute(sql.INTERACTIONS_OF_USERS, (list(user_ids),)).fetchall()
    if not rows:
        return Interactions([], [], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    users = [r[0] for r in rows]
    items = [r[1] for r in rows]
    user_ids_sorted = sorted(set(users))
    item_ids_sorted = sorted(set(items))
    u_index = {u: n for n, u in enumerate(user_ids_sorted)}
    i_index = {i: n for n, i in enumerate(item_ids_sorted)}
    u = np.fromiter((u_index[x] for x in users), np.int64, len(rows))
    i = np.fromiter((i_index[x] for x in items), np.int64, len(rows))
    ratings = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    weights = np.array([r[3] for r in rows], dtype=float)
    occurred = np.array([r[4] for r in rows], dtype=float)
    s = strengths(u, ratings, weights, occurred, params)
    return _to_csr(u, i, s, user_ids_sorted, item_ids_sorted)


def _to_csr(u: np.ndarray, i: np.ndarray, s: np.ndarray, user_ids: list[str], item_ids: list[str]) -> Interactions:
    from scipy.sparse import coo_matrix

    m = coo_matrix((s, (u, i)), shape=(len(user_ids), len(item_ids))).tocsr()  # duplicates are summed
    m.sum_duplicates()
    m.eliminate_zeros()
    return Interactions(user_ids, item_ids, m.indptr.astype(np.int64), m.indices.astype(np.int64),
                        m.data.astype(float))


def _transpose(data: Interactions) -> Interactions:
    from scipy.sparse import csr_matrix

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
        from rich.progress import track

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
    """x̂ = [x/|x|, 0]."""
    norms = np.linalg.norm(users, axis=1, keepdims=True)
    return np.hstack([users / np.maximum(norms, 1e-12), np.zeros((len(users), 1))]).astype(np.float32)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised bias: W = (XcᵀXc + λI)^-1 XcᵀYc, b = ȳ - x̄W."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    return w, y_mean - x_mean @ w


# ----- storage ----------------------------------------------------------------------------------------
def _history_hash(n: int, strength_sum: float) -> str:
    return hashlib.sha256(f"{n}:{strength_sum:.6f}".encode()).hexdigest()[:16]


def copy_vectors(conn, table: str, space_id: int, ids: Sequence[str], vectors: np.ndarray,
                 hashes: Sequence[str], kind: str | None = None) -> None:
    """Binary COPY of vectors into rec.item_embeddings / rec.user_embeddings (pgvector's psycopg dumper)."""
    from pgvector import Vector

    columns = "space_id, item_id, embedding, content_hash" if table == "item" else \
        "space_id, user_id, kind, embedding, content_hash"
    target = "rec.item_embeddings" if table == "item" else "rec.user_embeddings"
    with conn.cursor() as cur:
        with cur.copy(f"COPY {target} ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            if table == "item":
                copy.set_types(["int4", "text", "vector", "text"])
                for id_, vec, h in zip(ids, vectors, hashes):
                    copy.write_row((space_id, id_, Vector(vec), h))
            else:
                copy.set_types(["int4", "text", "text", "vector", "text"])
                for id_, vec, h in zip(ids, vectors, hashes):
                    copy.write_row((space_id, id_, kind, Vector(vec), h))


def _content_vectors(conn, content_space_id: int) -> tuple[list[str], np.ndarray]:
    rows = conn.execute(sql.ITEM_VECTORS, (content_space_id,)).fetchall()
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    return [r[0] for r in rows], np.stack([np.asarray(r[1].to_numpy(), np.float32) for r in rows])


def store_map(conn, kind: str, source_space: int, target_space: int, w: np.ndarray, b: np.ndarray,
              params: dict) -> int:
    """Store a linear map (one row per output: weights W[:, j], bias b_j) and make it the active one."""
    from pgvector import Vector

    conn.execute(sql.DEACTIVATE_MAPS, (kind, source_space, target_space))
    map_id = conn.execute(sql.INSERT_MAP, (kind, source_space, target_space, w.shape[0], w.shape[1],
                                           json.dumps(params))).fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany(sql.INSERT_MAP_ROW,
                        [(map_id, j, Vector(w[:, j].astype(np.float32)), float(b[j])) for j in range(w.shape[1])])
    return map_id


# ----- public API -------------------------------------------------------------------------------------
def train_collaborative_space(settings: Settings | None = None, params: CollaborativeParams | None = None,
                              *, progress: bool = False, fit_coldstart: bool = True) -> Space:
    """Train ALS on all interactions, store item and taste vectors in a new collaborative space, activate it.

    Also maps items without interactions from their content embeddings, refreshes rec.item_priors, fits
    the demographic → taste cold-start map (:mod:`recplatform.retrieval.coldstart`) and drops collaborative
    spaces older than the previous one. Raises ValueError when there are no interactions.
    """
    settings = settings or get_settings()
    params = params or CollaborativeParams()
    started = time.perf_counter()
    with db.connect(settings, vector=False) as conn:
        watermark = int(conn.execute(sql.INTERACTION_WATERMARK).fetchone()[0])
    data = load_interactions(settings, params)
    if not data.user_ids:
        raise ValueError("interactions: rec.interactions is empty; nothing to train a collaborative space from")
    factors = als(data, params, progress=progress)
    scale = float(np.max(np.linalg.norm(factors.items, axis=1))) or 1.0
    gram = factors.items.T @ factors.items
    name = f"collaborative/als-f{params.factors}/{time.strftime('%Y%m%dT%H%M%S')}-{int(time.time_ns() % 10**9)}"
    space = spaces.register_space(
        settings, name, spaces.COLLABORATIVE, f"als:f{params.factors}", params.factors + 1, "",
        {**asdict(params), "scale": scale, "gram": gram.tolist(), "augmented": True,
         "n_users": len(data.user_ids), "n_items": len(data.item_ids), "final_loss": factors.history[-1],
         "interaction_watermark": watermark},
    )
    try:
        _store_space(settings, space, data, factors, scale, params)
    except BaseException:
        with db.transaction(settings) as conn:
            conn.execute(sql.DELETE_SPACE, (space.space_id,))
        raise
    space = spaces.activate(settings, space.space_id)
    with db.transaction(settings) as conn:
        conn.execute(sql.REFRESH_ITEM_PRIORS)
        old = [r[0] for r in conn.execute(sql.OLD_COLLABORATIVE_SPACES, (KEEP_SPACES,)).fetchall()]
        for space_id in old:
            conn.execute(sql.DELETE_SPACE, (space_id,))
    if fit_coldstart:
        from recplatform.retrieval import coldstart

        coldstart.fit_demographic_map(settings, space)
    log.info("collaborative space %s (id %s): %d users, %d items, %d factors, loss %.1f → %.1f, %.1fs",
             space.name, space.space_id, len(data.user_ids), len(data.item_ids), params.factors,
             factors.history[0], factors.history[-1], time.perf_counter() - started)
    return space


def _interactions_since(conn, space: Space | None) -> int:
    """Interactions with an id above the space's training watermark (all of them when there is no space)."""
    watermark = (space.params or {}).get("interaction_watermark", 0) if space is not None else 0
    return int(conn.execute(sql.INTERACTIONS_SINCE, (watermark,)).fetchone()[0])


def new_interactions(settings: Settings | None = None) -> int | None:
    """Interactions added since the active collaborative space was trained; None when there is no such space."""
    settings = settings or get_settings()
    space = spaces.active_space(settings, spaces.COLLABORATIVE)
    if space is None:
        return None
    with db.connect(settings, vector=False) as conn:
        return _interactions_since(conn, space)


def train_if_due(settings: Settings | None = None) -> Space | None:
    """Train when no collaborative space exists yet (and there are interactions), or when at least
    ``settings.retrain_after_interactions`` interactions arrived since the last training. What the worker runs
    after ingestions and on its beat schedule; a training already running elsewhere makes this a no-op."""
    settings = settings or get_settings()
    with db.connect(settings, autocommit=True, vector=False) as conn:
        if not conn.execute(sql.TRY_LOCK, (_TRAIN_LOCK,)).fetchone()[0]:
            log.info("collaborative training is already running elsewhere; not starting another")
            return None
        try:
            space = spaces.active_space(settings, spaces.COLLABORATIVE)
            new = _interactions_since(conn, space)
            threshold = settings.retrain_after_interactions if space is not None else 1
            due = new >= threshold
            log.info("%d interactions since the last collaborative training (threshold %d): %s", new, threshold,
                     "training" if due else "not due")
            return train_collaborative_space(settings) if due else None
        finally:
            conn.execute(sql.UNLOCK, (_TRAIN_LOCK,))


def _store_space(settings: Settings, space: Space, data: Interactions, factors: Factors, scale: float,
                 params: CollaborativeParams) -> None:
    with db.transaction(settings) as conn:
        # Build the HNSW index after loading (much faster than inserting into a live index).
        conn.execute(sql.DROP_ITEM_INDEX.format(space_id=int(space.space_id)))
        conn.execute(sql.DROP_TASTE_INDEX.format(space_id=int(space.space_id)))
        item_ids = list(data.item_ids)
        item_vecs = augment_items(factors.items, scale)
        content_space = spaces.active_space(settings, spaces.CONTENT)
        if content_space is not None:
            c_ids, c_vecs = _content_vectors(conn, content_space.space_id)
            c_index = {i: n for n, i in enumerate(c_ids)}
            trained = [n for n, i in enumerate(item_ids) if i in c_index]
            known = set(item_ids)
            missing = [r[0] for r in conn.execute(sql.ALL_ITEM_IDS).fetchall()
                       if r[0] not in known and r[0] in c_index]
            if len(trained) >= 2 and missing:
                x = c_vecs[[c_index[item_ids[n]] for n in trained]]
                w, b = ridge(x, factors.items[trained], params.map_reg)
                store_map(conn, "content_to_item", content_space.space_id, space.space_id, w, b,
                          {"lambda": params.map_reg, "n_train": len(trained), "target": "raw item factors"})
                mapped = c_vecs[[c_index[i] for i in missing]] @ w + b
                item_ids += missing
                item_vecs = np.vstack([item_vecs, augment_items(mapped, scale)])
                log.info("mapped %d items without interactions from content space %s", len(missing),
                         content_space.name)
        hashes = ["trained"] * len(data.item_ids) + ["mapped"] * (len(item_ids) - len(data.item_ids))
        copy_vectors(conn, "item", space.space_id, item_ids, item_vecs, hashes)
        user_hashes = [_history_hash(int(data.indptr[u + 1] - data.indptr[u]),
                                     float(np.sum(data.user_rows(u)[1]))) for u in range(len(data.user_ids))]
        copy_vectors(conn, "user", space.space_id, data.user_ids, augment_users(factors.users), user_hashes, "taste")
        conn.execute("SELECT rec.ensure_space_indexes(%s)", (space.space_id,))


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
    from pgvector import Vector

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
                         _history_hash(len(idx), float(np.sum(s)))))
        served = {r[1] for r in rows}
        conn.execute(sql.DELETE_TASTE, (space.space_id, [u for u in user_ids if u not in served]))
        with conn.cursor() as cur:
            cur.executemany(sql.UPSERT_TASTE, rows)
        written = len(rows)
    log.info("refreshed taste of %d users in space %s", written, space.name)
    return written
