"""Ranking metrics for offline evaluation: precision, recall, NDCG, MAP, hit rate, coverage, novelty, diversity, CIs.

Conventions (the ones a recommender engineer expects, written down so numbers can be compared):

- Relevance is binary. A user with no relevant items is *excluded* from the per-user means and counted
  (``users_without_relevant``); a user with relevant items but no recommendations scores 0.
- ``precision@k`` = hits in the top k / k (a list shorter than k is not rewarded for being short).
- ``recall@k`` = hits in the top k / |relevant|.
- ``ndcg@k`` = DCG / IDCG with DCG = sum over hits at 0-based rank r of 1 / log2(r + 2), and IDCG the DCG of
  min(|relevant|, k) hits at the top.
- ``map@k`` = mean of AP@k, AP@k = sum over hits at rank r of precision@(r+1), divided by min(|relevant|, k).
- ``hit@k`` = 1 if any relevant item is in the top k.
- ``coverage@k`` = distinct items in all top-k lists / catalogue size.
- ``novelty@k`` = mean over recommended items of -log2(popularity share), share = (training interactions of
  the item + 1) / (training interactions + catalogue size) (add-one, so unseen items have finite novelty).
- ``diversity@k`` = mean over users of the mean pairwise cosine distance (1 - cos) of their top-k items'
  embeddings (users with fewer than two recommended items are skipped).
- ``auc`` (only where deep rankings are asked for, the new-item protocol): per user, the mean over relevant
  items of 1 - position / (candidates - 1), i.e. the share of the user's candidate items ranked below the
  relevant item; 0.5 = random, 1 = all relevant items on top. A relevant item missing from a truncated
  ranking is placed at the expected position of the unlisted candidates (the middle of the rest).
- 95% confidence intervals: percentile bootstrap over users (resampling users with replacement, seeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
PER_USER_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit")


def _hits(recommended: Sequence[Hashable], relevant: set, k: int) -> list[int]:
    """0/1 flags for the first k recommendations (duplicates count once, at their first position)."""
    seen: set = set()
    flags = []
    for item in list(recommended)[:k]:
        flags.append(1 if item in relevant and item not in seen else 0)
        seen.add(item)
    return flags


def precision_at_k(recommended: Sequence[Hashable], relevant: set, k: int) -> float:
    _check_k(k)
    return sum(_hits(recommended, relevant, k)) / k


def recall_at_k(recommended: Sequence[Hashable], relevant: set, k: int) -> float:
    _check_k(k)
    if not relevant:
        raise ValueError("recall@k is undefined for a user with no relevant items")
    return sum(_hits(recommended, relevant, k)) / len(relevant)


def ndcg_at_k(recommended: Sequence[Hashable], relevant: set, k: int) -> float:
    _check_k(k)
    if not relevant:
        raise ValueError("ndcg@k is undefined for a user with no relevant items")
    dcg = sum(flag / math.log2(rank + 2) for rank, flag in enumerate(_hits(recommended, relevant, k)))
    idcg = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / idcg


def average_precision_at_k(recommended: Sequence[Hashable], relevant: set, k: int) -> float:
    _check_k(k)
    if not relevant:
        raise ValueError("AP@k is undefined for a user with no relevant items")
    hits, total = 0, 0.0
    for rank, flag in enumerate(_hits(recommended, relevant, k)):
        if flag:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(relevant), k)


def hit_at_k(recommended: Sequence[Hashable], relevant: set, k: int) -> float:
    _check_k(k)
    return 1.0 if any(_hits(recommended, relevant, k)) else 0.0


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


_FUNCTIONS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "hit": hit_at_k,
}


def ranking_auc(recommended: Sequence[Hashable], relevant: set, n_candidates: int) -> float:
    """Mean share of candidates ranked below each relevant item (see the module doc for truncated lists)."""
    if not relevant:
        raise ValueError("AUC is undefined for a user with no relevant items")
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be at least 2, got {n_candidates}")
    ranked = list(dict.fromkeys(recommended))
    position = {item: i for i, item in enumerate(ranked)}
    unlisted = (len(ranked) + n_candidates - 1) / 2.0
    return float(np.mean([1.0 - position.get(item, unlisted) / (n_candidates - 1) for item in relevant]))


def coverage_at_k(recommendations: Mapping[Hashable, Sequence[Hashable]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    if catalogue_size <= 0:
        raise ValueError("catalogue_size must be positive")
    distinct = {item for recs in recommendations.values() for item in list(recs)[:k]}
    return len(distinct) / catalogue_size


def novelty_at_k(recommendations: Mapping[Hashable, Sequence[Hashable]], item_counts: Mapping[Hashable, int],
                 catalogue_size: int, k: int) -> float:
    """Mean self-information -log2(share) of recommended items (add-one smoothed interaction share)."""
    total = float(sum(item_counts.values())) + catalogue_size
    values = [-math.log2((item_counts.get(item, 0) + 1) / total)
              for recs in recommendations.values() for item in list(recs)[:k]]
    return float(np.mean(values)) if values else float("nan")


def intra_list_diversity(items: Sequence[Hashable], vectors: Mapping[Hashable, np.ndarray]) -> float | None:
    """Mean pairwise cosine distance of the items' vectors; None when fewer than two items have vectors."""
    rows = [np.asarray(vectors[i], dtype=np.float64) for i in items if i in vectors]
    if len(rows) < 2:
        return None
    matrix = np.vstack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1.0, norms)
    sims = matrix @ matrix.T
    n = len(rows)
    mean_sim = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    return float(1.0 - mean_sim)


