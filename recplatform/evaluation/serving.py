"""Platform strategies for the evaluation: load a split's training data into a fresh database and ask the
platform's own SQL function ``rec.recommend`` for every test user, so the numbers are what production serves.

Per split:

1. a new database on the same server (``<database_name>_eval_<pid>_<n>``), migrated to head;
2. :func:`recplatform.ingest.ingest` of all users (demographics), all items, and the *training* interactions
   (Feast online writes and Celery enqueueing off: the tables are the truth);
3. the content space for the encoder, filled in-process by the embedding pipeline's own batch
   (:func:`recplatform.embedding.pipeline.embed_batch`, the code the Celery tasks run; ``embed --local`` style)
   with an encoder wrapper that memoises text → vector, so the same card is not encoded once per fold;
4. :func:`recplatform.retrieval.training.train_collaborative_space` (ALS, items without interactions
   mapped from their content vectors, item priors, the demographic → taste map);
5. ``SELECT item_id FROM rec.recommend(user, k, true, NULL, NULL, NULL, strategy, popularity_weight,
   content_weight)`` for every test user and platform variant; the database is dropped afterwards.

Which platform strategy is the default comes from ``rec.retrieval_defaults`` (what ``rec.recommend`` serves
when no strategy is named): the ``cold`` row for the cold-user protocol, the ``warm`` row otherwise. Which
strategies are evaluated, and the largest k, come from the database too (``rec.strategies``, ``rec.limits()``).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import psycopg
from psycopg import sql as psql

from recplatform import db, services
from recplatform.config import Settings, get_settings
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.evaluation.protocols import Split
from recplatform.ingest import ingest
from recplatform.retrieval.taste import refresh_user_taste
from recplatform.retrieval.training import train_collaborative_space
from recplatform.retrieval.limits import Limits, read_limits

log = logging.getLogger(__name__)

# Strategies the harness does not run through rec.recommend: its global-popularity baseline ranks the same way.
BASELINE_STRATEGIES: tuple[str, ...] = ("popularity",)
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.3)
# Warm taste blended with the content space: 0 = collaborative taste only, 1 = content-space taste only.
CONTENT_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
# New items carry no popularity, so a prior can only push them down: fewer prior variants there.
NEW_ITEM_PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.1)
# Neighbourhood sizes tried for neighbors_vote besides the default (rec.retrieval_defaults.neighbors), with priors.
NEIGHBOR_COUNTS: tuple[int, ...] = (50, 200)
NEIGHBOR_PRIOR_WEIGHTS: tuple[float, ...] = (0.1, 0.3)
_counter = itertools.count(1)
FEATURES_NOTE = ("platform strategies: each split was ingested into a scratch database and embedded in-process by "
                 "the embedding pipeline's batch, which read the entity features from the rec tables (no Feast "
                 "online store in scratch databases; the same values Feast would serve)")

RECOMMEND_SQL = "SELECT item_id FROM rec.recommend(%s, %s, true, NULL, NULL, NULL, %s, %s, %s, %s)"
DEFAULTS_SQL = ("SELECT user_type, strategy, popularity_weight, content_weight, neighbors, evidence_weight, "
                "evidence_from, switch_after, exploration_share, fresh_max_interactions, neighbor_min_interactions, "
                "overlap_weight, evidence_n0, exploration_min_ratio FROM rec.retrieval_defaults")
SET_NEIGHBORS_SQL = "UPDATE rec.retrieval_defaults SET neighbors = %s WHERE user_type = 'cold'"
# Columns a variant may override (row, short label in the variant's name); "row.column" names another row's column.
OVERRIDE_COLUMNS: dict[str, str] = {"overlap_weight": "onboarding", "evidence_weight": "onboarding",
                                    "evidence_n0": "onboarding", "evidence_from": "onboarding",
                                    "neighbors": "onboarding", "neighbor_min_interactions": "cold",
                                    "switch_after": "onboarding", "exploration_min_ratio": "warm",
                                    "item_item_weight": "warm", "onboarding.item_item_weight": "onboarding"}
OVERRIDE_LABELS: dict[str, str] = {"overlap_weight": "overlap", "evidence_weight": "eta", "evidence_n0": "n0",
                                   "evidence_from": "from", "neighbors": "nb", "neighbor_min_interactions": "min",
                                   "switch_after": "switch", "exploration_min_ratio": "bar",
                                   "item_item_weight": "ii", "onboarding.item_item_weight": "onb_ii"}
HAS_RECOMMEND_SQL = ("SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                     "WHERE n.nspname = 'rec' AND p.proname = 'recommend')")


@dataclass
class ServedStrategy:
    """One platform strategy's rankings for a split's test users."""

    name: str
    strategy: str
    popularity_weight: float
    recommendations: dict[str, list[str]]
    seconds: float
    default: bool
    params: dict = field(default_factory=dict)


@dataclass
class ServedSplit:
    strategies: list[ServedStrategy]
    notes: list[str] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One way of calling rec.recommend: strategy (``default`` = none named: what rec.recommend serves by itself),
    popularity-prior weight, content weight (warm blend), neighbourhood size (cold strategies that use demographic
    neighbours) and exploration share (0 = off; None = the default of rec.retrieval_defaults). A ``shallow``
    variant is asked for 10 items only (exploration slots are the last ones of the list asked for)."""

    strategy: str
    popularity_weight: float | None = 0.0
    content_weight: float | None = None  # None: not applicable (cold-start strategies)
    neighbors: int | None = None  # None: the default of rec.retrieval_defaults
    exploration_share: float | None = 0.0
    shallow: bool = False
    # values of the onboarding row of rec.retrieval_defaults (and the cold row's neighbor_min_interactions) set in
    # a transaction that is rolled back: the onboarding parameters tried against the default
    overrides: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        name = self.strategy
        if self.neighbors:
            name += f"+n{self.neighbors}"
        if self.content_weight:
            name += f"+content{self.content_weight:g}"
        if self.popularity_weight:
            name += f"+prior{self.popularity_weight:g}"
        for column, value in self.overrides:
            name += f"+{OVERRIDE_LABELS[column]}{value:g}"
        if self.exploration_share is None:
            name += "+explore(default)"
        elif self.exploration_share:
            name += f"+explore{self.exploration_share:g}"
        return name

    @property
    def is_default(self) -> bool:
        """What rec.recommend serves with no argument but the user (the exploration share at its default)."""
        return self.strategy == "default" and self.neighbors is None and not self.overrides and (
            self.exploration_share is None or not self.shallow)

    def call(self) -> tuple[str | None, float | None, float | None]:
        """(strategy, popularity_weight, content_weight) as passed to rec.recommend."""
        if self.strategy == "default":
            return None, None, None
        return self.strategy, self.popularity_weight, self.content_weight


