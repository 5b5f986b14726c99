"""Seedable synthetic dataset whose users' genre tastes are planted from their demographics (for demos and tests).

The generative story, all driven by one ``numpy.random.Generator(seed)``:

1. Genres come from the fixed list ``GENRES``. A user's demographic *segment* is
   ``age band x gender x occupation`` (see :func:`segment_of`). Each age band, gender and occupation has a
   random genre effect; a segment's genre logits are the sum of its three effects times ``signal``, and its
   genre distribution (``truth["segment_genre_weights"]``) is their softmax.
2. A user's own genre preference is the softmax of the segment logits plus individual Gaussian noise
   (``noise``); their top genres are ``truth["user_preferred_genres"]``.
3. Items get 1-3 genres, a year, a word title and a one-sentence description; item popularity follows a
   long-tailed Zipf law (``popularity_exponent``) over a random order of items.
4. Each user interacts with a log-normally distributed number of distinct items, drawn without replacement
   with probability proportional to ``popularity x affinity ** taste_strength`` (affinity = the user's mean
   preference over the item's genres, relative to uniform), by Gumbel top-k sampling; ratings 1-5 rise with
   the user's affinity relative to their other picks and with item quality; timestamps are spread over 2020-2021 (UTC).

Bounds (a :class:`recplatform.ingest.ValidationError` naming the argument otherwise): ``n_users`` 1 to
``MAX_USERS`` (1,000,000), ``n_items`` 2 to ``MAX_ITEMS`` (100,000), ``seed`` 0 to ``MAX_SEED`` (2**32 - 1),
and finite, positive shape parameters. Memory stays bounded: users are drawn in blocks of at most
``_BLOCK_CELLS`` user x item scores.

So demographics really predict taste: a model that knows only a user's segment can rank genres (and thus
items) better than popularity alone, and tests can check it against ``truth``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd

from recplatform.datasets import Dataset
from recplatform.ingest import ValidationError

MAX_USERS = 1_000_000
MAX_ITEMS = 100_000
MAX_SEED = 2**32 - 1
_BLOCK_CELLS = 2**24  # user x item scores per block: 2048 users up to 8,192 items, fewer users beyond

GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
AGE_BANDS = [("under 25", 13, 24), ("25-44", 25, 44), ("45+", 45, 75)]
SEX = ["M", "F"]
OCCUPATIONS = [
    "student", "engineer", "artist", "educator", "healthcare", "retired", "salesman", "writer", "technician",
    "homemaker",
]
# How likely each occupation is in each age band (students are young, the retired are not).
_OCCUPATION_BY_BAND = np.array([
    [8, 2, 2, 1, 1, 0.05, 2, 1, 2, 1],
    [1, 4, 2, 3, 3, 0.1, 3, 2, 3, 2],
    [0.2, 3, 2, 3, 3, 5, 2, 2, 2, 2],
])
_ADJECTIVES = [
    "Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Midnight", "Wild", "Frozen", "Distant", "Burning",
    "Lost", "Secret", "Endless", "Hollow", "Electric", "Quiet", "Savage", "Paper", "Iron", "Velvet", "Shattered",
]
_NOUNS = [
    "River", "Kingdom", "Promise", "Garden", "Horizon", "Echo", "Harbor", "Mirror", "Empire", "Road", "Storm",
    "Summer", "Letter", "Dream", "Machine", "Island", "Frontier", "Lantern", "Orchard", "Signal", "Voyage", "Crown",
]
_SUBJECTS = [
    "two estranged siblings", "a retired detective", "a small-town teacher", "a band of misfits", "a young pilot",
    "an ambitious chef", "a lonely robot", "a family on the run", "a reluctant heir", "an unlikely friendship",
    "a stranded crew", "a rookie journalist",
]
_SETTINGS = [
    "in a city that never sleeps", "on the edge of the desert", "during a long winter", "in a forgotten village",
    "aboard a failing starship", "across a divided country", "in the last days of summer", "beneath the ocean",
]


def age_band(age: int | None) -> str:
    """The age band label of ``age`` (``under 25``, ``25-44`` or ``45+``)."""
    if age is None:
        return "unknown"
    for label, _, high in AGE_BANDS:
        if age <= high:
            return label
    return AGE_BANDS[-1][0]


def segment_of(age: int | None, gender: str | None, occupation: str | None) -> str:
    """The demographic segment key ``"<age band>|<gender>|<occupation>"`` used by the generator's truth."""
    return f"{age_band(age)}|{gender or 'unknown'}|{occupation or 'unknown'}"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _bad(field: str, value: object, reason: str) -> ValidationError:
    return ValidationError("synthetic", None, field, value, reason)


