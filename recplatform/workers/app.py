"""The Celery app ``celery_app``: JSON only, late acks, prefetch 1, two queues (``embed`` for model work,
``default`` for light work), time limits, and a beat schedule that runs ``reconcile``.

The public task API's results go to ``Settings.celery_result_backend`` (the same Redis, database 1; or
``rpc://`` with RabbitMQ). The broker comes from ``Settings.celery_broker_url`` (embedded Redis over its unix socket by default,
``redis+socket:///…/redis.sock``; any Redis or RabbitMQ URL via ``RECPLATFORM_BROKER_URL``). Heavy state
(the encoder, Feast's FeatureStore) is created per worker *process*, after the fork: in
``worker_process_init`` for prefork children, in ``worker_ready`` for solo/threads pools. The worker's main
process also runs the task outbox relay (:mod:`recplatform.workers.relay`). Beat is single: see
:class:`SingleBeatScheduler`.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import sys
import time
from datetime import timedelta

from billiard.process import current_process
from celery import Celery, signals
from celery.beat import PersistentScheduler
from kombu import Queue

from recplatform import features
from recplatform.config import Settings, get_settings
from recplatform.embedding import pipeline
from recplatform.embedding.encoder import load_encoder
from recplatform.embedding.loader import available_cpus
from recplatform.logs import setup_logging
from recplatform.workers import relay

log = logging.getLogger(__name__)

EMBED_QUEUE, DEFAULT_QUEUE = "embed", "default"
RECONCILE_EVERY = timedelta(minutes=5)
TRAIN_CHECK_EVERY = timedelta(minutes=15)  # retrain when enough new interactions arrived (retrieval.training.train_if_due)
# An embed batch (256 texts) takes seconds on a CPU; a minute would mean something is wrong.
EMBED_SOFT_LIMIT, EMBED_HARD_LIMIT = 240, 300
# Redis redelivers an un-acked message (a worker died mid-task) after this; it must exceed every time limit.
VISIBILITY_TIMEOUT = 3600

ROUTES = {
    "recplatform.embed_items": {"queue": EMBED_QUEUE},
    "recplatform.embed_users": {"queue": EMBED_QUEUE},
    "recplatform.refresh_user_taste": {"queue": DEFAULT_QUEUE},
    "recplatform.train_collaborative_space": {"queue": DEFAULT_QUEUE},
    "recplatform.train_if_due": {"queue": DEFAULT_QUEUE},
    "recplatform.reconcile": {"queue": DEFAULT_QUEUE},
    # the public task API (docs/tasks.md): light database work, never behind a backfill on the embed queue
    "recplatform.ingest_events": {"queue": DEFAULT_QUEUE},
    "recplatform.recommend": {"queue": DEFAULT_QUEUE},
    "recplatform.recommend_batch": {"queue": DEFAULT_QUEUE},
    "recplatform.recommend_batch_chunk": {"queue": DEFAULT_QUEUE},
}


def make_app(settings: Settings, *, name: str = "recplatform") -> Celery:
    """A Celery app configured for ``settings`` (its broker, its state directory)."""
    app = Celery(name, broker=settings.celery_broker_url, backend=settings.celery_result_backend,
                 include=["recplatform.workers.tasks"])
    app.conf.update(
        # JSON only: a message is data, never code.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # Internal tasks keep their results in Postgres; the task API's tasks (docs/tasks.md) store theirs in
        # the result backend beside the broker (``Settings.celery_result_backend``) for result_expires.
        task_ignore_result=True,
        result_expires=timedelta(seconds=settings.result_expires_seconds),
        result_extended=False,
        # A message is acknowledged after the task finished; a worker that dies gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=(Queue(EMBED_QUEUE), Queue(DEFAULT_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        task_routes=ROUTES,
        task_soft_time_limit=EMBED_SOFT_LIMIT,
        task_time_limit=EMBED_HARD_LIMIT,
        # A dead broker must fail fast for producers (ingestion) and be waited for by workers.
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": 10,
            "socket_connect_timeout": 3,
        },
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        broker_channel_error_retry=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reconcile-embeddings": {
                "task": "recplatform.reconcile",
                "schedule": RECONCILE_EVERY,
                "options": {"queue": DEFAULT_QUEUE, "expires": RECONCILE_EVERY.total_seconds()},
            },
            "retrain-collaborative-when-due": {
                "task": "recplatform.train_if_due",
                "schedule": TRAIN_CHECK_EVERY,
                "options": {"queue": DEFAULT_QUEUE, "expires": TRAIN_CHECK_EVERY.total_seconds()},
            },
        },
        beat_schedule_filename=str(settings.state_dir / "celerybeat-schedule"),
        beat_scheduler="recplatform.workers.app:SingleBeatScheduler",
        timezone="UTC",
    )
    return app


# ----- beat: one at a time, and never outliving the worker it is embedded in -------------------------------
_beat_lock_fd: list[int] = []  # held open for the life of the beat process


class SingleBeatScheduler(PersistentScheduler):
    """Beat's scheduler with two guarantees, so that every periodic task is sent once:

    - embedded in a worker (``worker -B``), the beat process dies with that worker, even one killed with
      SIGKILL (``PR_SET_PDEATHSIG``): no orphaned beat keeps scheduling beside the next worker's;
    - one beat per schedule file at a time: an exclusive ``flock`` on ``<schedule>.lock``, which the kernel
      releases when its holder dies; a second beat waits and takes over when the first one ends.
    """

    def __init__(self, *args, **kwargs):
        if not kwargs.get("lazy"):
            _die_with_worker()
            _take_beat_lock(kwargs.get("schedule_filename") or "celerybeat-schedule")
        super().__init__(*args, **kwargs)


def _die_with_worker() -> None:
    proc = current_process()
    if proc.name != "Beat" or not sys.platform.startswith("linux"):
        return  # a standalone ``celery beat`` belongs to whoever supervises it
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    parent = getattr(proc, "_parent_pid", None)
    if parent and os.getppid() != parent:  # the worker died before the line above
        log.warning("beat: its worker (pid %s) is gone; exiting", parent)
        raise SystemExit(0)


def _take_beat_lock(schedule_filename: str) -> None:
    path = f"{schedule_filename}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waiting:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                log.warning("beat: another beat (pid %s) holds %s; this one waits to take over", holder, path)
                waiting = True
            time.sleep(1.0)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _beat_lock_fd.append(fd)
    if waiting:
        log.info("beat: took over %s", path)


celery_app = make_app(get_settings())


# ----- per-process state, created after the fork ------------------------------------------------------------
_pool_kind: dict = {"name": "prefork", "concurrency": 1}


def warm_up() -> None:
    """Open this process's FeatureStore and load the encoders of the spaces it will write to."""
    if _pool_kind.get("warm") == os.getpid():
        return
    _pool_kind["warm"] = os.getpid()
    settings = get_settings()
    setup_logging(settings.log_level)
    try:
        spaces = pipeline.target_spaces(settings)
        for space in spaces:
            pipeline.encoder_for(space)
        if not spaces:  # no space yet: the configured model is the one the first space will use
            load_encoder(settings.model)
    except Exception as exc:  # noqa: BLE001 - a worker must start even if the database is not migrated yet
        log.warning("encoder warm-up skipped (%s: %s); it loads on the first task", type(exc).__name__, exc)
    try:
        features.get_store(settings)
    except Exception as exc:  # noqa: BLE001 - Feast down: tasks fall back to the rec tables
        log.warning("Feast FeatureStore not created (%s: %s); tasks will read the rec tables", type(exc).__name__, exc)
    if _pool_kind["name"] == "prefork" and _pool_kind["concurrency"] > 1 and "torch" in sys.modules:
        threads = max(1, available_cpus() // _pool_kind["concurrency"])
        sys.modules["torch"].set_num_threads(threads)  # the children share the cores instead of each taking all
    log.info("worker process %s ready", os.getpid())


@signals.worker_init.connect
def _remember_pool(sender=None, **_kwargs) -> None:
    pool = getattr(sender, "pool_cls", None)
    module = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    _pool_kind["name"] = "prefork" if ("prefork" in module or "processes" in module) else str(module)
    _pool_kind["concurrency"] = int(getattr(sender, "concurrency", 1) or 1)


@signals.worker_process_init.connect
def _init_child(**_kwargs) -> None:
    warm_up()


@signals.worker_ready.connect
def _init_in_process_pool(**_kwargs) -> None:
    if _pool_kind["name"] != "prefork":  # solo / threads: tasks run in this process
        warm_up()
    relay.start(get_settings(), celery_app)  # the main process relays the task outbox to the broker


@signals.worker_shutdown.connect
def _stop_relay(**_kwargs) -> None:
    relay.stop()