def strategy_name(strategy: str, weight: float, content: float | None = None) -> str:
    return Variant(strategy, weight, content).name


# Onboarding: what rec.recommend serves with no strategy (the default), the collaborative taste vector alone
# (what a user with one interaction got before the onboarding path existed), the cold default forced, and the
# onboarding path forced.
ONBOARDING_VARIANTS: tuple[Variant, ...] = (Variant("default"), Variant("taste"), Variant("neighbors_vote", 0.3),
                                            Variant("onboarding"))
# The onboarding parameters tried around the default (``--variants all``): neighbours' minimum history, the overlap
# re-weighting of neighbours, the fold-in evidence weight eta * n / (n + n0), and the item-to-item weight (from
# evidence_from items; off with evidence from 20 items is the default before revision 0025).
ONBOARDING_GRID: tuple[Variant, ...] = (
    Variant("default", None, overrides=(("neighbor_min_interactions", 5),)),
    Variant("default", None, overrides=(("neighbor_min_interactions", 20),)),
    Variant("default", None, overrides=(("neighbor_min_interactions", 100),)),
    Variant("default", None, overrides=(("overlap_weight", 0),)),
    Variant("default", None, overrides=(("overlap_weight", 1),)),
    Variant("default", None, overrides=(("overlap_weight", 0.3), ("evidence_from", 10))),
    Variant("default", None, overrides=(("evidence_weight", 0),)),
    Variant("default", None, overrides=(("evidence_weight", 0.5),)),
    Variant("default", None, overrides=(("onboarding.item_item_weight", 0), ("evidence_from", 20))),
    Variant("default", None, overrides=(("onboarding.item_item_weight", 2),)),
    Variant("default", None, overrides=(("onboarding.item_item_weight", 3),)),
)
# Warm users: the item-to-item weights of the warm and onboarding rows around their defaults (warm 0 = the taste
# vector alone; both 0 with evidence from 20 items = the defaults before revision 0025), and every user with a
# history on the warm path (strategy taste) without item-to-item.
WARM_GRID: tuple[Variant, ...] = (
    Variant("default", None, overrides=(("item_item_weight", 0),)),
    Variant("default", None, overrides=(("item_item_weight", 0), ("onboarding.item_item_weight", 0),
                                        ("evidence_from", 20))),
    Variant("default", None, overrides=(("item_item_weight", 0.5),)),
    Variant("default", None, overrides=(("item_item_weight", 2),)),
    Variant("default", None, overrides=(("onboarding.item_item_weight", 2),)),
    Variant("default", None, overrides=(("onboarding.item_item_weight", 3),)),
    Variant("default", None, overrides=(("evidence_from", 20),)),
    Variant("taste", overrides=(("item_item_weight", 0),)),
)

