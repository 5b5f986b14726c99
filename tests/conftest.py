"""Shared fixtures: one real embedded Postgres+pgvector and Redis per test run, a fresh database per test.

Nothing is mocked: every database test talks to PostgreSQL 18 + pgvector over its unix socket.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from recplatform import db, services
from recplatform.config import Settings, get_settings

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _restore_recplatform_environment():
    """Code under test exports settings into os.environ (for workers and Feast); undo it after each test so
    one test's database or port never becomes the next test's default."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("RECPLATFORM_")}
    yield
    for key in [k for k in os.environ if k.startswith("RECPLATFORM_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def services_settings():
    """Embedded Postgres and Redis started once for the whole run under a temporary state directory."""
    state = Path(tempfile.mkdtemp(prefix="recplat-"))
    settings = Settings(state_dir=state)
    services.up(settings)
    yield settings
    services.down(settings)
    shutil.rmtree(state, ignore_errors=True)


def _env_for(settings: Settings) -> dict[str, str]:
    return {
        "RECPLATFORM_STATE_DIR": str(settings.state_dir),
        "RECPLATFORM_DATABASE_NAME": settings.database_name,
    }


@pytest.fixture
def make_db(services_settings, monkeypatch):
    """Factory: a new, migrated database on the shared server; the environment points at it too."""

    def _make(prefix: str = "t", migrate: bool = True) -> Settings:
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        settings = services_settings.model_copy(update={"database_name": name})
        services.ensure_database(settings)
        for key, value in _env_for(settings).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        if migrate:
            db.migrate(settings)
        return settings

    yield _make
    get_settings.cache_clear()


@pytest.fixture
def db_settings(make_db) -> Settings:
    """A fresh migrated database for one test."""
    return make_db()


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (../shared/data/ml-100k is absent)")
    return ML100K


@pytest.fixture(scope="session")
def demo_platform(services_settings):
    """The state the README's examples run against: ``recplatform demo`` (its code, in this process) on a small
    synthetic dataset, with the fast ``hashing:64`` encoder and a Redis database of its own as the broker.

    Returns ``(settings, env)``: the ``RECPLATFORM_*`` variables that point the CLI and the client at it."""
    from recplatform.cli import demo
    from recplatform.config import configure_environment

    from test_workers import _redis_url

    settings = services_settings.model_copy(update={"database_name": f"demo_{os.getpid()}", "model": "hashing:64",
                                                    "broker_url": _redis_url(services_settings)})
    env = {**_env_for(settings), "RECPLATFORM_MODEL": settings.model, "RECPLATFORM_BROKER_URL": settings.broker_url}
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        get_settings.cache_clear()
        configure_environment(settings)
        demo.run(settings, demo.DemoOptions(users=200, items=150))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    return settings, env
