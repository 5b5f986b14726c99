"""Putting embedding work on the queue without ever blocking on a dead broker.

:func:`enqueue_ingested` is what ingestion calls after its commit; :func:`reconcile_spaces` finds every
entity whose current content hash lacks a vector (SQL anti-join) and enqueues it, and switches to a space
being backfilled once it is full. Both connect with a short timeout and give up quickly: the tables are the
truth, so anything not enqueued now is found again by the next ``reconcile`` (beat, ``recplatform embed``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from recplatform.config import Settings, get_settings, redact_url
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder

log = logging.getLogger(__name__)

BATCH = 256  # ids per embed message
CONNECT_TIMEOUT = 2.0  # seconds a producer waits for the broker before giving up


@dataclass
class Message:
    task: str
    args: list
    kwargs: dict = field(default_factory=dict)
    queue: str = "default"


@dataclass
class ReconcileResult:
    """What one reconcile did, per content space."""

    spaces: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> {items, users, batches}
    activated: list[str] = field(default_factory=list)
    skipped_busy: bool = False
    published: int = 0

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
    """Send messages over one connection; raises kombu's OperationalError when the broker does not answer
    within ``timeout`` seconds (no retries beyond that)."""
    messages = list(messages)
    if not messages:
        return 0
    app = app_for(settings)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        producer = app.amqp.Producer(conn, auto_declare=True)
        for m in messages:
            app.send_task(m.task, args=m.args, kwargs=m.kwargs, queue=m.queue, producer=producer,
                          retry=True, retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1})
    return len(messages)


def embed_messages(kind: str, ids: Iterable[str], space_id: int | None = None, batch: int = BATCH) -> list[Message]:
    """Messages that embed ``ids`` of ``kind`` ('item' / 'user') in batches on the embed queue."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    task = "recplatform.embed_items" if kind == "item" else "recplatform.embed_users"
    kwargs = {} if space_id is None else {"space_id": int(space_id)}
    return [Message(task, [ids[i:i + batch]], dict(kwargs), "embed") for i in range(0, len(ids), batch)]


def enqueue_ingested(result: Any, settings: Settings | None = None) -> int:
    """After an ingestion commit: changed items/users → embed queue, users with new interactions →
    ``refresh_user_taste``, new interactions → ``train_if_due``. Never raises; on a broker failure it logs and
    returns 0 (reconcile and the scheduled training check catch up)."""
    settings = settings or get_settings()
    messages = (embed_messages("item", getattr(result, "changed_item_ids", []) or [])
                + embed_messages("user", getattr(result, "changed_user_ids", []) or []))
    touched = list(dict.fromkeys(getattr(result, "touched_user_ids", []) or []))
    messages += [Message("recplatform.refresh_user_taste", [touched[i:i + 1000]]) for i in range(0, len(touched), 1000)]
    if getattr(result, "interactions_added", 0):
        messages.append(Message("recplatform.train_if_due", []))  # a cheap check; trains past the threshold
    if not messages:
        return 0
    started = time.perf_counter()
    try:
        sent = publish(settings, messages)
    except Exception as exc:  # noqa: BLE001 - ingestion has committed; the queue is only a trigger
        log.warning("broker %s unavailable (%s: %s) after %.1fs: %d embedding/taste messages not sent; "
                    "`recplatform embed` or the scheduled reconcile will pick the entities up",
                    redact_url(settings.celery_broker_url), type(exc).__name__, redact_url(str(exc)),
                    time.perf_counter() - started, len(messages))
        return 0
    log.info("enqueued %d messages (%d items, %d users changed; %d users touched)", sent,
             len(getattr(result, "changed_item_ids", []) or []), len(getattr(result, "changed_user_ids", []) or []),
             len(touched))
    return sent


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