# The cold neighbours' minimum history tried on cold users (the cold row; the default is also served).
COLD_GRID: tuple[Variant, ...] = tuple(Variant("default", None, overrides=(("neighbor_min_interactions", m),))
                                       for m in (5, 20, 100))
# New items: exploration shares served besides the default one (the share-0 row is the deep default list).
EXPLORATION_SHARES: tuple[float, ...] = (0.2, 0.3)
# The exploration bar (exploration_min_ratio of the warm row) tried at the default share: a fresh item takes the
# slot only when its similarity is at least this multiple of the main list's k-th item's.
EXPLORATION_RATIOS: tuple[float, ...] = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
# Exploration variants are asked for 10 items (the list a user is shown; the fresh slots are its last ones), so
# their @10 metrics are what such a user sees and their @20 metrics are not comparable.
EXPLORATION_K = 10


def strategies_for(protocol: str, limit: Limits, variants: str = "all") -> list[Variant]:
    """The rec.recommend variants evaluated on a protocol; ``default`` (no strategy named) is always first. On
    cold users every strategy that serves them, on warm users those that need a user's history
    (``rec.strategies``), each with prior/content weights; the onboarding path once (it has no content blend).
    ``variants="defaults"``: only the default (and, on warm users, the taste vector alone) where a protocol has
    many variants: a quicker run that still measures what is served."""
    if protocol == "onboarding":
        return list(ONBOARDING_VARIANTS) + (list(ONBOARDING_GRID) if variants == "all" else [])
    if variants == "defaults" and protocol == "cold-user":
        return [Variant("default"), *COLD_GRID]
    if variants == "defaults" and protocol == "warm":
        return [Variant("default"), Variant("taste"), *WARM_GRID]
    if protocol == "cold-user":
        cold = [s for s in limit.cold_strategies if s not in BASELINE_STRATEGIES]
        return ([Variant("default")] + [Variant(s, w) for s in cold for w in PRIOR_WEIGHTS]
                + [Variant("neighbors_vote", w, neighbors=n) for n in NEIGHBOR_COUNTS for w in NEIGHBOR_PRIOR_WEIGHTS])
    if protocol == "new-item":
        return ([Variant("default"), Variant("taste", 0.0, 1.0), Variant("default", exploration_share=None, shallow=True)]
                + [Variant("default", exploration_share=s, shallow=True) for s in EXPLORATION_SHARES]
                + [Variant("default", exploration_share=None, shallow=True, overrides=(("exploration_min_ratio", r),))
                   for r in EXPLORATION_RATIOS])
    warm = [s for s in limit.strategies if s not in limit.cold_strategies and s != "onboarding"]
    return ([Variant("default"), Variant("onboarding")]
            + [Variant(s, w, c) for s in warm for c in CONTENT_WEIGHTS for w in PRIOR_WEIGHTS])


def available(settings: Settings | None = None) -> tuple[bool, str]:
    """Whether the platform pieces the evaluation drives are there; (False, why) otherwise."""
    settings = settings or get_settings()
    if not settings.uses_embedded_postgres:
        return False, ("the evaluation creates scratch databases and needs the embedded server "
                       "(RECPLATFORM_DATABASE_URL is set); run `recplatform evaluate --no-platform` or unset it")
    return True, ""


