"""Training a collaborative space: one training at a time, built beside the serving space, then activated.

:func:`train_collaborative_space` runs ALS (:mod:`.als`) on all interactions, writes item and taste vectors into a
new space (:mod:`.storage`), maps items without interactions in from their content vectors (:mod:`.linear_map`),
fits the cold-start map (:mod:`.coldstart`) and activates the space; :func:`train_if_due` is what workers run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import numpy as np
import psycopg

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.embedding.spaces import Space
from recplatform.retrieval import coldstart, item_item, sql, tuning
from recplatform.retrieval.als import CollaborativeParams, Factors, Interactions, als, augment_items, augment_users, usable
from recplatform.retrieval.item_map import lock_mapping, map_items
from recplatform.retrieval.linear_map import ridge, store_map
from recplatform.retrieval.storage import content_vectors, copy_vectors, history_hash, load_interactions
from recplatform.retrieval.taste import refresh_user_taste

log = logging.getLogger(__name__)

KEEP_SPACES = 2  # collaborative spaces kept (the active one and its predecessor); older ones are dropped
TRAIN_LOCK = 0x7265_6374_7261_696E  # advisory lock: one training at a time per database
TRAIN_LOCK_POLL_S = 0.5  # how often a waiting training tries the lock again
REFRESH_BATCH = 1000  # users per fold-in call when catching up after an activation


class TrainingInProgressError(RuntimeError):
    """Another training holds the training lock of this database (one training at a time, whoever starts it)."""


def train_collaborative_space(settings: Settings | None = None, params: CollaborativeParams | None = None,
                              *, progress: bool = False, fit_coldstart: bool = True, wait: bool = False) -> Space:
    """Train ALS on all interactions, store item and taste vectors in a new collaborative space, activate it.

    One training at a time per database, whoever starts it (CLI, Celery task, demo, ``train_if_due``): the
    call holds a session advisory lock (:data:`TRAIN_LOCK`) for its whole run. When another training holds it,
    this raises :class:`TrainingInProgressError` naming the holder's backend pid, or with ``wait=True`` waits
    for it to finish and then trains (on the data as it is then).

    Also trains the space's item-to-item weights (:mod:`.item_item`), maps items without interactions from their
    content embeddings, refreshes rec.item_priors, fits
    the demographic → taste cold-start map (:mod:`recplatform.retrieval.coldstart`), drops collaborative
    spaces older than the previous one (:func:`~recplatform.embedding.spaces.drop_space`: concurrently, in
    batches), and after activation folds in again every user whose interactions arrived during the training
    and maps items whose content vector arrived meanwhile. Raises ValueError when there are no interactions
    with a positive strength.
    """
    settings = settings or get_settings()
    with db.connect(settings, autocommit=True, vector=False) as lock:
        if wait:
            # poll, never block in pg_advisory_lock: a blocked call holds a snapshot, which the running training's
            # CREATE INDEX CONCURRENTLY waits for while that training waits for its index: a deadlock through two
            # processes that Postgres cannot detect
            while not lock.execute(sql.TRY_LOCK, (TRAIN_LOCK,)).fetchone()[0]:
                time.sleep(TRAIN_LOCK_POLL_S)
        elif not lock.execute(sql.TRY_LOCK, (TRAIN_LOCK,)).fetchone()[0]:
            holder = lock.execute(sql.LOCK_HOLDER, (TRAIN_LOCK,)).fetchone()
            raise TrainingInProgressError(
                "another collaborative training is running (database backend pid "
                f"{holder[0] if holder else '?'}); one training at a time: wait for it, or retry with wait")
        try:
            return _train(settings, params or CollaborativeParams(), progress=progress, fit_coldstart=fit_coldstart)
        finally:
            lock.execute(sql.UNLOCK, (TRAIN_LOCK,))


def _train(settings: Settings, params: CollaborativeParams, *, progress: bool, fit_coldstart: bool) -> Space:
    """The training itself; the caller holds :data:`TRAIN_LOCK`."""
    started = time.perf_counter()
    drop_orphans(settings)
    with db.connect(settings, vector=False) as conn:
        # One snapshot for the watermark and the data it covers.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute(sql.TRAINING_WORK_MEM)
            watermark = int(conn.execute(sql.INTERACTION_WATERMARK).fetchone()[0])
            data = load_interactions(conn, params)
    loaded = time.perf_counter() - started
    if not data.user_ids:
        raise ValueError("interactions: rec.interactions has no interaction with a positive strength; nothing to "
                         "train a collaborative space from")
    factors = als(data, params, progress=progress)
    scale = float(np.max(np.linalg.norm(factors.items, axis=1))) or 1.0
    gram = factors.items.T @ factors.items
    name = f"collaborative/als-f{params.factors}/{time.strftime('%Y%m%dT%H%M%S')}-{int(time.time_ns() % 10**9)}"
    space = spaces.register_space(
        settings, name, spaces.COLLABORATIVE, f"als:f{params.factors}", params.factors + 1, "",
        {**asdict(params), "scale": scale, "gram": gram.tolist(), "augmented": True,
         "n_users": len(data.user_ids), "n_items": len(data.item_ids), "final_loss": factors.history[-1],
         "interaction_watermark": watermark, "indexes": "deferred"},
    )
    stored_at = time.perf_counter()
    try:
        _store_space(settings, space, data, factors, scale, params)
    except BaseException:
        spaces.drop_space(settings, space.space_id)
        raise
    stored = time.perf_counter() - stored_at
    space = spaces.activate(settings, space.space_id)
    with db.transaction(settings) as conn:
        lock_mapping(conn, space.space_id)  # the fresh pool copies mapped vectors: none may be written meanwhile
        conn.execute(sql.REFRESH_ITEM_PRIORS)
        conn.execute(sql.ANALYZE_ITEM_PRIORS)  # every row was replaced: fresh statistics for the serving plans
        old = [r[0] for r in conn.execute(sql.OLD_COLLABORATIVE_SPACES, (KEEP_SPACES,)).fetchall()]
    for space_id in old:
        spaces.drop_space(settings, space_id)
    if fit_coldstart:
        coldstart.fit_demographic_map(settings, space)
    caught_up = catch_up(settings, watermark)
    log.info("collaborative space %s (id %s): %d users, %d items, %d factors, loss %.1f; load %.1fs, ALS "
             "%.1fs, store %.1fs, %.1fs in all; %d users folded in again and %d items mapped after activation",
             space.name, space.space_id, len(data.user_ids), len(data.item_ids), params.factors,
             factors.history[-1], loaded, factors.seconds, stored,
             time.perf_counter() - started, caught_up[0], caught_up[1])
    return space


def drop_orphans(settings: Settings) -> list[int]:
    """Drop collaborative spaces still *building*: under :data:`TRAIN_LOCK` no training is writing one, so they
    are what a training killed half-way (SIGKILL, a lost machine) left behind. Returns their ids."""
    with db.connect(settings, vector=False) as conn:
        orphans = [r[0] for r in conn.execute(sql.BUILDING_COLLABORATIVE_SPACES).fetchall()]
    for space_id in orphans:
        log.warning("dropping collaborative space %s: a training that did not finish left it building", space_id)
        spaces.drop_space(settings, space_id)
    return orphans


def catch_up(settings: Settings, watermark: int) -> tuple[int, int]:
    """After activating a space: fold in again the users with interactions above the training's watermark
    (they arrived during the training, and their refresh may have gone to the old space), and map items whose
    content vector arrived after the training read it. Returns (users refreshed, items mapped)."""
    with db.connect(settings, vector=False) as conn:
        users = [r[0] for r in conn.execute(sql.USERS_SINCE, (watermark,)).fetchall()]
    refreshed = sum(refresh_user_taste(users[n:n + REFRESH_BATCH], settings)
                    for n in range(0, len(users), REFRESH_BATCH))
    return refreshed, map_items(settings)


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
    after ingestions and on its beat schedule; a training already running elsewhere makes this a no-op. The
    hyper-parameters are those of the last ``recplatform tune`` when there was one, else the defaults."""
    settings = settings or get_settings()
    with db.connect(settings, autocommit=True, vector=False) as conn:
        if not conn.execute(sql.TRY_LOCK, (TRAIN_LOCK,)).fetchone()[0]:
            log.info("collaborative training is already running elsewhere; not starting another")
            return None
        try:
            space = spaces.active_space(settings, spaces.COLLABORATIVE)
            new = _interactions_since(conn, space)
            threshold = settings.retrain_after_interactions if space is not None else 1
            due = new >= threshold
            log.info("%d interactions since the last collaborative training (threshold %d): %s", new, threshold,
                     "training" if due else "not due")
            if not due:
                return None
            try:
                return _train(settings, tuning.tuned_params(settings) or CollaborativeParams(), progress=False,
                              fit_coldstart=True)
            except ValueError as exc:  # interactions exist, but none with a positive strength
                log.warning("collaborative training not possible: %s", exc)
                return None
        finally:
            conn.execute(sql.UNLOCK, (TRAIN_LOCK,))


