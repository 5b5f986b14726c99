"""The public task API (docs/tasks.md) driven the way another service drives it: a separate, minimal Celery app
in a subprocess that cannot import recplatform sends tasks by name over the real broker to a real worker, and
reads the results from the result backend beside the broker (embedded Redis; RabbitMQ with rpc:// when it
answers on 127.0.0.1:5672).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest
from _retrieval_data import planted_database
from test_workers import Worker, _rabbitmq_answers, _redis_url

from recplatform import batch, db, features
from recplatform.client import RecClient
from recplatform.config import result_backend_for
from recplatform.workers import api

# The caller: only celery; importing recplatform is made impossible, not just avoided.
CALLER = r"""
import json, sys
class NoRecplatform:
    def find_spec(self, name, path=None, target=None):
        if name == "recplatform" or name.startswith("recplatform."):
            raise ImportError("the calling service must not import recplatform")
sys.meta_path.insert(0, NoRecplatform())
from celery import Celery
broker, backend, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = Celery("caller", broker=broker, backend=backend)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                task_routes={"recplatform.*": {"queue": "default"}})
out = []
for call in calls:
    result = app.send_task(call["name"], kwargs=call["kwargs"], task_id=call.get("task_id"))
    out.append(result.get(timeout=call.get("timeout", 90)))
    if call.get("forget"):
        result.forget()  # so that a second message with the same id is waited for, not read from the backend
assert not any(m == "recplatform" or m.startswith("recplatform.") for m in sys.modules)
print(json.dumps(out))
"""


def call(broker: str, *calls: dict, timeout: float = 240) -> list[dict]:
    """Send ``calls`` ({name, kwargs[, task_id]}) from the minimal app; their results, in order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECPLATFORM_") and k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", CALLER, broker, result_backend_for(broker), json.dumps(list(calls))],
                         capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def task(name: str, **kwargs) -> dict:
    return {"name": f"recplatform.{name}", "kwargs": kwargs}


@pytest.fixture(scope="module")
def platform(services_settings, tmp_path_factory):
    """A planted database with a trained collaborative space and one real worker over the embedded Redis."""
    settings, dataset, _cold = planted_database(services_settings, "taskapi", n_users=120, n_items=150, n_cold=10)
    settings = settings.model_copy(update={"broker_url": _redis_url(services_settings)})
    features.apply(settings)
    worker = Worker(settings, "hashing:64", tmp_path_factory.mktemp("taskapi"), "api").start()
    yield settings, dataset, worker
    worker.stop()


def _counts(settings) -> tuple[int, int, int]:
    with db.connect(settings) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM rec.users), (SELECT count(*) FROM rec.items), "
                            "(SELECT count(*) FROM rec.interactions)").fetchone()


def test_ingest_events_all_or_nothing_named_errors_and_idempotent_redelivery(platform):
    settings, _dataset, worker = platform
    users = [{"user_id": f"api-u{k}", "age": 20 + k, "gender": "F", "occupation": "writer", "zip_code": "10001"}
             for k in range(3)]
    items = [{"item_id": f"api-i{k}", "title": f"Task API film {k}", "year": 1990 + k, "genres": ["Drama"]}
             for k in range(4)]
    events = [{"user_id": f"api-u{k}", "item_id": f"api-i{k}", "rating": 4, "occurred_at": "2026-01-02T03:04:05Z"}
              for k in range(3)]
    before = _counts(settings)

    bad_items = [dict(i) for i in items]
    bad_items[2]["year"] = "nineteen"
    no_time = [dict(events[0], occurred_at=None)]
    unknown = [dict(events[0], item_id="nope")]
    bad, untimed, dangling = call(settings.celery_broker_url,
                                  task("ingest_events", users=users, items=bad_items, interactions=events),
                                  task("ingest_events", interactions=no_time),
                                  task("ingest_events", users=users, interactions=unknown))
    assert bad["contract_version"] == api.CONTRACT_VERSION
    assert bad["error"]["type"] == "invalid_rows" and bad["error"]["argument"] == "items"
    assert bad["error"]["errors"] == [{"source": "items", "row": 3, "field": "year", "reason": "must be an integer",
                                       "value": "nineteen"}]
    assert untimed["error"]["errors"][0]["field"] == "occurred_at"
    assert dangling["error"]["errors"][0] | {"reason": ""} == {"source": "interactions", "row": 1, "field": "item_id",
                                                               "reason": "", "value": "nope"}
    assert _counts(settings) == before, "a rejected call wrote something"

    # The same message delivered twice (same task id, as a broker redelivery does): the second writes nothing.
    message = dict(task("ingest_events", users=users, items=items, interactions=events), task_id="redelivered-1",
                   forget=True)
    first, second = call(settings.celery_broker_url, message, message)
    assert (first["users_inserted"], first["items_inserted"], first["interactions_added"]) == (3, 4, 3)
    assert (second["users_inserted"], second["items_inserted"], second["interactions_added"]) == (0, 0, 0)
    assert second["users_updated"] == 0 and second["items_updated"] == 0 and second["interactions_updated"] in (0, 3)
    assert _counts(settings) == (before[0] + 3, before[1] + 4, before[2] + 3)
    assert "Retry in" not in worker.text()  # bad input is answered, never retried
    _settle(settings, [i["item_id"] for i in items])


