"""Choosing the collaborative space's hyper-parameters and the warm serving prior on the deployment's own data.

Why: defaults picked on one dataset (ML-100K) need not suit another; the issue measured 0.888x EASE on a second
MovieLens set with the same defaults. :func:`tune` holds out each user's last ``fraction`` of interactions by
time (users with at least 5), trains ALS (:func:`recplatform.retrieval.als.als`) on the rest for each candidate
in a small grid, and scores NDCG@10 of the ranking ``rec.recommend`` would serve a warm user (cosine of the
augmented vectors plus the item-to-item term, blended with the popularity prior,
``(1 - w) (cos + g ii / (|x_u| M)) + w popularity``, seen items excluded, over the whole catalogue where serving
re-scores the taste vector's nearest) on the held-out items rated >= 4 (or unrated). The grid runs in a fixed
order, the current defaults first, and stops when ``budget_s`` is spent; progress is shown. The winner is returned
(and stored by :func:`store`): its :class:`CollaborativeParams` go to the next training (``recplatform train
--tune``), its prior and item-to-item weight to the warm row of ``rec.retrieval_defaults``, and the validation
scores of every candidate into that row's ``tuning`` record.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.progress import count, elapsed, progress_bar, remaining
from recplatform.retrieval import item_item, sql
from recplatform.retrieval.als import CollaborativeParams, als, strengths, to_csr

log = logging.getLogger(__name__)

# (factors, reg, alpha): the defaults first, then the alternatives measured on ML-100K (docs/retrieval.md)
GRID: tuple[tuple[int, float, float], ...] = ((32, 5.0, 3.0), (32, 20.0, 2.0), (64, 10.0, 3.0), (32, 1.0, 10.0),
                                              (64, 20.0, 2.0))
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.3)
ITEM_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)  # the warm row's item_item_weight
MIN_HISTORY = 5


@dataclass
class TuneResult:
    """The chosen parameters, their validation NDCG@10, and every candidate's score."""

    params: CollaborativeParams
    popularity_weight: float
    score: float
    item_item_weight: float = 0.0
    candidates: list[dict] = field(default_factory=list)
    n_users: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False

    def record(self) -> dict:
        """What goes into rec.retrieval_defaults.tuning (JSON)."""
        return {"validation_ndcg@10": round(self.score, 6), "als": asdict(self.params),
                "popularity_weight": self.popularity_weight, "item_item_weight": self.item_item_weight,
                "validation_users": self.n_users,
                "seconds": round(self.seconds, 1), "stopped_by_budget": self.stopped_by_budget,
                "candidates": self.candidates, "protocol": "each user's last 20% by time, NDCG@10, relevant = "
                                                           "rating >= 4 or unrated"}


def _ndcg10(ranked: np.ndarray, relevant: set[int]) -> float:
    gains = [1.0 / np.log2(r + 2) for r, i in enumerate(ranked[:10]) if int(i) in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(relevant), 10)))
    return float(sum(gains) / ideal) if ideal else 0.0


