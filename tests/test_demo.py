"""`recplatform demo` end to end in a subprocess: the README's first command, on a small synthetic dataset."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from recplatform import services
from recplatform.features.server import stop_feature_server
from recplatform.workers.process import stop_local_worker


@pytest.fixture
def demo_env(services_settings):
    """The session's services, a database of its own, and a free port for the feature server the demo starts;
    the worker and feature server it leaves running are stopped afterwards (the session's Postgres and Redis stay)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # not the session's demo database (conftest's demo_platform, which the README examples read): this test's
    # demo writes a different catalogue
    settings = services_settings.model_copy(update={"database_name": f"demo_cli_{os.getpid()}",
                                                    "feature_server_port": port})
    env = {**os.environ, "RECPLATFORM_STATE_DIR": str(settings.state_dir),
           "RECPLATFORM_DATABASE_NAME": settings.database_name, "RECPLATFORM_FEATURE_SERVER_PORT": str(port),
           "COLUMNS": "200"}
    yield settings, env
    stop_local_worker(settings, timeout=10)
    stop_feature_server(settings)


def test_demo_runs_every_step_and_serves_warm_cold_and_unstored_users(demo_env):
    settings, env = demo_env
    run = subprocess.run([sys.executable, "-m", "recplatform.cli", "demo", "--users", "80", "--items", "60"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for step in ("1. services", "4. features served by Feast", "6. train the collaborative space",
                 "8. recommendations", "demo steps"):
        assert step in out
    # u1 has a few dozen interactions: served by its taste vector, or by the onboarding path below switch_after
    assert "warm user u1" in out and ("│ taste " in out or "│ onboarding " in out)
    # the user stored a moment ago and the unstored person are served by the default cold-start path
    assert out.count("demographic_neighbors") >= 10
    assert "FROM rec.recommend('demo-newcomer', 5)" in out
    # and it leaves the platform running: a worker with its beat, and Feast's feature server
    running = {r.name: r.running for r in services.status(settings)}
    assert running["worker"] and running["beat"] and running["feature-server"], running

    again = subprocess.run([sys.executable, "-m", "recplatform.cli", "demo", "--users", "80", "--items", "60"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # a rerun changes nothing: 80 users read, 0 inserted, 0 updated
    assert re.search(r"users\s*│\s*80\s*│\s*0\s*│\s*0\s*│", again.stdout), again.stdout[-3000:]