def _settle(settings, item_ids: list[str], timeout: float = 90) -> None:
    """Wait for the work an ingestion queued (the outbox relayed, the new items embedded and mapped into the
    collaborative space), so that the next test compares two reads of data that no longer changes."""
    deadline = time.monotonic() + timeout
    with db.connect(settings, autocommit=True) as conn:
        while True:
            waiting, mapped = conn.execute(
                "SELECT (SELECT count(*) FROM rec.task_outbox), (SELECT count(*) FROM rec.item_embeddings e "
                "WHERE e.space_id = rec.active_space_id('collaborative') AND e.item_id = ANY(%s))",
                (item_ids,)).fetchone()
            if waiting == 0 and mapped == len(item_ids):
                return
            assert time.monotonic() < deadline, f"{waiting} messages in the outbox, {mapped} items mapped"
            time.sleep(0.2)


def test_recommend_returns_the_clients_rows_and_structured_errors(platform):
    settings, _dataset, _worker = platform
    with RecClient(settings) as client:
        warm = client.recommend("u50", 5, genres=["Drama", "Comedy"], years=(1950, None))
        cold = client.recommend("u3", 4, strategy="neighbors_vote")
    rows, cold_rows, unknown, bad_k, bad_year, extra = call(
        settings.celery_broker_url,
        task("recommend", user_id="u50", k=5, genres=["Drama", "Comedy"], min_year=1950),
        task("recommend", user_id="u3", k=4, strategy="neighbors_vote"),
        task("recommend", user_id="nobody", k=5),
        task("recommend", user_id="u50", k=0),
        task("recommend", user_id="u50", min_year=2000, max_year=1990),
        task("recommend", user_id="u50", kk=3))
    as_dicts = [{"rank": r.rank, "item_id": r.item_id, "title": r.title, "score": r.score, "source": r.source}
                for r in warm]
    assert rows["contract_version"] == api.CONTRACT_VERSION and rows["user_id"] == "u50"
    assert rows["rows"] == as_dicts and len(as_dicts) == 5
    assert [r["item_id"] for r in cold_rows["rows"]] == [r.item_id for r in cold]
    assert unknown["error"]["type"] == "unknown_user" and unknown["error"]["argument"] == "user_id"
    assert (bad_k["error"]["type"], bad_k["error"]["argument"]) == ("invalid_argument", "k")
    assert bad_year["error"]["argument"] == "min_year/max_year"
    assert extra["error"]["argument"] == "kk"


