"""The embedding pipeline end to end with a real Celery worker process over a real broker.

Each test starts ``celery -A recplatform.workers.app worker`` as a subprocess against the embedded Redis of the
``services_settings`` fixture (its own Redis database number, so workers never see each other's messages) and
its own Postgres database with the Feast repo applied. The work a worker did is read from its log (the
pipeline logs "encoded N, written M" per batch) and from ``embedded_at`` of the rows, so re-embeddings are
counted, not guessed. Workers use the fast ``hashing:64`` encoder except one test that runs the real default
model end to end.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recplatform import db, services
from recplatform.config import PROJECT_ROOT, Settings, feast_env, get_settings
from recplatform.embedding import spaces
from recplatform.publish import ingest_and_publish as ingest

_db_numbers = itertools.count(1)
_names = itertools.count(1)


# ----- helpers ------------------------------------------------------------------------------------------------
def _items(n: int, prefix: str) -> list[dict]:
    genres = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Thriller", "Western"]
    return [{"item_id": f"{prefix}{k}", "title": f"{prefix.upper()} film {k}: a {genres[k % 7].lower()} tale",
             "year": 1970 + k % 40, "genres": [genres[k % 7], genres[(k * 3 + 1) % 7]],
             "description": None, "extra": {}} for k in range(n)]


def _users(n: int, prefix: str) -> list[dict]:
    jobs = ["engineer", "student", "writer", "doctor", "artist"]
    return [{"user_id": f"{prefix}{k}", "age": 18 + k % 60, "gender": "MF"[k % 2], "occupation": jobs[k % 5],
             "zip_code": f"{(k * 7919) % 100000:05d}"} for k in range(n)]


def _database(services_settings: Settings, tag: str, broker_url: str | None = None) -> Settings:
    """A fresh migrated database with the Feast repo applied; producer settings use ``broker_url``."""
    name = f"w{tag}_{os.getpid()}_{next(_names)}"
    settings = services_settings.model_copy(update={"database_name": name, "broker_url": broker_url})
    services.ensure_database(settings)
    db.migrate(settings)
    from recplatform import features

    features.apply(settings)
    return settings


def _redis_url(services_settings: Settings) -> str:
    return f"redis+socket://{services_settings.redis_socket}?virtual_host={next(_db_numbers)}"


class Worker:
    """A real ``celery worker`` subprocess (solo pool) for one database, model and broker."""

    def __init__(self, settings: Settings, model: str, log_dir: Path, tag: str, queues: str = "embed,default"):
        self.settings, self.model, self.queues = settings, model, queues
        self.log = log_dir / f"worker-{tag}-{next(_names)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Worker":
        env = {**os.environ, **feast_env(self.settings),
               "RECPLATFORM_STATE_DIR": str(self.settings.state_dir),
               "RECPLATFORM_DATABASE_NAME": self.settings.database_name,
               "RECPLATFORM_BROKER_URL": self.settings.celery_broker_url,
               "RECPLATFORM_MODEL": self.model,
               "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "recplatform.workers.app:celery_app", "worker",
                 "-Q", self.queues, "-P", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                 "-n", f"test-{self.log.stem}@%h"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while " ready." not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.text()[-3000:]}")
            time.sleep(0.1)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def batches(self) -> list[tuple[int, int, int, int]]:
        """(space_id, skipped, encoded, written) of every batch this worker's log reports."""
        pattern = r"space (\d+): \w+ requested \d+, already current (\d+), unknown \d+, encoded (\d+), written (\d+)"
        return [tuple(map(int, m)) for m in re.findall(pattern, self.text())]

    def succeeded(self) -> int:
        return len(re.findall(r"Task recplatform\.\w+\[[^]]+\] succeeded", self.text()))

    def wait_tasks(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.succeeded() < n:
            assert self.proc.poll() is None, f"worker died:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"only {self.succeeded()} of {n} tasks finished:\n{self.text()[-3000:]}"
            time.sleep(0.05)

    def idle(self, quiet: float = 1.0, timeout: float = 60) -> int:
        """Wait until no task has finished for ``quiet`` seconds (follow-up tasks of earlier work included); the
        count of finished tasks then."""
        deadline = time.monotonic() + timeout
        count, since = self.succeeded(), time.monotonic()
        while time.monotonic() - since < quiet:
            assert time.monotonic() < deadline, f"worker never went quiet:\n{self.text()[-3000:]}"
            time.sleep(0.05)
            if self.succeeded() != count:
                count, since = self.succeeded(), time.monotonic()
        return count

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, no ack, no cleanup."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def start_worker(tmp_path):
    started: list[Worker] = []

    def _start(settings: Settings, model: str = "hashing:64", tag: str = "w", queues: str = "embed,default") -> Worker:
        worker = Worker(settings, model, tmp_path, tag, queues).start()
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def shared(services_settings, tmp_path_factory):
    """One database and one hashing:64 worker shared by the tests that use disjoint id prefixes
    (a worker start costs ~8 s, mostly importing Feast)."""
    settings = _database(services_settings, "shared", _redis_url(services_settings))
    worker = Worker(settings, "hashing:64", tmp_path_factory.mktemp("shared"), "shared").start()
    yield settings, worker
    worker.stop()


def _wait_complete(settings: Settings, space_id: int | None = None, timeout: float = 120) -> spaces.Space:
    deadline = time.monotonic() + timeout
    while True:
        space = spaces.get_space(settings, space_id) if space_id else spaces.active_space(settings)
        if space is not None:
            c = spaces.completeness(settings, space.space_id)
            if c.complete and c.total:
                return space
        assert time.monotonic() < deadline, f"space not full after {timeout}s: {space and c}"
        time.sleep(0.1)


def _embedded_at(settings: Settings, space_id: int, prefix: str = "") -> dict[str, object]:
    with db.connect(settings) as conn:
        return dict(conn.execute("SELECT item_id, embedded_at FROM rec.item_embeddings "
                                 "WHERE space_id = %s AND item_id LIKE %s", (space_id, prefix + "%")).fetchall())


def _one_row_per_item(settings: Settings, space_id: int) -> None:
    with db.connect(settings) as conn:
        missing, extra = conn.execute("""
            SELECT (SELECT count(*) FROM rec.items i WHERE NOT EXISTS (SELECT 1 FROM rec.item_embeddings e
                        WHERE e.space_id = %(s)s AND e.item_id = i.item_id AND e.content_hash = i.content_hash)),
                   (SELECT count(*) - count(DISTINCT item_id) FROM rec.item_embeddings WHERE space_id = %(s)s)
        """, {"s": space_id}).fetchone()
    assert (missing, extra) == (0, 0)


# ----- the tests -------------------------------------------------------------------------------------------------
def test_ingested_items_are_embedded_once_per_content_version(shared):
    """200 items → all embedded (dimension, unit norm); re-ingest → nothing; one title → exactly that item;
    the same message delivered twice → one row and no second encode."""
    settings, worker = shared
    done_before, batches_before = worker.succeeded(), len(worker.batches())
    result = ingest(users=_users(20, "u"), items=_items(200, "i"), settings=settings)
    assert len(result.changed_item_ids) == 200
    space = _wait_complete(settings)
    assert (space.model_ref, space.dimension, space.is_active) == ("hashing:64", 64, True)
    with db.connect(settings) as conn:
        vectors = [np.asarray(r[0].to_numpy()) for r in conn.execute(
            "SELECT embedding FROM rec.item_embeddings WHERE space_id = %s", (space.space_id,))]
        dims = conn.execute("SELECT DISTINCT vector_dims(embedding) FROM rec.item_embeddings").fetchall()
    assert len(vectors) == 200 and dims == [(64,)]
    assert np.allclose(np.linalg.norm(np.stack(vectors), axis=1), 1.0, atol=1e-5)
    assert "from rec.item" not in worker.text()  # features came from Feast, not the fallback
    worker.wait_tasks(done_before + 2)
    assert sum(b[2] for b in worker.batches()[batches_before:]) == 220  # 200 items + 20 users, each encoded once
    before = _embedded_at(settings, space.space_id, "i")

    again = ingest(users=_users(20, "u"), items=_items(200, "i"), settings=settings)
    assert again.changed_item_ids == [] and again.changed_user_ids == []

    changed = _items(200, "i")
    changed[42]["title"] = "The Return of Film Forty-Two"
    result = ingest(items=changed, settings=settings)
    assert result.changed_item_ids == ["i42"]
    worker.wait_tasks(done_before + 3)
    assert worker.batches()[-1][1:] == (0, 1, 1)
    after = _embedded_at(settings, space.space_id, "i")
    assert [k for k in after if after[k] != before[k]] == ["i42"]

    # the same message twice (a redelivery): one row, the second delivery encodes nothing
    from recplatform.outbox import Message
    from recplatform.workers.enqueue import publish

    ingest(items=_items(3, "dup"), settings=settings, enqueue=False)
    message = Message("recplatform.embed_items", [["dup0", "dup1", "dup2"]], {}, "embed")
    assert publish(settings, [message, message]) == 2
    worker.wait_tasks(done_before + 5)
    assert [b[1:] for b in worker.batches()[-2:]] == [(0, 3, 3), (3, 0, 0)]
    with db.connect(settings) as conn:
        assert conn.execute("SELECT count(*) FROM rec.item_embeddings WHERE item_id LIKE 'dup%'").fetchone()[0] == 3
    assert sum(b[2] for b in worker.batches()[batches_before:]) == 220 + 1 + 3  # nothing was ever encoded twice


def test_sigkill_mid_backfill_then_restart_embeds_every_item_exactly_once(services_settings, start_worker):
    from recplatform.workers.enqueue import reconcile_spaces

    settings = _database(services_settings, "kill", _redis_url(services_settings))
    ingest(items=_items(1500, "k"), settings=settings, enqueue=False)
    spaces.ensure_content_space(settings, __import__("recplatform.embedding.encoder", fromlist=["x"])
                                .load_encoder("hashing:64"))
    queued = reconcile_spaces(settings, force=True, register=False)
    assert queued.published == 6  # 1500 items in batches of 256
    space = spaces.active_space(settings)

    worker = start_worker(settings, tag="kill")
    deadline = time.monotonic() + 60
    while not _embedded_at(settings, space.space_id):  # the first batch committed...
        assert time.monotonic() < deadline
        time.sleep(0.02)
    worker.kill()  # ...and the worker dies mid-backfill
    survivors = _embedded_at(settings, space.space_id)
    assert 0 < len(survivors) < 1500, "the kill was meant to land mid-backfill"

    restarted = start_worker(settings, tag="kill")
    reconcile_spaces(settings, force=True, register=False)  # what beat / `recplatform embed` does
    _wait_complete(settings, space.space_id)
    _one_row_per_item(settings, space.space_id)
    final = _embedded_at(settings, space.space_id)
    assert all(final[k] == at for k, at in survivors.items()), "an item embedded before the kill was re-embedded"
    restarted.wait_tasks(1)
    time.sleep(0.5)  # let any duplicate (first run's queued batches + reconcile's) be consumed
    encoded = sum(b[2] for b in worker.batches() + restarted.batches())
    assert encoded <= 1500 + 256  # at most the batch in flight at the kill was encoded twice (never written twice)


def test_ingest_never_needs_the_broker_and_reconcile_catches_up_what_was_not_queued(shared):
    """A writer whose broker URL is dead still commits, and its work reaches the worker through the task
    outbox (the worker's relay sends it); entities ingested with the queue off are found by reconcile."""
    settings, worker = shared
    dead = settings.model_copy(update={"broker_url": f"redis+socket://{settings.state_dir}/dead/redis.sock"})
    started = time.perf_counter()
    result = ingest(users=_users(10, "dn"), items=_items(50, "dn"), settings=dead)
    assert time.perf_counter() - started < 30  # a hang guard only: ingestion never waits on a broker
    assert len(result.changed_item_ids) == 50 and result.messages_queued == 2
    space = _wait_complete(settings)
    assert len(_embedded_at(settings, space.space_id, "dn")) == 50

    done_before = worker.idle()  # the first ingest's follow-up tasks (taste, votes) may still be running
    result = ingest(users=_users(5, "off"), items=_items(20, "off"), settings=settings, enqueue=False)
    assert result.messages_queued == 0
    time.sleep(0.5)
    assert worker.succeeded() == done_before  # nothing reached the worker

    from recplatform.workers.enqueue import app_for

    app_for(settings).send_task("recplatform.reconcile", queue="default")  # beat's job
    space = _wait_complete(settings)
    assert len(_embedded_at(settings, space.space_id, "off")) == 20
    with db.connect(settings) as conn:
        users = conn.execute("SELECT count(*) FROM rec.user_embeddings WHERE (user_id LIKE 'dn%%' "
                             "OR user_id LIKE 'off%%') AND space_id = %s", (space.space_id,)).fetchone()[0]
    assert users == 15
    _one_row_per_item(settings, space.space_id)


def test_new_space_backfills_while_the_old_one_serves_then_switches(services_settings, start_worker):
    settings = _database(services_settings, "switch", _redis_url(services_settings))
    worker = start_worker(settings, tag="switch")
    ingest(items=_items(900, "s"), users=_users(30, "s"), settings=settings)
    old = _wait_complete(settings)

    # A new model: `recplatform embed --wait` registers its space, enqueues the backfill, waits, then switches.
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(settings.state_dir),
           "RECPLATFORM_DATABASE_NAME": settings.database_name, "RECPLATFORM_BROKER_URL": settings.celery_broker_url,
           "RECPLATFORM_MODEL": "hashing:32", "PYTHONPATH": str(PROJECT_ROOT)}
    cli = subprocess.Popen([sys.executable, "-m", "recplatform.cli", "embed", "--wait"], env=env, cwd=PROJECT_ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []
    while cli.poll() is None:
        new = [s for s in spaces.list_spaces(settings, "content") if s.model_ref == "hashing:32"]
        if new:
            active = spaces.active_space(settings)
            samples.append((active.space_id, spaces.completeness(settings, new[0].space_id)))
        time.sleep(0.05)
    output = cli.stdout.read()
    assert cli.returncode == 0, output
    new = spaces.get_space(settings, spaces.content_space_name("hashing:32", old.template_version, 32))
    assert new.is_active and spaces.active_space(settings).space_id == new.space_id
    assert "switched" in output and "items/s" in output
    partial = [(a, c) for a, c in samples if 0 < c.done < c.total]
    assert partial, "never observed the new space half-full"
    assert all(a == old.space_id for a, c in samples if not c.complete), "switched before the new space was full"
    assert spaces.completeness(settings, new.space_id).complete
    assert spaces.get_space(settings, old.space_id).status == spaces.RETIRED


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            pass
    except OSError:
        return False
    from recplatform.services import broker_answers

    return broker_answers("amqp://guest:guest@127.0.0.1:5672//")[0]


def test_basic_flow_with_rabbitmq(services_settings, start_worker):
    if not _rabbitmq_answers():
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672 (guest/guest); the Redis tests cover the flow")
    settings = _database(services_settings, "amqp", "amqp://guest:guest@127.0.0.1:5672//")
    start_worker(settings, tag="amqp")
    ingest(items=_items(60, "r"), users=_users(5, "r"), settings=settings)
    space = _wait_complete(settings)
    _one_row_per_item(settings, space.space_id)
    assert spaces.completeness(settings, space.space_id).done == 65


@pytest.mark.slow
def test_real_default_model_end_to_end(services_settings, start_worker):
    """Ingest → queue → worker with all-MiniLM-L6-v2 → pgvector; nearest neighbours make sense."""
    settings = _database(services_settings, "model", _redis_url(services_settings))
    start_worker(settings, model=get_settings().model, tag="model")
    films = [("sw", "Star Wars", 1977, ["Action", "Adventure", "Sci-Fi"]),
             ("jedi", "Return of the Jedi", 1983, ["Action", "Adventure", "Sci-Fi"]),
             ("sense", "Sense and Sensibility", 1995, ["Drama", "Romance"]),
             ("toy", "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
             ("fargo", "Fargo", 1996, ["Crime", "Drama", "Thriller"])]
    ingest(items=[{"item_id": i, "title": t, "year": y, "genres": g} for i, t, y, g in films],
           users=_users(3, "m"), settings=settings)
    space = _wait_complete(settings, timeout=120)
    assert space.dimension == 384 and space.model_ref == get_settings().model
    with db.connect(settings) as conn:
        ranked = [r[0] for r in conn.execute(
            "SELECT e.item_id FROM rec.item_embeddings e, rec.item_embeddings q "
            "WHERE q.item_id = 'sw' AND e.item_id <> 'sw' AND e.space_id = %(s)s AND q.space_id = %(s)s "
            "ORDER BY e.embedding::vector(384) <=> q.embedding::vector(384)", {"s": space.space_id})]
        norms = conn.execute("SELECT min(vector_norm(embedding::vector(384))), max(vector_norm(embedding::vector(384))) FROM rec.item_embeddings")\
            .fetchone()
    assert ranked.index("jedi") < ranked.index("sense"), ranked
    assert ranked[0] == "jedi", ranked
    assert abs(norms[0] - 1) < 1e-3 and abs(norms[1] - 1) < 1e-3


def test_interactions_arriving_make_the_worker_train_the_collaborative_space(shared):
    """Ingested interactions queue `train_if_due`; the worker trains the first collaborative space itself,
    and the users who interacted become warm (served from taste)."""
    from recplatform.client import RecClient

    settings, worker = shared
    ingest(users=_users(12, "cf"), items=_items(20, "cf"), settings=settings)
    ingest(interactions=[{"user_id": f"cf{u}", "item_id": f"cf{(u * 3 + n) % 20}", "rating": 5}
                         for u in range(12) for n in range(6)], settings=settings)
    deadline = time.monotonic() + 60
    while spaces.active_space(settings, spaces.COLLABORATIVE) is None:
        assert time.monotonic() < deadline, "the worker did not train a collaborative space within 60 s\n" + worker.text()[-3000:]
        time.sleep(0.2)
    assert "collaborative space" in worker.text()
    _wait_complete(settings)
    with RecClient(settings) as client:
        assert {r.source for r in client.recommend("cf1", 5, exploration_share=0)} <= {"taste", "onboarding"}

    # a new user: the worker embeds them, then precomputes their neighbours' votes, which serve their list
    ingest(users=[{**_users(13, "cf")[12], "user_id": "cfnew"}], settings=settings)
    deadline = time.monotonic() + 60
    with db.connect(settings) as conn:
        while not conn.execute("SELECT count(*) FROM rec.cold_candidates WHERE user_id = 'cfnew'").fetchone()[0]:
            assert time.monotonic() < deadline, "no precomputed votes within 60 s\n" + worker.text()[-3000:]
            time.sleep(0.2)
        assert conn.execute(  # the row is current: serving reads it
            "SELECT count(*) FROM rec._cached_votes('cfnew', rec.active_space_id('content'), (SELECT neighbors "
            "FROM rec.retrieval_defaults WHERE user_type = 'cold'), 5, '{}', NULL, NULL, NULL)").fetchone()[0] == 1
        query = "SELECT item_id, source FROM rec.recommend('cfnew', 5, exploration_share => 0)"
        served = conn.execute(query).fetchall()
        conn.execute("SET rec.cold_candidates = 'off'")
        assert served == conn.execute(query).fetchall() and {s for _, s in served} == {"demographic_neighbors"}