def validation_split(rows: Sequence[tuple], fraction: float = 0.2, seed: int = 0, max_users: int = 2000):
    """rows (user, item, rating, weight, epoch) → train rows, {user: relevant held-out items}, sampled users."""
    by_user: dict[str, list[int]] = {}
    for n, r in enumerate(rows):
        by_user.setdefault(r[0], []).append(n)
    users = sorted(u for u, idx in by_user.items() if len(idx) >= MIN_HISTORY)
    if len(users) > max_users:
        users = sorted(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    held: set[int] = set()
    relevant: dict[str, set[str]] = {}
    for u in users:
        idx = sorted(by_user[u], key=lambda n: (rows[n][4], n))  # by time, ties in input order
        cut = len(idx) - max(1, int(np.floor(fraction * len(idx))))
        later = idx[cut:]
        held.update(later)
        relevant[u] = {rows[n][1] for n in later if rows[n][2] is None or rows[n][2] >= 4}
    train = [r for n, r in enumerate(rows) if n not in held]
    return train, {u: rel for u, rel in relevant.items() if rel}


def _matrix(train: Sequence[tuple], params: CollaborativeParams):
    user_ids = sorted({r[0] for r in train})
    item_ids = sorted({r[1] for r in train})
    ui = {u: n for n, u in enumerate(user_ids)}
    ii = {i: n for n, i in enumerate(item_ids)}
    u = np.array([ui[r[0]] for r in train], np.int64)
    i = np.array([ii[r[1]] for r in train], np.int64)
    s = strengths(u, np.array([np.nan if r[2] is None else r[2] for r in train], float),
                  np.array([r[3] for r in train], float), np.array([r[4] for r in train], float), params)
    return to_csr(u, i, s, user_ids, item_ids)


def _item_item_matrix(data, params: CollaborativeParams):
    """The kept EASE weights (:mod:`.item_item`) as a sparse source × target matrix over ``data``'s items."""
    import scipy.sparse as sp  # deferred: scipy (keeps `recplatform --help` fast)

    index = {i: n for n, i in enumerate(data.item_ids)}
    ids, sources, weights = item_item.neighbors(data, params)
    rows = [index[j] for src in sources for j in src]
    cols = [index[i] for i, src in zip(ids, sources) for _ in src]
    values = np.concatenate(weights) if weights else np.zeros(0)
    return sp.csr_matrix((values, (rows, cols)), shape=(len(data.item_ids), len(data.item_ids)))


def score_candidate(train: Sequence[tuple], relevant: dict[str, set[str]], params: CollaborativeParams,
                    prior_weights: Sequence[float] = PRIOR_WEIGHTS,
                    item_weights: Sequence[float] = ITEM_WEIGHTS) -> dict[tuple[float, float], float]:
    """Validation NDCG@10 for each (prior weight, item-to-item weight), ALS trained on ``train`` with ``params``."""
    data = _matrix(train, params)
    factors = als(data, params)
    items, users = factors.items, factors.users
    scale = float(np.max(np.linalg.norm(items, axis=1))) or 1.0
    counts = np.bincount(data.indices, minlength=len(data.item_ids))  # users per item, as rec.item_priors
    popularity = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    towards = _item_item_matrix(data, params) if any(g > 0 for g in item_weights) else None
    u_index = {u: n for n, u in enumerate(data.user_ids)}
    i_index = {i: n for n, i in enumerate(data.item_ids)}
    out: dict[tuple[float, float], list[float]] = {(w, g): [] for w in prior_weights for g in item_weights}
    for user, rel in relevant.items():
        row = u_index.get(user)
        if row is None:
            continue
        x = users[row]
        norm = max(np.linalg.norm(x), 1e-12) * scale
        cos = items @ x / norm  # = cosine of the augmented vectors
        seen = data.user_rows(row)[0]
        ii = np.asarray(towards[seen].sum(axis=0)).ravel() / norm if towards is not None else 0.0
        rel_idx = {i_index[i] for i in rel if i in i_index}
        for (w, g), scores in out.items():
            s = (1 - w) * (cos + g * ii) + w * popularity
            s[seen] = -np.inf
            top = np.argpartition(-s, 10)[:10]
            scores.append(_ndcg10(top[np.argsort(-s[top], kind="stable")], rel_idx))
    return {key: float(np.mean(v)) if v else 0.0 for key, v in out.items()}


def tune(settings: Settings | None = None, *, budget_s: float = 300.0, grid=GRID, seed: int = 0,
         progress: bool = False, rows: Sequence[tuple] | None = None) -> TuneResult:
    """Choose ALS hyper-parameters and the warm prior weight on a validation split of the interactions."""
    started = time.perf_counter()
    if rows is None:
        settings = settings or get_settings()
        with db.connect(settings, vector=False) as conn:
            rows = conn.execute(sql.INTERACTIONS_ALL).fetchall()
    train, relevant = validation_split(rows, seed=seed)
    if not relevant:
        raise ValueError("interactions: no user has the 5 interactions and a relevant later one that tuning needs")
    base = CollaborativeParams()
    best: TuneResult | None = None
    candidates: list[dict] = []
    stopped = False
    bar = progress_bar(count(), elapsed(), remaining(), disable=not progress, transient=True)
    with bar:
        task = bar.add_task("tuning ALS on validation users", total=len(grid))
        for factors, reg, alpha in grid:
            if candidates and time.perf_counter() - started > budget_s:
                stopped = True
                log.info("tuning budget of %.0f s spent after %d candidates", budget_s, len(candidates))
                break
            params = replace(base, factors=factors, reg=reg, alpha=alpha, seed=seed)
            t0 = time.perf_counter()
            scores = score_candidate(train, relevant, params)
            for (w, g), score in scores.items():
                candidates.append({"factors": factors, "reg": reg, "alpha": alpha, "popularity_weight": w,
                                   "item_item_weight": g, "ndcg@10": round(score, 6),
                                   "seconds": round(time.perf_counter() - t0, 1)})
                if best is None or score > best.score + 1e-9:
                    best = TuneResult(params, w, score, g)
            bar.advance(task)
    best.candidates = candidates
    best.n_users = len(relevant)
    best.seconds = time.perf_counter() - started
    best.stopped_by_budget = stopped
    log.info("tuned: factors %d, reg %g, alpha %g, prior %g, item-to-item %g: validation NDCG@10 %.4f (%d users, "
             "%.0f s)", best.params.factors, best.params.reg, best.params.alpha, best.popularity_weight,
             best.item_item_weight, best.score, best.n_users, best.seconds)
    return best


def store(settings: Settings, result: TuneResult) -> None:
    """Record the choice on the warm row of rec.retrieval_defaults (prior and item-to-item weights, tuning record)."""
    with db.transaction(settings) as conn:
        conn.execute(sql.STORE_TUNING, (result.popularity_weight, result.item_item_weight,
                                        json.dumps(result.record())))


def tuned_params(settings: Settings) -> CollaborativeParams | None:
    """The ALS hyper-parameters the last tuning chose (None when never tuned)."""
    with db.connect(settings, vector=False) as conn:
        row = conn.execute(sql.TUNED_ALS).fetchone()
    if not row or not row[0]:
        return None
    known = set(asdict(CollaborativeParams()))
    return CollaborativeParams(**{k: v for k, v in row[0].items() if k in known})
