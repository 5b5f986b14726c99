"""The task outbox: the Celery messages an ingestion implies, written in the ingestion's own transaction.

Ingestion never talks to the broker. It inserts its messages (embed the changed items and users, refresh the
tastes of users with new interactions, check whether training is due) into ``rec.task_outbox`` before it
commits; a worker's relay (:mod:`recplatform.workers.relay`) claims the rows and sends them. So data and its
follow-up work commit together (no "committed but the message was lost"), and a writer such as
``RecClient.add_users`` pays for one INSERT instead of importing and connecting Celery. The writer wakes the
relays (``NOTIFY``) after its Feast online write, so that a worker reads the new rows' features from Feast; rows
nobody notified are sent by the relays' poll once they are a few seconds old. All of the outbox's SQL lives here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

CHANNEL = "rec_task_outbox"
BATCH = 256  # ids per embed message
REFRESH_BATCH = 1000  # users per taste-refresh message
CANDIDATE_BATCH = 200  # users per cold-candidate refresh message (~25 ms each at 100k items)

_INSERT = "INSERT INTO rec.task_outbox (task, args, kwargs, queue) VALUES (%s, %s, %s, %s)"
_NOTIFY = f"NOTIFY {CHANNEL}"
# Oldest first; SKIP LOCKED lets several relays (one per worker) drain one outbox without sending a row twice.
_CLAIM = """
DELETE FROM rec.task_outbox WHERE id IN (
    SELECT id FROM rec.task_outbox WHERE created_at <= now() - make_interval(secs => %s)
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, task, args, kwargs, queue
"""
_PENDING = "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM rec.task_outbox"


@dataclass
class Message:
    """One Celery message, sent by task name (the sender imports no task code)."""

    task: str
    args: list
    kwargs: dict = field(default_factory=dict)
    queue: str = "default"


def embed_messages(kind: str, ids: Iterable[str], space_id: int | None = None, batch: int = BATCH) -> list[Message]:
    """Messages that embed ``ids`` of ``kind`` ('item' / 'user') in batches on the embed queue."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    task = "recplatform.embed_items" if kind == "item" else "recplatform.embed_users"
    kwargs = {} if space_id is None else {"space_id": int(space_id)}
    return [Message(task, [ids[i:i + batch]], dict(kwargs), "embed") for i in range(0, len(ids), batch)]


def _batched(task: str, ids: list[str], batch: int) -> list[Message]:
    return [Message(task, [ids[i:i + batch]]) for i in range(0, len(ids), batch)]


def refresh_messages(user_ids: list[str], batch: int = REFRESH_BATCH) -> list[Message]:
    """``refresh_user_taste`` messages for users, ``batch`` ids each (default queue)."""
    return _batched("recplatform.refresh_user_taste", user_ids, batch)


def candidate_messages(user_ids: list[str], batch: int = CANDIDATE_BATCH) -> list[Message]:
    """``refresh_cold_candidates`` messages for users, ``batch`` ids each (default queue)."""
    return _batched("recplatform.refresh_cold_candidates", user_ids, batch)


def ingestion_messages(result: Any) -> list[Message]:
    """What an ingestion implies: changed items/users → embed queue, users with new interactions →
    ``refresh_user_taste``, new interactions → ``train_if_due`` (a cheap check that trains past the threshold)."""
    messages = (embed_messages("item", result.changed_item_ids or [])
                + embed_messages("user", result.changed_user_ids or []))
    messages += refresh_messages(list(dict.fromkeys(result.touched_user_ids or [])))
    if result.interactions_added:
        messages.append(Message("recplatform.train_if_due", []))
    return messages


def write(conn, messages: list[Message]) -> int:
    """Insert ``messages`` in the caller's transaction."""
    if not messages:
        return 0
    with conn.cursor() as cur:
        cur.executemany(_INSERT, [(m.task, Jsonb(m.args), Jsonb(m.kwargs), m.queue) for m in messages])
    return len(messages)


def notify(conn) -> None:
    """Wake the relays now (delivered when the caller's transaction commits; at once in autocommit)."""
    conn.execute(_NOTIFY)


def claim(conn, limit: int, older_than: float = 0.0) -> list[tuple[int, Message]]:
    """Delete and return up to ``limit`` of the oldest rows written at least ``older_than`` seconds ago, in the
    caller's transaction: a rollback (the broker refused them) puts them back."""
    rows = conn.execute(_CLAIM, (older_than, limit)).fetchall()
    return sorted((row[0], Message(row[1], list(row[2]), dict(row[3]), row[4])) for row in rows)


def pending(conn) -> tuple[int, float | None]:
    """Rows waiting for a relay, and the age in seconds of the oldest (None when empty)."""
    count, age = conn.execute(_PENDING).fetchone()
    return int(count), (None if age is None else float(age))
