"""Reconcile: enqueue whatever lacks a vector, without ever blocking on a dead broker.

:func:`publish` sends :class:`~recplatform.outbox.Message` s to the configured broker (through
:func:`recplatform.workers.send.send`); :func:`reconcile_spaces` finds every entity whose current content hash
lacks a vector (SQL anti-join) and enqueues it, and switches to a space being backfilled once it is full. Both
connect with a short timeout and give up quickly: the tables are the truth, so anything not enqueued now is found
again by the next ``reconcile`` (beat, ``recplatform embed``). Ingestion does not come here: it writes the task
outbox (:mod:`recplatform.outbox`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterable

from recplatform.config import Settings, get_settings
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.outbox import Message, candidate_messages, embed_messages, refresh_messages
from recplatform.retrieval import candidates
from recplatform.retrieval.item_map import map_items
from recplatform.retrieval.taste import stale_users
from recplatform.workers.send import CONNECT_TIMEOUT, send

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    """What one reconcile did, per content space."""

    spaces: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> {items, users, batches}
    activated: list[str] = field(default_factory=list)
    skipped_busy: bool = False
    published: int = 0
    stale_tastes: int = 0  # users whose taste refresh was enqueued again (taste older than their history)
    mapped_items: int = 0  # items mapped into the collaborative space from their content vectors
    aging_candidates: int = 0  # users whose precomputed neighbour votes were sent for a refresh

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=8)
def _app_for(broker_url: str, state_dir: str):
    """A producer-side Celery app for this broker (tasks are sent by name; nothing is imported)."""
    from recplatform.workers.app import (  # deferred: celery (producers send by name)
        celery_app,
        make_app,
    )

    if celery_app.conf.broker_url == broker_url:
        return celery_app
    return make_app(Settings(state_dir=state_dir, broker_url=broker_url), name="recplatform-producer")


def app_for(settings: Settings):
    return _app_for(settings.celery_broker_url, str(settings.state_dir))


def publish(settings: Settings, messages: Iterable[Message], *, timeout: float = CONNECT_TIMEOUT) -> int:
    """Send messages to this settings' broker (:func:`recplatform.workers.send.send`)."""
    return send(app_for(settings), messages, timeout=timeout)


def queue_depth(settings: Settings, queue: str = "embed", *, timeout: float = CONNECT_TIMEOUT) -> int:
    """Messages waiting (not yet delivered) in ``queue``."""
    app = app_for(settings)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return int(conn.default_channel.queue_declare(queue=queue, passive=False, durable=True,
                                                      auto_delete=False).message_count)


def reconcile_spaces(settings: Settings | None = None, *, force: bool = False, space_name: str | None = None,
                     register: bool = True) -> ReconcileResult:
    """Enqueue what the active content space (and any space being backfilled) lacks; activate a full one.

    ``register``: first make sure the space of the configured model and templates exists (a new model or
    template version starts a backfill). Unless ``force``, nothing is enqueued while the embed queue still
    holds messages (a previous reconcile's batches are still being worked through).
    """
    settings = settings or get_settings()
    out = ReconcileResult()
    if space_name is not None:
        targets = [spaces.get_space(settings, space_name)]
    else:
        if register:
            spaces.ensure_content_space(settings, load_encoder(settings.model))
        targets = pipeline.target_spaces(settings)
    out.mapped_items = map_items(settings)
    out.stale_tastes = enqueue_stale_tastes(settings)
    out.aging_candidates = enqueue_aging_candidates(settings)
    pending: list[Message] = []
    for space in targets:
        if spaces.activate_if_complete(settings, space) and not space.is_active:
            out.activated.append(space.name)
            continue
        todo = spaces.missing_ids(settings, space.space_id)
        batches = embed_messages("item", todo["item"], space.space_id) + embed_messages("user", todo["user"],
                                                                                        space.space_id)
        out.spaces[space.name] = {"items": len(todo["item"]), "users": len(todo["user"]), "batches": len(batches)}
        pending += batches
    if pending and not force and queue_depth(settings) > 0:
        out.skipped_busy = True
        log.info("reconcile: embed queue still busy; %d batches left for the next run", len(pending))
        return out
    out.published = publish(settings, pending)
    log.info("reconcile: %s; enqueued %d batches%s", out.spaces or "nothing missing", out.published,
             f"; activated {out.activated}" if out.activated else "")
    return out


def enqueue_stale_tastes(settings: Settings) -> int:
    """Enqueue a taste refresh for every user whose taste is older than their newest interaction (a refresh
    message lost while the broker was down, or folded into a space that was replaced). Returns the user count."""
    users = stale_users(settings)
    if users:
        publish(settings, refresh_messages(users))
        log.info("reconcile: %d users have a taste older than their history; refreshes enqueued", len(users))
    return len(users)


def enqueue_aging_candidates(settings: Settings) -> int:
    """Enqueue a refresh of the precomputed neighbour votes past half their allowed age (serving stops reading a
    row at its full age and votes live). Returns the user count."""
    users = candidates.aging_users(settings)
    if users:
        publish(settings, candidate_messages(users))
        log.info("reconcile: %d users' precomputed neighbour votes are aging; refreshes enqueued", len(users))
    return len(users)