def _check_integer(field: str, value: object, low: int, high: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _bad(field, value, "must be an integer")
    if not low <= int(value) <= high:
        raise _bad(field, value, f"must be between {low:,} and {high:,}")


def _check_arguments(n_users: object, n_items: object, seed: object, **shape: object) -> None:
    """Every argument of :func:`generate_synthetic` within its documented bounds, or a named ValidationError."""
    _check_integer("n_users", n_users, 1, MAX_USERS)
    _check_integer("n_items", n_items, 2, MAX_ITEMS)
    _check_integer("seed", seed, 0, MAX_SEED)
    _check_integer("min_interactions", shape.pop("min_interactions"), 1, MAX_ITEMS)
    for field, value in shape.items():
        if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
                or not np.isfinite(float(value)) or float(value) < 0 or float(value) > 1e6):
            raise _bad(field, value, "must be a finite number between 0 and 1e6")
    if float(shape["interactions_per_user"]) <= 0:
        raise _bad("interactions_per_user", shape["interactions_per_user"], "must be greater than 0")


def generate_synthetic(n_users: int, n_items: int, seed: int = 0, *, interactions_per_user: float = 30.0,
                       min_interactions: int = 5, signal: float = 1.0, noise: float = 0.5,
                       taste_strength: float = 2.0, popularity_exponent: float = 0.9) -> Dataset:
    """Generate users, items and interactions with planted demographic -> genre taste; deterministic per seed."""
    _check_arguments(n_users, n_items, seed, interactions_per_user=interactions_per_user,
                     min_interactions=min_interactions, signal=signal, noise=noise, taste_strength=taste_strength,
                     popularity_exponent=popularity_exponent)
    rng = np.random.default_rng(seed)
    n_genres = len(GENRES)

    # --- segment genre effects -------------------------------------------------------------------------
    band_effect = rng.normal(0.0, 1.0, (len(AGE_BANDS), n_genres))
    sex_effect = rng.normal(0.0, 0.8, (len(SEX), n_genres))
    occupation_effect = rng.normal(0.0, 1.0, (len(OCCUPATIONS), n_genres))

    # --- users -----------------------------------------------------------------------------------------
    band_idx = rng.choice(len(AGE_BANDS), size=n_users, p=[0.35, 0.45, 0.20])
    sex_idx = rng.choice(len(SEX), size=n_users, p=[0.6, 0.4])
    occ_p = _OCCUPATION_BY_BAND / _OCCUPATION_BY_BAND.sum(axis=1, keepdims=True)
    occ_idx = np.array([rng.choice(len(OCCUPATIONS), p=occ_p[b]) for b in band_idx])
    lows = np.array([band[1] for band in AGE_BANDS])[band_idx]
    highs = np.array([band[2] for band in AGE_BANDS])[band_idx]
    ages = rng.integers(lows, highs + 1)
    zips = rng.integers(0, 100_000, size=n_users)

    segment_logits = signal * (band_effect[band_idx] + sex_effect[sex_idx] + occupation_effect[occ_idx])
    user_pref = _softmax(segment_logits + rng.normal(0.0, noise, (n_users, n_genres)))
    user_ids = [f"u{i + 1}" for i in range(n_users)]
    users = pd.DataFrame({
        "user_id": pd.Series(user_ids, dtype=object),
        "age": pd.array(ages, dtype="Int64"),
        "gender": [SEX[s] for s in sex_idx],
        "occupation": [OCCUPATIONS[o] for o in occ_idx],
        "zip_code": [f"{z:05d}" for z in zips],
    })
    segments = [segment_of(int(a), SEX[s], OCCUPATIONS[o]) for a, s, o in zip(ages, sex_idx, occ_idx)]

    # --- items -----------------------------------------------------------------------------------------
    item_genres = np.zeros((n_items, n_genres))
    genre_lists: list[list[str]] = []
    for i in range(n_items):
        count = rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15])
        chosen = rng.choice(n_genres, size=count, replace=False)
        item_genres[i, chosen] = 1.0
        genre_lists.append([GENRES[g] for g in chosen])
    years = np.clip(np.round(2024 - rng.exponential(18.0, n_items)), 1930, 2024).astype(int)
    titles = _titles(rng, n_items)
    descriptions = [
        f"A {rng.choice(_ADJECTIVES).lower()} {genres[0].lower()} story about {rng.choice(_SUBJECTS)} "
        f"{rng.choice(_SETTINGS)}."
        for genres in genre_lists
    ]
    order = rng.permutation(n_items)
    popularity = np.empty(n_items)
    popularity[order] = (np.arange(n_items) + 1.0) ** -popularity_exponent
    popularity /= popularity.sum()
    quality = rng.normal(0.0, 0.4, n_items)
    item_ids = [f"i{i + 1}" for i in range(n_items)]
    items = pd.DataFrame({
        "item_id": pd.Series(item_ids, dtype=object),
        "title": titles,
        "year": pd.array(years, dtype="Int64"),
        "genres": genre_lists,
        "description": descriptions,
        "extra": [{"synthetic": True} for _ in range(n_items)],
    })

    # --- interactions: Gumbel top-k over popularity x affinity ----------------------------------------
    genre_share = item_genres / item_genres.sum(axis=1, keepdims=True)
    n_per_user = np.round(rng.lognormal(np.log(interactions_per_user), 0.6, n_users)).astype(int)
    n_per_user = np.clip(n_per_user, min(min_interactions, n_items), max(1, n_items // 2))
    start_days = rng.uniform(0, 365, n_users)
    base = pd.Timestamp("2020-01-01", tz="UTC").value // 10**9
    u_parts, i_parts, r_parts, t_parts = [], [], [], []
    block = max(1, min(2048, _BLOCK_CELLS // n_items))
    for lo in range(0, n_users, block):
        hi = min(lo + block, n_users)
        affinity = (user_pref[lo:hi] @ genre_share.T) * n_genres  # 1.0 = indifferent
        log_aff = np.log(affinity)
        scores = np.log(popularity)[None, :] + taste_strength * log_aff + rng.gumbel(size=(hi - lo, n_items))
        k = int(n_per_user[lo:hi].max())
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_items else np.tile(np.arange(n_items), (hi - lo, 1))
        ranked = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        for row in range(hi - lo):
            u = lo + row
            chosen = ranked[row, : n_per_user[u]]
            taste = log_aff[row, chosen]
            z = (taste - taste.mean()) / (taste.std() + 1e-9)  # liking relative to the user's own picks
            raw = 3.6 + 0.8 * z + quality[chosen] + rng.normal(0.0, 0.7, len(chosen))
            offsets = np.sort(rng.uniform(0, 120 * 86400, len(chosen))).astype(np.int64)
            u_parts.append(np.full(len(chosen), u))
            i_parts.append(chosen)
            r_parts.append(np.clip(np.round(raw), 1, 5))
            t_parts.append(base + int(start_days[u] * 86400) + offsets)
    u_all = np.concatenate(u_parts)
    i_all = np.concatenate(i_parts)
    interactions = pd.DataFrame({
        "user_id": pd.Series(np.asarray(user_ids, dtype=object)[u_all], dtype=object),
        "item_id": pd.Series(np.asarray(item_ids, dtype=object)[i_all], dtype=object),
        "rating": np.concatenate(r_parts).astype("float64"),
        "weight": 1.0,
        "event_type": "rating",
        "occurred_at": pd.to_datetime(np.concatenate(t_parts), unit="s", utc=True),
    })

    segment_weights: dict[str, dict[str, float]] = {}
    for key, logits in zip(segments, segment_logits):
        if key not in segment_weights:
            segment_weights[key] = dict(zip(GENRES, _softmax(logits).round(6).tolist()))
    top = np.argsort(-user_pref, axis=1)[:, :3]
    truth = {
        "genres": list(GENRES),
        "user_segment": dict(zip(user_ids, segments)),
        "segment_genre_weights": segment_weights,
        "user_genre_weights": {uid: dict(zip(GENRES, w.round(6).tolist())) for uid, w in zip(user_ids, user_pref)},
        "user_preferred_genres": {uid: [GENRES[g] for g in t] for uid, t in zip(user_ids, top)},
        "item_popularity": dict(zip(item_ids, popularity.round(8).tolist())),
        "params": {
            "n_users": n_users, "n_items": n_items, "seed": seed, "interactions_per_user": interactions_per_user,
            "signal": signal, "noise": noise, "taste_strength": taste_strength,
            "popularity_exponent": popularity_exponent,
        },
    }
    return Dataset(name=f"synthetic-{n_users}x{n_items}-seed{seed}", catalogue="synthetic", users=users, items=items,
                   interactions=interactions, truth=truth, source=f"synthetic(seed={seed})")


def _titles(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct word titles ("The Silent River", "Echo of the Crown", ...); repeats get a sequel number."""
    titles = []
    seen: Counter[str] = Counter()
    for _ in range(n):
        adjective, noun, other = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_NOUNS)
        form = rng.integers(0, 3)
        title = (f"The {adjective} {noun}" if form == 0 else f"{noun} of the {other}" if form == 1
                 else f"{adjective} {noun}")
        seen[title] += 1
        titles.append(title if seen[title] == 1 else f"{title} {seen[title]}")
    return titles


def generate_interaction_blocks(n_users: int, n_items: int, n_interactions: int, seed: int = 0, *,
                                block_users: int = 8192, signal: float = 1.0, noise: float = 0.5,
                                taste_strength: float = 2.0, popularity_exponent: float = 0.9,
                                activity_sigma: float = 0.6) -> Iterator[dict[str, np.ndarray]]:
    """The same generative story as :func:`generate_synthetic` at scale, as numpy blocks (no pandas, no ids).

    For training benchmarks at millions of interactions: yields dicts of equal-length arrays ``user`` (0-based
    user index), ``item`` (0-based item index), ``rating`` (1-5) and ``occurred_at`` (seconds since the epoch,
    strictly increasing within a user), about ``block_users`` users at a time. Users' activity is log-normal
    (``activity_sigma``) scaled to about ``n_interactions`` in all; items are drawn with probability
    ∝ Zipf popularity × genre affinity^``taste_strength`` (segment + individual genre tastes, as above) — *with*
    replacement, so a user may have several events on one item (repeat views; training sums them). Sampling is
    by genre set: affinity depends on an item's genres only, so a user draws a genre set, then an item of that
    set by popularity (inverse CDF), which keeps the cost linear in the number of interactions.
    """
    if n_users < 1 or n_items < 2 or n_interactions < n_users:
        raise ValueError("need at least 1 user, 2 items and one interaction per user")
    rng = np.random.default_rng(seed)
    n_genres = len(GENRES)
    band_effect = rng.normal(0.0, 1.0, (len(AGE_BANDS), n_genres))
    sex_effect = rng.normal(0.0, 0.8, (len(SEX), n_genres))
    occupation_effect = rng.normal(0.0, 1.0, (len(OCCUPATIONS), n_genres))

    # items: 1-3 genres, Zipf popularity over a random order, quality
    counts = rng.choice([1, 2, 3], size=n_items, p=[0.45, 0.4, 0.15])
    ranked = np.argsort(rng.random((n_items, n_genres)), axis=1)
    genre_mask = np.zeros((n_items, n_genres), bool)
    for c in (1, 2, 3):
        rows = np.flatnonzero(counts >= c)
        genre_mask[rows, ranked[rows, c - 1]] = True
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = (np.arange(n_items) + 1.0) ** -popularity_exponent
    popularity /= popularity.sum()
    quality = rng.normal(0.0, 0.4, n_items)
    # genre sets ("classes"): items sorted by class, cumulative popularity within each class
    codes = genre_mask @ (1 << np.arange(n_genres))
    classes, item_class = np.unique(codes, return_inverse=True)
    class_share = genre_mask[np.unique(item_class, return_index=True)[1]].astype(float)
    class_share /= class_share.sum(axis=1, keepdims=True)
    class_pop = np.bincount(item_class, weights=popularity, minlength=len(classes))
    by_class = np.lexsort((np.arange(n_items), item_class))
    within = popularity[by_class] / class_pop[item_class[by_class]]
    starts = np.searchsorted(item_class[by_class], np.arange(len(classes)))
    cum_within = np.empty(n_items)
    for c in range(len(classes)):  # about 800 genre sets at most
        lo, hi = starts[c], starts[c + 1] if c + 1 < len(classes) else n_items
        cum_within[lo:hi] = np.cumsum(within[lo:hi])
    keys = item_class[by_class] + np.minimum(cum_within, 1.0) - 1e-12  # class c's items span (c, c + 1]

    # users: segment tastes, activity
    occ_p = _OCCUPATION_BY_BAND / _OCCUPATION_BY_BAND.sum(axis=1, keepdims=True)
    mean = n_interactions / n_users * np.exp(-activity_sigma ** 2 / 2)
    activity = rng.lognormal(np.log(mean), activity_sigma, n_users)
    n_per_user = np.clip(np.round(activity * n_interactions / activity.sum()), 1, max(1, n_items // 2)).astype(np.int64)
    base = pd.Timestamp("2020-01-01", tz="UTC").value // 10**9
    for lo in range(0, n_users, block_users):
        hi = min(lo + block_users, n_users)
        b = hi - lo
        band = rng.choice(len(AGE_BANDS), size=b, p=[0.35, 0.45, 0.20])
        sex = rng.choice(len(SEX), size=b, p=[0.6, 0.4])
        occ = (rng.random(b)[:, None] > np.cumsum(occ_p[band], axis=1)).sum(axis=1)
        logits = signal * (band_effect[band] + sex_effect[sex] + occupation_effect[np.minimum(occ, len(OCCUPATIONS) - 1)])
        pref = _softmax(logits + rng.normal(0.0, noise, (b, n_genres)))
        log_aff = np.log(pref @ class_share.T * n_genres)  # b × classes
        weight = class_pop[None, :] * np.exp(taste_strength * log_aff)
        cum = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
        n = n_per_user[lo:hi]
        user = np.repeat(np.arange(b), n)
        cls = _draw_rows(cum, user, rng)
        item = by_class[np.minimum(np.searchsorted(keys, cls + rng.random(len(user)), side="left"), n_items - 1)]
        taste = log_aff[user, cls]
        count = np.bincount(user, minlength=b)
        mu = np.bincount(user, weights=taste, minlength=b) / count
        sd = np.sqrt(np.maximum(np.bincount(user, weights=taste ** 2, minlength=b) / count - mu ** 2, 0.0))
        z = (taste - mu[user]) / (sd[user] + 1e-9)
        rating = np.clip(np.round(3.6 + 0.8 * z + quality[item] + rng.normal(0.0, 0.7, len(user))), 1, 5)
        rank = np.arange(len(user)) - np.repeat(np.cumsum(count) - count, count)
        gap = 120 * 86400 / count[user]
        start = base + (rng.uniform(0, 365, b) * 86400).astype(np.int64)
        occurred = start[user] + np.floor((rank + rng.random(len(user)) * 0.5) * gap).astype(np.int64)
        yield {"user": user + lo, "item": item, "rating": rating, "occurred_at": occurred}


def _draw_rows(cum: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws: for each entry of ``rows``, a column index of ``cum[row]`` (cumulative, ends at 1).

    One searchsorted for all rows: row r's cumulative values are shifted to (r, r + 1]."""
    n_cols = cum.shape[1]
    keys = (np.arange(len(cum))[:, None] + cum).ravel()
    found = np.searchsorted(keys, rows + rng.random(len(rows)), side="right")
    return np.clip(found - rows * n_cols, 0, n_cols - 1)