def diversity_at_k(recommendations: Mapping[Hashable, Sequence[Hashable]], vectors: Mapping[Hashable, np.ndarray] | None,
                   k: int) -> float:
    if not vectors:
        return float("nan")
    values = [d for recs in recommendations.values()
              if (d := intra_list_diversity(list(recs)[:k], vectors)) is not None]
    return float(np.mean(values)) if values else float("nan")


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling users with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))


@dataclass
class MetricReport:
    """Means, 95% CIs and counts for one strategy on one protocol."""

    values: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    n_users: int
    users_without_relevant: int
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def evaluate(recommendations: Mapping[Hashable, Sequence[Hashable]], relevant: Mapping[Hashable, set], *,
             catalogue_size: int, item_counts: Mapping[Hashable, int] | None = None,
             item_vectors: Mapping[Hashable, np.ndarray] | None = None, ks: Sequence[int] = DEFAULT_KS,
             n_boot: int = 1000, seed: int = 0, candidates: Mapping[Hashable, int] | None = None) -> MetricReport:
    """All metrics for one strategy: ``recommendations[user]`` ranked lists, ``relevant[user]`` relevant sets.

    Users are those in ``relevant``; a user missing from ``recommendations`` got nothing (scores 0).
    Users whose relevant set is empty are excluded from the means and counted. With ``candidates`` (the
    number of items each user's ranking was drawn from) the ranking AUC is computed too.
    """
    users = [u for u in relevant if relevant[u]]
    excluded = len(relevant) - len(users)
    values: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    per_user: dict[str, np.ndarray] = {}
    for k in ks:
        for name in PER_USER_METRICS:
            fn = _FUNCTIONS[name]
            arr = np.array([fn(recommendations.get(u, ()), relevant[u], k) for u in users], dtype=np.float64)
            key = f"{name}@{k}"
            per_user[key] = arr
            values[key] = float(arr.mean()) if arr.size else float("nan")
            ci[key] = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
        served = {u: recommendations.get(u, ()) for u in users}
        values[f"coverage@{k}"] = coverage_at_k(served, catalogue_size, k)
        values[f"novelty@{k}"] = novelty_at_k(served, item_counts or {}, catalogue_size, k)
        values[f"diversity@{k}"] = diversity_at_k(served, item_vectors, k)
    if candidates is not None:
        arr = np.array([ranking_auc(recommendations.get(u, ()), relevant[u], candidates[u]) for u in users])
        per_user["auc"] = arr
        values["auc"] = float(arr.mean()) if arr.size else float("nan")
        ci["auc"] = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    return MetricReport(values=values, ci95=ci, n_users=len(users), users_without_relevant=excluded,
                        per_user=per_user)