def _store_space(settings: Settings, space: Space, data: Interactions, factors: Factors, scale: float,
                 params: CollaborativeParams) -> None:
    """Write the new (inactive, index-less) space's vectors in one transaction, then build its HNSW indexes
    concurrently: loading before indexing is much faster than inserting into a live index, and neither step
    takes a lock that a ``rec.recommend`` or an embed batch on the serving spaces would wait for."""
    with db.transaction(settings) as conn:
        item_ids = list(data.item_ids)
        item_vecs = augment_items(factors.items, scale)
        content_space = spaces.active_space(settings, spaces.CONTENT)
        if content_space is not None:
            c_ids, c_vecs = content_vectors(conn, content_space.space_id)
            c_index = {i: n for n, i in enumerate(c_ids)}
            trained = [n for n, i in enumerate(item_ids) if i in c_index]
            known = set(item_ids)
            missing = [r[0] for r in conn.execute(sql.ALL_ITEM_IDS).fetchall()
                       if r[0] not in known and r[0] in c_index]
            if len(trained) >= 2:
                x = c_vecs[[c_index[item_ids[n]] for n in trained]]
                w, b = ridge(x, factors.items[trained], params.map_reg)
                store_map(conn, "content_to_item", content_space.space_id, space.space_id, w, b,
                          {"lambda": params.map_reg, "n_train": len(trained), "target": "raw item factors"})
                if missing:
                    mapped = c_vecs[[c_index[i] for i in missing]] @ w + b
                    item_ids += missing
                    item_vecs = np.vstack([item_vecs, augment_items(mapped, scale)])
                    log.info("mapped %d items without interactions from content space %s", len(missing),
                             content_space.name)
        hashes = ["trained"] * len(data.item_ids) + ["mapped"] * (len(item_ids) - len(data.item_ids))
        copy_vectors(conn, "item", space.space_id, item_ids, item_vecs, hashes)
        ok = np.flatnonzero(usable(factors.users))
        if len(ok) < len(data.user_ids):
            log.warning("%d users got no usable taste vector (zero or not finite) and are skipped",
                        len(data.user_ids) - len(ok))
        lengths = np.diff(data.indptr)
        sums = np.add.reduceat(data.strength, data.indptr[:-1]) if len(data.strength) else np.zeros(0)
        user_hashes = [history_hash(int(lengths[u]), float(sums[u])) for u in ok]
        copy_vectors(conn, "user", space.space_id, [data.user_ids[u] for u in ok], augment_users(factors.users[ok]),
                     user_hashes, "taste", versions=data.versions[ok])
        item_item.store(conn, space.space_id, data, params)
    spaces.build_indexes(settings, space.space_id)
