"""Seeded, reproducible train/test splits: user-disjoint cold-user folds, per-user temporal warm holdout, new items,
and onboarding (user-disjoint folds whose test users arrive one interaction at a time).

Every split keeps the whole catalogue and every user's demographics; only interactions move between train and
test. Relevant items are the held-out interactions with ``rating >= threshold`` (an interaction without a
rating counts as relevant). Test users whose held-out part has no relevant item stay in ``relevant`` with an
empty set, so the metrics can exclude and count them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd

PROTOCOLS: tuple[str, ...] = ("cold-user", "warm", "new-item", "onboarding")
# Onboarding: how many of a test user's first interactions (by time) the platform knows at each step.
ONBOARDING_STEPS: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 20)


@dataclass
class Split:
    """One train/test split of a dataset's interactions."""

    protocol: str
    fold: int
    train: pd.DataFrame
    test: pd.DataFrame
    relevant: dict[str, set[str]]
    exclude: dict[str, set[str]] = field(default_factory=dict)
    held_out_items: frozenset[str] = frozenset()
    # onboarding: each test user's first max(steps) interactions in time order (they arrive step by step)
    onboarding: pd.DataFrame | None = None
    steps: tuple[int, ...] = ()
    # new-item: relevant sets of the cold-only and warm-only views (``relevant`` is the hybrid view)
    views: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    @property
    def test_users(self) -> list[str]:
        return list(self.relevant)


def relevant_mask(interactions: pd.DataFrame, threshold: float) -> pd.Series:
    """True where an interaction counts as relevant: rating >= threshold, or no rating at all (implicit event)."""
    rating = pd.to_numeric(interactions["rating"], errors="coerce")
    return rating.isna() | (rating >= threshold)


def _relevant_sets(test: pd.DataFrame, users, threshold: float) -> dict[str, set[str]]:
    rel = test[relevant_mask(test, threshold)]
    grouped = rel.groupby("user_id")["item_id"].agg(set).to_dict()
    return {str(u): set(grouped.get(u, set())) for u in users}


def _seen(train: pd.DataFrame, users) -> dict[str, set[str]]:
    wanted = set(users)
    part = train[train["user_id"].isin(wanted)]
    grouped = part.groupby("user_id")["item_id"].agg(set).to_dict()
    return {u: set(grouped.get(u, set())) for u in users}


def cold_user_folds(interactions: pd.DataFrame, *, folds: int = 5, seed: int = 0,
                    threshold: float = 4.0) -> Iterator[Split]:
    """User-disjoint k-fold: each fold's users lose all their interactions from training (demographics only)."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    users = np.array(sorted(interactions["user_id"].unique()))
    if len(users) < folds:
        raise ValueError(f"folds={folds} but only {len(users)} users have interactions")
    order = np.random.default_rng(seed).permutation(len(users))
    for fold, idx in enumerate(np.array_split(order, folds)):
        held = set(users[idx])
        in_test = interactions["user_id"].isin(held)
        test = interactions[in_test]
        yield Split("cold-user", fold, train=interactions[~in_test], test=test,
                    relevant=_relevant_sets(test, sorted(held), threshold),
                    exclude={u: set() for u in sorted(held)})


def temporal_holdout(interactions: pd.DataFrame, fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last ``fraction`` of interactions by time go to test.

    A user with n >= 2 interactions holds out max(1, floor(fraction * n)) of them and keeps at least one;
    users with a single interaction stay in training. Interactions with the same timestamp keep the order
    they have in ``interactions`` (stable sort), so the split is deterministic for a given input.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ordered = interactions.sort_values(["user_id", "occurred_at"], kind="mergesort")
    position = ordered.groupby("user_id").cumcount()
    size = ordered.groupby("user_id")["item_id"].transform("size")
    n_test = np.where(size >= 2, np.minimum(np.maximum(1, np.floor(fraction * size)), size - 1), 0)
    in_test = position >= (size - n_test)
    return ordered[~in_test], ordered[in_test]


def warm_split(interactions: pd.DataFrame, *, fraction: float = 0.2, threshold: float = 4.0) -> Split:
    """Per-user temporal holdout; the users' training items are excluded from their rankings."""
    train, test = temporal_holdout(interactions, fraction)
    users = sorted(test["user_id"].unique())
    return Split("warm", 0, train=train, test=test, relevant=_relevant_sets(test, users, threshold),
                 exclude=_seen(train, users))


