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
    from recplatform.features.server import stop_feature_server
    from recplatform.workers.process import stop_local_worker

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
        # The demo leaves a worker with its beat running (as `up` does); here nothing may change the state under
        # the examples (the beat's reconcile and retraining), and the session's other workers need the pid file.
        stop_local_worker(settings)
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    yield settings, env
    stop_feature_server(settings)


def write_movielens_csv(root: Path, n_users: int = 30, n_movies: int = 40, seed: int = 0) -> Path:
    """A small dataset in GroupLens' current CSV layout (ml-latest-small, ml-25m, ml-32m), written by the tests:
    UTF-8 with a header row, titles quoted where they hold a comma or a quote, a non-ASCII title, half-star
    ratings, ``(no genres listed)``, tags (one with a comma) and links with leading zeros; no demographics.

    Users 1-15 lean to Comedy/Romance, 16-30 to Action/Sci-Fi, so a collaborative model has something to learn."""
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    special = {
        1: ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
        2: ("American President, The (1995)", "Comedy|Drama|Romance"),
        3: ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
        4: ('"Great Performances" Cats (1998)', "Musical"),
        5: ("Pirates of the Caribbean: Dead Man's Chest (2006)", "(no genres listed)"),
    }
    genres = ["Comedy|Romance", "Action|Sci-Fi", "Drama", "Action|Thriller", "Comedy", "Sci-Fi|Adventure"]
    movies = {m: special.get(m, (f"Movie number {m}, Part {m % 3 + 1} ({1980 + m % 40})", genres[m % 6]))
              for m in range(1, n_movies + 1)}
    with open(root / "movies.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["movieId", "title", "genres"])
        out.writerows([m, title, g] for m, (title, g) in movies.items())
    with open(root / "ratings.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["userId", "movieId", "rating", "timestamp"])
        for user in range(1, n_users + 1):
            likes = "Comedy" if user <= n_users // 2 else "Action"
            chosen = rng.choice(np.arange(1, n_movies + 1), size=min(n_movies, int(rng.integers(22, 32))), replace=False)
            for k, movie in enumerate(sorted(chosen)):
                fit = likes in movies[movie][1] or (likes == "Action" and "Sci-Fi" in movies[movie][1])
                rating = float(np.clip(rng.normal(4.3 if fit else 2.4, 0.6) * 2, 1, 10).round() / 2)  # half stars
                out.writerow([user, movie, f"{rating:.1f}", 1_500_000_000 + user * 10_000 + k * 60])
    with open(root / "tags.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["userId", "movieId", "tag", "timestamp"])
        out.writerows([[2, 1, "pixar", 1500000001], [3, 1, "Pixar", 1500000002], [4, 1, "friendship", 1500000003],
                       [2, 2, "politics, romance", 1500000004], [5, 3, "Paris", 1500000005],
                       [6, 3, "quirky", 1500000006], [7, 3, "paris", 1500000007]])
    with open(root / "links.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["movieId", "imdbId", "tmdbId"])
        out.writerows([m, f"{114709 + m:07d}", "" if m == 4 else 862 + m] for m in movies)
    return root


@pytest.fixture(scope="session")
def movielens_csv(tmp_path_factory) -> Path:
    """The small CSV-layout MovieLens directory of :func:`write_movielens_csv` (``ml-latest-small`` by name)."""
    return write_movielens_csv(tmp_path_factory.mktemp("csv") / "ml-latest-small")


@pytest.fixture
def platform_env(demo_platform, monkeypatch):
    """The demo platform's settings, with the environment (CLI, client) pointing at it for one test."""
    settings, env = demo_platform
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()