def test_recommend_batch_segment_list_progress_and_resume(platform):
    settings, dataset, _worker = platform
    users = {u["user_id"]: u for u in dataset.users.to_dict("records")}
    segment = {"min_age": 25, "max_age": 44, "gender": "M"}
    expected = sorted(u for u, r in users.items() if r["gender"] == "M" and 25 <= r["age"] <= 44)
    assert len(expected) > 3

    # A run interrupted after its first chunk (written in-process here, as a worker would before dying) ...
    run, chunks = batch.start_run(settings, "campaign-1", segment=segment, params={"k": 3}, chunk=2)
    assert run.total == len(expected) and run.done == 0 and run.status == "running"
    batch.write_chunk(settings, "campaign-1", chunks[0])
    with db.connect(settings) as conn:
        first = dict(conn.execute("SELECT user_id || '/' || rank, created_at FROM rec.batch_recommendations "
                                  "WHERE run_id = 'campaign-1'").fetchall())
    assert len(first) == 6

    # ... resumed by the same run_id from the outside: only the rest is written; then a list run and errors.
    resumed, listed, mismatch, bad_segment, unknown = call(
        settings.celery_broker_url,
        task("recommend_batch", run_id="campaign-1", segment=segment, k=3),
        task("recommend_batch", run_id="list-1", user_ids=["u60", "u61", "u3"], k=2, exclude_seen=False),
        task("recommend_batch", run_id="campaign-1", segment=segment, k=4),
        task("recommend_batch", run_id="seg-2", segment={"age": 3}),
        task("recommend_batch", run_id="list-2", user_ids=["u60", "ghost"]))
    assert resumed["contract_version"] == api.CONTRACT_VERSION
    assert (resumed["run_id"], resumed["total"], resumed["done"], resumed["chunks"]) == \
        ("campaign-1", len(expected), 2, 1)
    assert listed["total"] == 3
    assert (mismatch["error"]["type"], mismatch["error"]["argument"]) == ("invalid_argument", "run_id")
    assert bad_segment["error"]["argument"] == "segment.age"
    assert (unknown["error"]["type"], unknown["error"]["argument"]) == ("unknown_user", "user_ids")

    for run_id, total in (("campaign-1", len(expected)), ("list-1", 3)):
        worker_done = _wait_run(settings, run_id)
        assert (worker_done.status, worker_done.done, worker_done.total) == ("done", total, total)
        assert worker_done.finished_at is not None
    with db.connect(settings) as conn:
        written = conn.execute("SELECT user_id, count(*), min(rank), max(rank) FROM rec.batch_recommendations "
                               "WHERE run_id = 'campaign-1' GROUP BY user_id ORDER BY user_id").fetchall()
        again = dict(conn.execute("SELECT user_id || '/' || rank, created_at FROM rec.batch_recommendations "
                                  "WHERE run_id = 'campaign-1' AND user_id = ANY(%s)", (chunks[0],)).fetchall())
        listed_rows = conn.execute("SELECT user_id, rank, item_id, score, source FROM rec.batch_recommendations "
                                   "WHERE run_id = 'list-1' AND user_id = 'u60' ORDER BY rank").fetchall()
    assert [w[0] for w in written] == expected and all(w[1:] == (3, 1, 3) for w in written)
    assert again == first, "a resumed run rewrote users it had already written"
    with RecClient(settings) as client:
        direct = client.recommend("u60", 2, exclude_seen=False)
    assert [(r[2], r[4]) for r in listed_rows] == [(r.item_id, r.source) for r in direct]

    # Analysts read the results with the read-only role.
    with psycopg.connect(settings.reader_url) as reader:
        n = reader.execute("SELECT count(*) FROM rec.batch_recommendations b JOIN rec.batch_runs r USING (run_id) "
                           "WHERE r.status = 'done'").fetchone()[0]
    assert n == 3 * len(expected) + 2 * 3


def _wait_run(settings, run_id: str, timeout: float = 120) -> batch.Run:
    deadline = time.monotonic() + timeout
    while (run := batch.get_run(settings, run_id)).status != "done":
        assert time.monotonic() < deadline, f"run {run_id} not done after {timeout}s: {run}"
        time.sleep(0.1)
    return run


def test_recommend_and_ingest_over_rabbitmq(platform, tmp_path):
    if not _rabbitmq_answers():
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672 (guest/guest); the Redis tests cover the API")
    settings, _dataset, _worker = platform
    amqp = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:5672//"})
    worker = Worker(amqp, "hashing:64", tmp_path, "amqp-api").start()
    try:
        rows, bad = call(amqp.celery_broker_url, task("recommend", user_id="u50", k=3),
                         task("ingest_events", items=[{"item_id": "rmq", "title": ""}]))
    finally:
        worker.stop()
    assert len(rows["rows"]) == 3 and rows["contract_version"] == api.CONTRACT_VERSION
    assert bad["error"]["errors"][0]["field"] == "title"