def new_item_split(interactions: pd.DataFrame, *, fraction: float = 0.1, seed: int = 0, threshold: float = 4.0,
                   warm_fraction: float = 0.2) -> Split:
    """A random ``fraction`` of the items lose all their interactions (the new items); of the rest, each user's
    last ``warm_fraction`` by time is held out too, so one split has three views (as ALDI and ColdRec report):

    - ``cold-only``: relevant = the new items the user rated well, ranked among the new items only;
    - ``warm-only``: relevant = the user's held-out later items that are not new, ranked among those;
    - ``hybrid``: both, ranked over the whole catalogue (what a user is shown).

    ``relevant`` is the hybrid set; ``views`` holds each view's relevant sets.
    """
    items = np.array(sorted(interactions["item_id"].unique()))
    n_held = max(1, int(math.floor(fraction * len(items) + 0.5)))
    held = frozenset(items[np.random.default_rng(seed).permutation(len(items))[:n_held]])
    in_cold = interactions["item_id"].isin(held)
    cold_test = interactions[in_cold]
    train, warm_test = temporal_holdout(interactions[~in_cold], warm_fraction)
    test = pd.concat([cold_test, warm_test])
    users = sorted(test["user_id"].unique())
    cold_rel = _relevant_sets(cold_test, users, threshold)
    warm_rel = _relevant_sets(warm_test, users, threshold)
    return Split("new-item", 0, train=train, test=test,
                 relevant={u: cold_rel[u] | warm_rel[u] for u in users}, exclude=_seen(train, users),
                 held_out_items=held, views={"cold-only": cold_rel, "warm-only": warm_rel})


def onboarding_folds(interactions: pd.DataFrame, *, folds: int = 2, seed: int = 0, threshold: float = 4.0,
                     steps: tuple[int, ...] = ONBOARDING_STEPS, relevant_after: int | None = None,
                     max_users: int | None = None) -> Iterator[Split]:
    """User-disjoint folds whose test users are onboarded: their first interactions arrive one step at a time.

    Each test user's interactions are sorted by time (ties keep the input order). The first ``max(steps)`` of
    them are what the platform learns, step by step (``Split.onboarding``); relevant = the interactions after
    the first ``relevant_after`` (default ``max(steps)``) with ``rating >= threshold``, the same set at every
    step and never among the known items. Only users with more than ``relevant_after`` interactions are
    tested; with ``max_users`` a seeded sample of at most that many of them per fold (the rest of the fold's
    users are out of training all the same).
    """
    steps = tuple(sorted(set(int(n) for n in steps)))
    if not steps or steps[0] < 0:
        raise ValueError(f"steps must be non-negative counts of known interactions, got {steps}")
    after = max(steps) if relevant_after is None else int(relevant_after)
    if after < max(steps):
        raise ValueError(f"relevant_after ({after}) must be at least the largest step ({max(steps)}): relevant items "
                         "must never be among the known ones")
    ordered = interactions.sort_values(["user_id", "occurred_at"], kind="mergesort")
    position = ordered.groupby("user_id").cumcount()
    for split in cold_user_folds(interactions, folds=folds, seed=seed, threshold=threshold):
        held = ordered["user_id"].isin(set(split.test_users))
        sizes = ordered[held].groupby("user_id").size()
        users = sorted(sizes[sizes > after].index)
        if max_users is not None and len(users) > max_users:
            pick = np.random.default_rng(seed * 7919 + split.fold).permutation(len(users))[:max_users]
            users = sorted(users[i] for i in pick)
        mine = ordered[ordered["user_id"].isin(set(users))]
        pos = position[mine.index]
        later = mine[pos >= after]
        known = mine[pos < max(steps)]
        yield Split("onboarding", split.fold, train=split.train, test=later,
                    relevant=_relevant_sets(later, users, threshold), exclude={u: set() for u in users},
                    onboarding=known, steps=steps)


def known_items(split: Split, n: int) -> dict[str, list[str]]:
    """Each onboarding test user's first ``n`` items (by time)."""
    frame = split.onboarding if split.onboarding is not None else pd.DataFrame(columns=["user_id", "item_id"])
    first = frame.groupby("user_id", sort=False).head(n)
    grouped = first.groupby("user_id", sort=False)["item_id"].agg(list).to_dict()
    return {u: list(grouped.get(u, [])) for u in split.test_users}


def splits(protocol: str, interactions: pd.DataFrame, *, folds: int = 5, seed: int = 0, threshold: float = 4.0,
           warm_fraction: float = 0.2, new_item_fraction: float = 0.1, onboarding_users: int | None = None,
           onboarding_steps: tuple[int, ...] = ONBOARDING_STEPS) -> list[Split]:
    """The splits of one named protocol."""
    if protocol == "cold-user":
        return list(cold_user_folds(interactions, folds=folds, seed=seed, threshold=threshold))
    if protocol == "warm":
        return [warm_split(interactions, fraction=warm_fraction, threshold=threshold)]
    if protocol == "new-item":
        return [new_item_split(interactions, fraction=new_item_fraction, seed=seed, threshold=threshold,
                               warm_fraction=warm_fraction)]
    if protocol == "onboarding":
        return list(onboarding_folds(interactions, folds=folds, seed=seed, threshold=threshold,
                                     steps=onboarding_steps, max_users=onboarding_users))
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
