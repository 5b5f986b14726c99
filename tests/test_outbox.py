"""The task outbox: ingestion's messages commit with its data; a relay sends them and deletes them, at least once.

Real Postgres and the embedded Redis. The workers that relay the outbox in production are exercised by
test_workers.py, test_many_workers.py and test_platform_up.py (their ingestions reach the workers only this way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from recplatform import db, outbox
from recplatform.config import PROJECT_ROOT
from recplatform.ingest import ValidationError, ingest
from recplatform.outbox import Message
from recplatform.workers.enqueue import app_for, queue_depth
from recplatform.workers.relay import relay_pending

USERS = [{"user_id": f"u{k}", "age": 20 + k, "gender": "F", "occupation": "writer", "zip_code": "10001"}
         for k in range(3)]
ITEMS = [{"item_id": f"i{k}", "title": f"Film {k}", "year": 1990, "genres": ["Drama"]} for k in range(4)]
QUEUE = "outbox_test"  # no worker consumes it: the messages stay countable


def _rows(settings) -> list[tuple[str, list, str]]:
    with db.connect(settings, vector=False) as conn:
        return [tuple(r) for r in conn.execute("SELECT task, args, queue FROM rec.task_outbox ORDER BY id")]


def test_ingestion_writes_its_messages_in_its_transaction_and_nothing_for_a_failed_batch(db_settings):
    ingest(users=USERS, items=ITEMS, settings=db_settings)  # enqueue off: nothing queued
    assert _rows(db_settings) == []

    interactions = [{"user_id": "u1", "item_id": "i2", "rating": 5, "occurred_at": "2026-01-01T00:00:00Z"}]
    result = ingest(users=[{**USERS[0], "age": 60}], items=[{"item_id": "i9", "title": "New", "year": 2001,
                                                             "genres": []}],
                    interactions=interactions, settings=db_settings, enqueue=True)
    assert result.messages_queued == 4
    assert _rows(db_settings) == [("recplatform.embed_items", [["i9"]], "embed"),
                                  ("recplatform.embed_users", [["u0"]], "embed"),
                                  ("recplatform.refresh_user_taste", [["u1"]], "default"),
                                  ("recplatform.train_if_due", [], "default")]

    # the second row names an unknown user: checked inside the transaction, so the users, the items and the
    # outbox rows the batch would have written are all rolled back
    with pytest.raises(ValidationError) as failed:
        ingest(users=[{**USERS[2], "age": 70}], items=[{"item_id": "i10", "title": "Newer", "genres": []}],
               interactions=[{**interactions[0], "item_id": "i10"}, {**interactions[0], "user_id": "nobody"}],
               settings=db_settings, enqueue=True)
    assert failed.value.row == 2 and failed.value.field == "user_id"
    assert len(_rows(db_settings)) == 4
    with db.connect(db_settings, vector=False) as conn:
        assert conn.execute("SELECT count(*) FROM rec.items WHERE item_id = 'i10'").fetchone()[0] == 0


def test_the_relay_sends_rows_once_and_a_dead_broker_leaves_them_in_place(db_settings):
    settings = db_settings.model_copy(update={"broker_url": f"redis+socket://{db_settings.redis_socket}"
                                                            "?virtual_host=11"})
    dead = db_settings.model_copy(update={"broker_url": f"redis+socket://{db_settings.state_dir}/no-such.sock"})
    messages = [Message("recplatform.embed_items", [[f"x{k}"]], {}, QUEUE) for k in range(5)]
    with db.connect(settings, autocommit=True, vector=False) as conn:
        with conn.transaction():
            outbox.write(conn, messages)
        before = queue_depth(settings, QUEUE)

        with pytest.raises(Exception):  # noqa: B017 - kombu's error for a socket that is not there
            relay_pending(conn, app_for(dead))
        assert outbox.pending(conn)[0] == 5  # rolled back: nothing lost
        assert relay_pending(conn, app_for(settings), older_than=60) == 0  # the poll leaves fresh rows to NOTIFY

        assert relay_pending(conn, app_for(settings), limit=2) == 5  # three transactions of at most two rows
        assert outbox.pending(conn) == (0, None)
        assert queue_depth(settings, QUEUE) == before + 5
        assert relay_pending(conn, app_for(settings)) == 0  # sent once


def test_two_relays_never_claim_the_same_row(db_settings):
    with db.connect(db_settings, autocommit=True, vector=False) as a, \
            db.connect(db_settings, autocommit=True, vector=False) as b:
        with a.transaction():
            outbox.write(a, [Message("recplatform.train_if_due", [], {}, QUEUE) for _ in range(6)])
        with a.transaction():
            first = outbox.claim(a, 4)
            with b.transaction():
                second = outbox.claim(b, 10)  # rows a holds are skipped, not waited for
        assert len(first) == 4 and len(second) == 2
        assert not {i for i, _ in first} & {i for i, _ in second}
        assert outbox.pending(a)[0] == 0


def test_add_users_in_a_fresh_process_never_imports_celery(db_settings):
    """The point of the outbox for interactive writers: one INSERT, no Celery import or broker connection."""
    code = ("import json, sys; from recplatform.client import RecClient\n"
            "user = {'user_id': 'fresh', 'age': 31, 'gender': 'F', 'occupation': 'writer', 'zip_code': '10001'}\n"
            "with RecClient() as client:\n"
            "    result = client.add_users([user], online=False)\n"
            "heavy = ('celery', 'kombu', 'redis', 'feast')\n"
            "print(json.dumps({'queued': result.messages_queued,\n"
            "                  'imported': sorted(m for m in heavy if m in sys.modules)}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"queued": 1, "imported": []}
    assert _rows(db_settings) == [("recplatform.embed_users", [["fresh"]], "embed")]
