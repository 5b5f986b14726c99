"""Ingestion with its fan-out: the embedding work goes to the task outbox in the ingestion's transaction
(:mod:`recplatform.outbox`, relayed to the broker by a worker), and after the commit the changed rows are written
to Feast's online store.

The online write may fail (feature server and store down): the failure is logged and the committed data stays:
the tables are the truth, and ``recplatform materialize`` catches up. Ingestion itself
(:mod:`recplatform.ingest`) never talks to Feast or the broker; the callers that want the fan-out (CLI, client,
demo, the task API) come through here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from recplatform import db, features, outbox
from recplatform.config import Settings, get_settings
from recplatform.ingest import IngestResult, catalogues, ingest

log = logging.getLogger(__name__)


def after_commit_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Run a step that follows the commit; a failure is logged, never raised: the data is committed, and
    ``recplatform materialize`` / ``reconcile`` repair whatever the step missed."""
    try:
        step(*args, **kwargs)
        return True
    except Exception as exc:  # noqa: BLE001 - a failed follow-up must not look like a failed ingestion
        log.warning("%s failed after the data was committed (run `recplatform materialize` / reconcile "
                    "to catch up): %s", getattr(step, "__name__", step), exc)
        return False


def publish(result: IngestResult, settings: Settings, *, online: bool = True, progress: bool = False) -> None:
    """After the commit: the Feast online write for the changed and touched entities, then wake the outbox
    relays, so that the workers read the new rows' features from Feast (a relay also sends the rows on its own
    within seconds if this notification never comes)."""
    user_ids = sorted(set(result.changed_user_ids) | set(result.touched_user_ids))
    item_ids = sorted(set(result.changed_item_ids) | set(result.touched_item_ids))
    if online and (user_ids or item_ids):
        started = time.perf_counter()
        after_commit_step(features.write_online, settings, user_ids=user_ids, item_ids=item_ids, progress=progress)
        result.timings["online"] = time.perf_counter() - started
    if result.messages_queued:
        after_commit_step(_notify_relays, settings)


def _notify_relays(settings: Settings) -> None:
    with db.connect(settings, autocommit=True, vector=False) as conn:
        outbox.notify(conn)


def ingest_and_publish(users: Any = None, items: Any = None, interactions: Any = None, *, dataset: Any = None,
                       settings: Settings | None = None, online: bool = True, enqueue: bool = True,
                       progress: bool = False, source: str | None = None, allow_mixed: bool = False) -> IngestResult:
    """:func:`recplatform.ingest.ingest` (or a whole ``dataset``), then :func:`publish` what it changed.

    ``enqueue`` (and ``Settings.enqueue_on_ingest``): the embedding and taste work goes to the task outbox with the
    data; without it, ``recplatform embed`` or the scheduled reconcile finds the entities later.

    A ``dataset`` whose catalogue differs from one already loaded raises
    :class:`recplatform.ingest.catalogues.MixedCataloguesError` before anything is written, unless
    ``allow_mixed`` (then the other catalogues are logged as a warning)."""
    settings = settings or get_settings()
    started = time.perf_counter()
    if dataset is not None:
        users, items, interactions = dataset.users, dataset.items, dataset.interactions
        source = source or dataset.source or dataset.name
        others = catalogues.check(dataset.catalogue_name, settings, allow_mixed=allow_mixed)
        if others:
            log.warning("loading %s beside %s: two catalogues in one database", dataset.catalogue_name,
                        ", ".join(r.catalogue for r in others))
    result = ingest(users, items, interactions, source=source or "<input>", settings=settings, progress=progress,
                    enqueue=enqueue and settings.enqueue_on_ingest)
    if dataset is not None:
        catalogues.record(dataset.catalogue_name, dataset.name, dataset.source, settings)
    publish(result, settings, online=online, progress=progress)
    result.seconds = time.perf_counter() - started
    return result
