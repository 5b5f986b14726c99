"""Sending :class:`~recplatform.outbox.Message` s with a Celery app over one broker connection, failing fast on a
dead broker (the outbox relay and reconcile both send this way)."""

from __future__ import annotations

from collections.abc import Iterable

from recplatform.outbox import Message

CONNECT_TIMEOUT = 2.0  # seconds a producer waits for the broker before giving up


def send(app, messages: Iterable[Message], *, timeout: float = CONNECT_TIMEOUT) -> int:
    """Send messages by task name over one connection; raises kombu's OperationalError when the broker does not
    answer within ``timeout`` seconds (no retries beyond that)."""
    messages = list(messages)
    if not messages:
        return 0
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        producer = app.amqp.Producer(conn, auto_declare=True)
        for m in messages:
            app.send_task(m.task, args=m.args, kwargs=m.kwargs, queue=m.queue, producer=producer,
                          retry=True, retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1})
    return len(messages)