class MemoEncoder:
    """The platform encoder with a text → vector memo (evaluation encodes the same cards in every fold)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.model_ref = encoder.model_ref
        self.dimension = encoder.dimension
        self.device = getattr(encoder, "device", "cpu")
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            vectors = np.asarray(self._encoder.encode(todo, progress=progress), dtype=np.float32)
            self._memo.update(zip(todo, vectors))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self._memo[t] for t in texts])


_ENCODERS: dict[str | None, MemoEncoder] = {}


def memo_encoder(model: str | None) -> MemoEncoder:
    if model not in _ENCODERS:
        _ENCODERS[model] = MemoEncoder(load_encoder(model))
    return _ENCODERS[model]


def create_database(base: Settings, label: str) -> Settings:
    """A new migrated database on the base settings' server (embedded Postgres only)."""
    if not base.uses_embedded_postgres:
        raise RuntimeError("database_url: platform evaluation creates scratch databases and needs the embedded "
                           "server (unset RECPLATFORM_DATABASE_URL, or run with --no-platform)")
    name = f"{base.database_name}_eval_{os.getpid()}_{next(_counter)}_{label}"[:63]
    settings = base.model_copy(update={"database_name": name})
    services.ensure_database(settings)
    db.migrate(settings)
    return settings


def drop_database(settings: Settings) -> None:
    with psycopg.connect(settings.maintenance_url, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(settings.database_name)))


