"""The Celery tasks: embed items / users, refresh collaborative taste vectors, train the collaborative
space, ``reconcile`` (find what lacks a vector and enqueue it), and the public task API that other services
call by name (``ingest_events``, ``recommend``, ``recommend_batch``; contract in docs/tasks.md, work in
:mod:`recplatform.workers.api`).

Every task is idempotent (the upsert skips entities whose current content hash already has a vector),
so a redelivered or duplicated message costs a query and writes nothing. Database and broker errors
are retried with exponential backoff; the arguments are JSON lists of ids.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import psycopg
from kombu.exceptions import OperationalError as KombuOperationalError

from recplatform.config import get_settings
from recplatform.embedding import pipeline
from recplatform.retrieval import candidates
from recplatform.retrieval.item_map import map_items
from recplatform.retrieval.taste import refresh_user_taste as refresh
from recplatform.retrieval.training import TrainingInProgressError
from recplatform.retrieval.training import train_collaborative_space as train_space
from recplatform.retrieval.training import train_if_due as train_when_due
from recplatform.workers import api
from recplatform.workers.app import celery_app
from recplatform.workers.enqueue import reconcile_spaces

log = logging.getLogger(__name__)

try:  # redis-py raises its own connection errors when the broker goes away mid-task
    from redis.exceptions import ConnectionError as RedisConnectionError
except ImportError:  # pragma: no cover - redis is a dependency of celery[redis]
    RedisConnectionError = ConnectionError

RETRYING = {
    "autoretry_for": (psycopg.OperationalError, KombuOperationalError, RedisConnectionError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


@celery_app.task(name="recplatform.embed_items", **RETRYING)
def embed_items(ids: list[str], space_id: int | None = None) -> list[dict]:
    """Embed item cards into the active content space (and one being backfilled), or into ``space_id``; then
    map the items into the active collaborative space from their content vectors (no wait for a retrain)."""
    settings = get_settings()
    stats = [s.as_dict() for s in pipeline.embed_ids(pipeline.ITEM, ids, settings, space_id)]
    try:
        map_items(settings, ids)
    except (psycopg.OperationalError, KombuOperationalError, RedisConnectionError):
        raise  # retried like the embedding
    except Exception:  # noqa: BLE001 - the content vectors are written; reconcile maps what is still missing
        log.exception("mapping %d embedded items into the collaborative space failed; reconcile will retry", len(ids))
    return stats


@celery_app.task(name="recplatform.embed_users", **RETRYING)
def embed_users(ids: list[str], space_id: int | None = None) -> list[dict]:
    """Embed users' demographic prompts into the content space(s) (taste vectors are ``refresh_user_taste``);
    then precompute the neighbour votes of the batch's cold and onboarding users (also on a redelivery that wrote
    no vector, so that a retried task still refreshes them)."""
    settings = get_settings()
    stats = pipeline.embed_ids(pipeline.USER, ids, settings, space_id)
    try:
        candidates.refresh(settings, ids)
    except psycopg.OperationalError:
        raise  # retried like the embedding
    except Exception:  # noqa: BLE001 - the vectors are written; serving votes live until a refresh succeeds
        log.exception("precomputing the neighbour votes of %d embedded users failed", len(ids))
    return [s.as_dict() for s in stats]


@celery_app.task(name="recplatform.refresh_cold_candidates", **RETRYING)
def refresh_cold_candidates(ids: list[str]) -> int:
    """Recompute cold and onboarding users' precomputed neighbour votes (reconcile sends the aging rows)."""
    return candidates.refresh(get_settings(), ids)


@celery_app.task(name="recplatform.refresh_user_taste", **RETRYING)
def refresh_user_taste(ids: list[str]) -> None:
    """Fold users' new interactions into their taste vectors in the active collaborative space."""
    return _summary(refresh(list(ids), get_settings()))


@celery_app.task(name="recplatform.train_collaborative_space", soft_time_limit=3300, time_limit=3500, **RETRYING)
def train_collaborative_space() -> dict | None:
    """Train (or retrain) the collaborative space from all interactions; returns None (logged) when another
    training is running (one at a time per database, whoever started it)."""
    try:
        return _summary(train_space(get_settings()))
    except TrainingInProgressError as exc:
        log.info("recplatform.train_collaborative_space skipped: %s", exc)
        return None


@celery_app.task(name="recplatform.train_if_due", soft_time_limit=3300, time_limit=3500, **RETRYING)
def train_if_due() -> dict | None:
    """Retrain the collaborative space when enough interactions arrived since the last training."""
    return _summary(train_when_due(get_settings()))


@celery_app.task(name="recplatform.reconcile", soft_time_limit=240, time_limit=300, **RETRYING)
def reconcile(force: bool = False) -> dict:
    """Enqueue every entity whose current content hash has no vector in the active (or building) content
    space, and switch to a building space once it is full. Run by beat and by ``recplatform embed``."""
    return reconcile_spaces(get_settings(), force=force).as_dict()


# ----- the public task API (docs/tasks.md): results are stored, callers' mistakes are returned, not raised -----
PUBLIC = {**RETRYING, "ignore_result": False, "soft_time_limit": 240, "time_limit": 300}


@celery_app.task(name="recplatform.ingest_events", **PUBLIC)
def ingest_events(users: list | None = None, items: list | None = None, interactions: list | None = None) -> dict:
    """Users, items and interactions as JSON rows: validated, written all or nothing, then fanned out."""
    return api.ingest_events(get_settings(), users, items, interactions)


@celery_app.task(name="recplatform.recommend", **PUBLIC)
def recommend(**kwargs) -> dict:
    """``rec.recommend`` for one user: the same arguments, the same rows as JSON objects."""
    unknown = sorted(set(kwargs) - set(api.RECOMMEND_ARGUMENTS))
    if unknown:
        return api.error("invalid_argument", unknown[0], f"unknown argument (expected {', '.join(api.RECOMMEND_ARGUMENTS)})")
    return api.recommend(get_settings(), **kwargs)


@celery_app.task(name="recplatform.recommend_batch", **PUBLIC)
def recommend_batch(run_id: str | None = None, user_ids: list | None = None, segment: dict | None = None,
                    **params) -> dict:
    """Create or resume a batch run and enqueue its chunks (``recommend_batch_chunk``, 500 users each)."""
    result, chunks = api.start_batch(get_settings(), run_id, user_ids, segment, **params)
    for chunk in chunks:
        recommend_batch_chunk.apply_async(args=[result["run_id"], chunk], queue="default")
    return result


@celery_app.task(name="recplatform.recommend_batch_chunk", **RETRYING)
def recommend_batch_chunk(run_id: str, user_ids: list[str]) -> dict:
    """Write one chunk of a batch run (the users of it not written yet) and advance the run's progress."""
    return api.batch_chunk(get_settings(), run_id, user_ids)


def _summary(value):
    """A JSON-serialisable summary of what a wrapped function returned (results are not stored anyway)."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return {k: v for k, v in asdict(value).items() if isinstance(v, (str, int, float, bool, type(None)))}
    return str(value)
