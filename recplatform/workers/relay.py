"""The outbox relay: sends the messages ingestion wrote to ``rec.task_outbox`` to the broker.

Every worker runs one, as a thread of its main process (started on ``worker_ready``). It ``LISTEN``s on the
outbox channel: a writer notifies after its commit and its Feast online write, and the relay sends at once. Every
``poll`` seconds it also sends the rows at least that old that nobody notified (a writer that died after its
commit, a relay that was down). A batch of rows is deleted and sent in one transaction: if the broker refuses,
the transaction rolls back and the rows wait for the next try. Delivery is at least once (a crash between the
send and the commit sends a batch again); every task it sends is idempotent. Several relays share one outbox
through ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import os
import threading

from recplatform import db, outbox
from recplatform.config import Settings, redact_url
from recplatform.workers.send import send

log = logging.getLogger(__name__)

CLAIM_BATCH = 500  # rows sent per transaction
POLL_SECONDS = 5.0  # drain this often even without a notification
RETRY_SECONDS = (1.0, 30.0)  # back-off after a failure: first wait, longest wait


def relay_pending(conn, app, *, limit: int = CLAIM_BATCH, older_than: float = 0.0) -> int:
    """Send the outbox rows at least ``older_than`` seconds old to ``app``'s broker, ``limit`` rows per
    transaction; returns how many were sent. ``conn`` is an autocommit connection; a broker error propagates
    after its batch rolled back."""
    sent = 0
    while True:
        with conn.transaction():
            claimed = outbox.claim(conn, limit, older_than)
            if claimed:
                send(app, [message for _, message in claimed])
        sent += len(claimed)
        if len(claimed) < limit:
            return sent


class OutboxRelay(threading.Thread):
    """A daemon thread that relays the outbox until :meth:`stop`; it reconnects and backs off on failures."""

    def __init__(self, settings: Settings, app, *, poll: float = POLL_SECONDS) -> None:
        super().__init__(name="recplatform-outbox-relay", daemon=True)
        self.settings, self.app, self.poll = settings, app, poll
        self._stopping = threading.Event()

    def stop(self, timeout: float = 0.5) -> None:
        """Ask the thread to end; wait at most ``timeout`` seconds (it may be waiting up to ``poll`` seconds for a
        notification; a daemon thread cut off at exit loses nothing: its open claim rolls back)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        wait = RETRY_SECONDS[0]
        while not self._stopping.is_set():
            try:
                with db.connect(self.settings, autocommit=True, vector=False) as conn:
                    conn.execute(f"LISTEN {outbox.CHANNEL}")
                    log.info("outbox relay listening (worker pid %s)", os.getpid())
                    older_than = 0.0  # first everything waiting, then what a notification or the poll brings
                    while not self._stopping.is_set():
                        sent = relay_pending(conn, self.app, older_than=older_than)
                        if sent:
                            log.info("outbox relay: sent %d messages", sent)
                        wait = RETRY_SECONDS[0]
                        notified = any(True for _ in conn.notifies(timeout=self.poll, stop_after=1))
                        older_than = 0.0 if notified else self.poll
            except Exception as exc:  # noqa: BLE001 - the relay must outlive a restarting database or broker
                reason = (redact_url(str(exc)).splitlines() or [""])[0]
                log.warning("outbox relay: %s: %s; retrying in %.0fs (the rows stay in rec.task_outbox)",
                            type(exc).__name__, reason, wait)
                self._stopping.wait(wait)
                wait = min(wait * 2, RETRY_SECONDS[1])


_relays: list[OutboxRelay] = []


def start(settings: Settings, app) -> OutboxRelay:
    """Start this process's relay (once), sending with the Celery ``app``."""
    if not _relays or not _relays[0].is_alive():
        _relays[:] = [OutboxRelay(settings, app)]
        _relays[0].start()
    return _relays[0]


def stop() -> None:
    for relay in _relays:
        relay.stop()
    _relays.clear()

