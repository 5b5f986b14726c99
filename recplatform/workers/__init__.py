"""Celery side of the platform: the app (``app``), its tasks (``tasks``), reconcile (``enqueue``), sending to the
broker (``send``) and the relay that sends what ingestion wrote to the task outbox (``relay``).

Import ``recplatform.workers.app:celery_app`` to run a worker. Ingestion imports nothing from here: it writes its
messages to the task outbox (:mod:`recplatform.outbox`) in its own transaction.
"""
