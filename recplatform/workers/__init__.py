"""Celery side of the platform: the app (``app``), its tasks (``tasks``), and enqueueing from ingestion (``enqueue``).

Import ``recplatform.workers.app:celery_app`` to run a worker; ingestion only needs
``recplatform.workers.enqueue.enqueue_ingested``, which never blocks on a dead broker.
"""