def load_split(dataset, split: Split, settings: Settings, encoder: MemoEncoder) -> dict[str, float]:
    """Ingest the split's training view, embed everything in-process, train the collaborative space."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ingest(users=dataset.users, items=dataset.items, interactions=split.train, source=f"evaluation:{split.protocol}",
           settings=settings)
    timings["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    space = spaces.ensure_content_space(settings, encoder)
    todo = spaces.missing_ids(settings, space.space_id)
    item_ids, user_ids = todo["item"], todo["user"]
    # A scratch database has no Feast online store: the batch reads the same features from the rec tables
    # (its documented fallback) and would warn once per batch; the run notes it once instead.
    pipeline_log = logging.getLogger(pipeline.__name__)
    level = pipeline_log.level
    pipeline_log.setLevel(logging.ERROR)
    try:
        for kind, ids in ((pipeline.ITEM, item_ids), (pipeline.USER, user_ids)):
            for chunk in pipeline.batches(ids, 1024):
                pipeline.embed_batch(kind, chunk, space, settings, encoder=encoder)
    finally:
        pipeline_log.setLevel(level)
    if not spaces.activate_if_complete(settings, spaces.get_space(settings, space.space_id)):
        raise RuntimeError(f"content space {space.name} is not complete after embedding")
    timings["embed"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_collaborative_space(settings)
    timings["train"] = time.perf_counter() - t0
    return timings


def _defaults(conn) -> dict[str, tuple]:
    """rec.retrieval_defaults by user type: (strategy, prior weight, content weight, neighbours, evidence weight,
    evidence from, switch after, exploration share, fresh below n interactions, neighbours' minimum items,
    overlap weight, evidence n0)."""
    return {row[0]: tuple(row[1:]) for row in conn.execute(DEFAULTS_SQL).fetchall()}


def recommend_all(settings: Settings, users: Sequence[str], strategy: str | None, weight: float | None, k: int,
                  content_weight: float | None = None, neighbors: int | None = None,
                  exploration_share: float | None = 0.0,
                  overrides: tuple[tuple[str, float], ...] = ()) -> dict[str, list[str]]:
    """rec.recommend for every user over one connection (what a client or analytics tool would run).

    ``exploration_share`` defaults to 0: the cold-user, warm and onboarding protocols measure the ranker itself;
    the new-item protocol's hybrid view measures share 0 against the default (None).

    ``neighbors`` sets the cold neighbourhood size inside a transaction that is rolled back afterwards, so the
    scratch database keeps its defaults; so do ``overrides`` (columns of :data:`OVERRIDE_COLUMNS`).
    """
    out: dict[str, list[str]] = {}
    scoped = neighbors is not None or bool(overrides)
    with db.connect(settings, autocommit=not scoped) as conn:
        if neighbors is not None:
            conn.execute(SET_NEIGHBORS_SQL, (neighbors,))
        for column, value in overrides:
            conn.execute(psql.SQL("UPDATE rec.retrieval_defaults SET {} = %s WHERE user_type = %s").format(
                psql.Identifier(column.rpartition(".")[2])), (value, OVERRIDE_COLUMNS[column]))
        for user in users:
            out[user] = [r[0] for r in conn.execute(RECOMMEND_SQL, (user, k, strategy, weight, content_weight,
                                                                        exploration_share)).fetchall()]
        if scoped:
            conn.rollback()
    return out


def serve_onboarding(dataset, split: Split, config, base: Settings | None = None) -> dict[int, ServedSplit]:
    """The onboarding protocol through the platform: train on the other users, then for each step N let each
    test user's interactions up to their N-th arrive through :func:`recplatform.ingest.ingest` and
    :func:`recplatform.retrieval.taste.refresh_user_taste` (what a worker runs after an ingestion), and ask
    ``rec.recommend`` for every variant. Returns one :class:`ServedSplit` per step."""
    base = base or get_settings()
    encoder = memo_encoder(config.model)
    settings = create_database(base, f"onboarding{split.fold}")
    notes: list[str] = [FEATURES_NOTE]
    out: dict[int, ServedSplit] = {}
    try:
        timings = load_split(dataset, split, settings, encoder)
        users = split.test_users
        ordered = split.onboarding
        position = ordered.groupby("user_id", sort=False).cumcount()
        with db.connect(settings, autocommit=True) as conn:
            onb = _defaults(conn).get("onboarding")
        done = 0
        for step in split.steps:
            t0 = time.perf_counter()
            arriving = ordered[(position >= done) & (position < step)]
            if len(arriving):
                ingest(interactions=arriving, source=f"evaluation:onboarding:{step}", settings=settings)
                refresh_user_taste(sorted(set(arriving["user_id"])), settings)
            done = step
            step_timings = {"arrive": time.perf_counter() - t0}
            if step == split.steps[0]:
                step_timings.update(timings)
            served = []
            for variant in strategies_for("onboarding", None, config.variants):
                t0 = time.perf_counter()
                strategy, weight, _ = variant.call()
                recs = recommend_all(settings, users, strategy, weight, config.max_k, overrides=variant.overrides)
                served.append(ServedStrategy(variant.name, variant.strategy, variant.popularity_weight, recs,
                                             time.perf_counter() - t0, variant.is_default,
                                             {"sql_strategy": strategy, "popularity_weight": weight,
                                              "overrides": dict(variant.overrides),
                                              "onboarding_default": list(onb) if onb else None}))
            log.info("onboarding fold %d, %d known: served %d users", split.fold, step, len(users))
            out[step] = ServedSplit(served, notes, step_timings)
        return out
    finally:
        try:
            drop_database(settings)
        except psycopg.Error as exc:
            log.warning("could not drop evaluation database %s: %s", settings.database_name, exc)


def serve_split(dataset, split: Split, config, base: Settings | None = None, *, depth: int | None = None) -> ServedSplit:
    """Every platform strategy's rankings (``depth`` items, default the largest cut-off) for one split."""
    base = base or get_settings()
    encoder = memo_encoder(config.model)
    settings = create_database(base, f"{split.protocol.replace('-', '')}{split.fold}")
    notes: list[str] = [FEATURES_NOTE]
    try:
        timings = load_split(dataset, split, settings, encoder)
        with db.connect(settings, autocommit=True) as conn:
            if not conn.execute(HAS_RECOMMEND_SQL).fetchone()[0]:
                return ServedSplit([], ["platform strategies not run: rec.recommend is not in the schema"], timings)
            defaults = _defaults(conn)
            limit = read_limits(conn)
        default_neighbors = defaults["cold"][3] if "cold" in defaults else None
        served = []
        users = split.test_users
        for variant in strategies_for(split.protocol, limit, config.variants):
            t0 = time.perf_counter()
            strategy, weight, content = variant.call()
            k = EXPLORATION_K if variant.shallow else min(depth or config.max_k, limit.max_k)
            recs = recommend_all(settings, users, strategy, weight, k, content, variant.neighbors,
                                 variant.exploration_share, variant.overrides)
            seconds = time.perf_counter() - t0
            served.append(ServedStrategy(variant.name, variant.strategy, variant.popularity_weight or 0.0, recs,
                                         seconds, variant.is_default,
                                         {"sql_strategy": strategy, "popularity_weight": weight,
                                          "content_weight": content, "exploration_share": variant.exploration_share,
                                          "k": k, "neighbors": variant.neighbors or default_neighbors,
                                          "defaults": {t: list(v) for t, v in defaults.items()}}))
            log.info("%s fold %d: %s served %d users in %.1fs", split.protocol, split.fold, variant.name,
                     len(users), seconds)
        return ServedSplit(served, notes, timings)
    finally:
        try:
            drop_database(settings)
        except psycopg.Error as exc:
            log.warning("could not drop evaluation database %s: %s", settings.database_name, exc)
