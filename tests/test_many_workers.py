"""Several real worker processes on one broker and one database: a shared backfill embeds every entity exactly
once, the ``embed`` and ``default`` queues keep their routing when different workers serve them, and a worker
killed mid-backfill loses nothing while another keeps working. Workers are the ``Worker`` subprocesses of
tests/test_workers.py (solo pool, ``hashing:64``), each against the embedded Redis in its own Redis database.
"""

from __future__ import annotations

import re
import time

from test_workers import (Worker, _database, _embedded_at, _items, _one_row_per_item, _redis_url, _users,
                          _wait_complete)
from test_workers import start_worker  # noqa: F401 - a fixture, used by name

from recplatform.embedding import spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.outbox import BATCH
from recplatform.publish import ingest_and_publish as ingest
from recplatform.workers.enqueue import app_for, reconcile_spaces


def _backfill(services_settings, tag: str, n_items: int):
    settings = _database(services_settings, tag, _redis_url(services_settings))
    ingest(items=_items(n_items, tag), settings=settings, enqueue=False)
    spaces.ensure_content_space(settings, load_encoder("hashing:64"))
    return settings, spaces.active_space(settings)


def _received(worker: Worker) -> list[str]:
    return re.findall(r"Task (recplatform\.\w+)\[[^]]+\] received", worker.text())


def test_two_concurrent_workers_embed_every_entity_exactly_once(services_settings, start_worker):
    settings, space = _backfill(services_settings, "two", 1500)
    a, b = start_worker(settings, tag="two-a"), start_worker(settings, tag="two-b")
    queued = reconcile_spaces(settings, force=True, register=False)
    assert queued.published == -(-1500 // BATCH)
    _wait_complete(settings, space.space_id)
    a.wait_tasks(1), b.wait_tasks(1)
    time.sleep(0.5)  # anything still queued (nothing should be) would be consumed now
    _one_row_per_item(settings, space.space_id)
    per_worker = [sum(batch[2] for batch in w.batches()) for w in (a, b)]
    assert sum(per_worker) == 1500, f"encoded {per_worker}: an item was embedded twice or not at all"
    assert all(n > 0 for n in per_worker), f"one worker did all the work: {per_worker}"
    assert sum(batch[3] for w in (a, b) for batch in w.batches()) == 1500  # and written once


def test_embed_and_default_queues_served_by_different_workers_keep_their_routing(services_settings, start_worker):
    settings = _database(services_settings, "route", _redis_url(services_settings))
    embedder = start_worker(settings, tag="route-embed", queues="embed")
    light = start_worker(settings, tag="route-default", queues="default")
    ingest(users=_users(8, "r"), items=_items(40, "r"), settings=settings)
    ingest(interactions=[{"user_id": f"r{u}", "item_id": f"r{(u * 5 + n) % 40}", "rating": 4}
                         for u in range(8) for n in range(4)], settings=settings)
    app_for(settings).send_task("recplatform.reconcile", queue="default")
    _wait_complete(settings)
    light.wait_tasks(3)  # refresh_user_taste, train_if_due, reconcile
    embedder_tasks, light_tasks = set(_received(embedder)), set(_received(light))
    assert embedder_tasks == {"recplatform.embed_items", "recplatform.embed_users"}, embedder_tasks
    assert {"recplatform.reconcile", "recplatform.train_if_due", "recplatform.refresh_user_taste"} <= light_tasks
    assert not light_tasks & {"recplatform.embed_items", "recplatform.embed_users"}, light_tasks


def test_one_worker_dying_mid_batch_loses_nothing_while_another_keeps_working(services_settings, start_worker):
    settings, space = _backfill(services_settings, "die", 2000)
    doomed, survivor = start_worker(settings, tag="die-a"), start_worker(settings, tag="die-b")
    reconcile_spaces(settings, force=True, register=False)
    deadline = time.monotonic() + 60
    while not doomed.batches():  # the doomed worker committed a batch and is on its next one
        assert time.monotonic() < deadline, doomed.text()[-2000:]
        time.sleep(0.01)
    doomed.kill()
    survivors = _embedded_at(settings, space.space_id)
    assert len(survivors) < 2000, "the kill was meant to land mid-backfill"
    # the surviving worker drains the queue; the killed one's un-acked batch comes back through reconcile
    # (beat's job; Redis would also redeliver it after the visibility timeout)
    deadline = time.monotonic() + 120
    while survivor.succeeded() + len(doomed.batches()) < -(-2000 // BATCH) - 1:
        assert time.monotonic() < deadline, survivor.text()[-2000:]
        time.sleep(0.05)
    reconcile_spaces(settings, force=True, register=False)
    _wait_complete(settings, space.space_id)
    _one_row_per_item(settings, space.space_id)
    final = _embedded_at(settings, space.space_id)
    assert all(final[k] == at for k, at in survivors.items()), "an item written before the kill was re-embedded"
    encoded = sum(b[2] for b in doomed.batches() + survivor.batches())
    assert encoded <= 2000 + BATCH  # at most the batch in flight at the kill was encoded twice
