"""Every code block of the README, run against the state the README says it runs in: after `recplatform demo`.

The SQL runs as the read-only role ``rec_reader``, the Python client snippet through ``exec`` with the test
platform's settings in the environment, the Celery snippet against a real worker over the real broker, and the
CLI lines of the ``bash`` blocks through the command line itself. Two bash blocks are not run here, each for a
reason the test names: the two set-up commands (CI runs them: ``.ci/run``) and the external-services block
(it points the platform at other servers).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from recplatform.cli import app
from recplatform.client import RecClient
from recplatform.config import result_backend_for
from recplatform.embedding import pipeline

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README.read_text(encoding="utf-8")) if kind == lang]


def why_not_run(block: str) -> str | None:
    """Why a bash block is not run against the demo's platform (None: it is)."""
    if "pip install" in block:
        return "set-up commands: CI runs them (.ci/run)"
    if "export RECPLATFORM_DATABASE_URL" in block:
        return "points the platform at external servers"
    return None


def cli_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        if why_not_run(block) is None:
            lines += [line.split(" #")[0].strip() for line in block.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")]
    return lines


def sql_statements() -> list[str]:
    text = "\n".join(line.split("--")[0] for block in blocks("sql") for line in block.splitlines())
    return [s.strip() for s in text.split(";") if s.strip()]


def test_the_readme_has_the_blocks_this_test_runs():
    skipped = [why_not_run(b) for b in blocks("bash") if why_not_run(b)]
    assert sorted(skipped) == ["points the platform at external servers", "set-up commands: CI runs them (.ci/run)"]
    assert len(sql_statements()) >= 3 and len(blocks("python")) == 2 and len(cli_lines()) >= 5
    assert all(line.startswith("recplatform ") for line in cli_lines())


def test_the_two_setup_commands_use_separate_venvs():
    """`python3 -m venv .venv` twice reuses the first venv: the test command must not share the demo's."""
    setup = next(b for b in blocks("bash") if "pip install" in b)
    venvs = re.findall(r"python3 -m venv (\S+)", setup)
    assert len(venvs) == 2 and len(set(venvs)) == 2, venvs
    assert "reuses" in README.read_text(encoding="utf-8")


def test_sql_examples_run_as_rec_reader(platform_env):
    settings = platform_env
    with psycopg.connect(settings.reader_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("rec_reader",)
        for statement in sql_statements():
            cur = conn.execute(statement)
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            assert len(rows) == 10, statement
            assert names == ["rank", "item_id", "title", "score", "source"], statement
            if "demo-newcomer" in statement:  # what the README's comment promises
                assert rows[0]["source"] == "demographic_neighbors", rows


def test_python_client_example_prints_recommendations(platform_env, capsys):
    settings = platform_env
    snippet = next(b for b in blocks("python") if "RecClient" in b)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    recs = [line.split() for line in printed if re.match(r"^\d+ i\d+ ", line)]
    assert len(recs) == 10, printed  # five for u1 (Comedy), five for the unstored person
    assert {r[-1] for r in recs[:5]} <= {"taste", "onboarding", "exploration"}
    assert {r[-1] for r in recs[5:]} == {"demographic_neighbors"}
    assert printed[-1] in ("stored 1 new user(s)", "stored 0 new user(s)")
    # the README's promise for new-1, once a worker has embedded it (here: the pipeline, synchronously)
    pipeline.embed_ids("user", ["new-1"], settings)
    with RecClient(settings) as client:
        assert client.recommend("new-1", k=5)[0].source == "demographic_neighbors"


def test_celery_example_against_a_real_worker(platform_env, tmp_path, capsys):
    from test_workers import Worker

    settings = platform_env
    snippet = next(b for b in blocks("python") if "send_task" in b)
    worker = Worker(settings, "hashing:64", tmp_path, "readme").start()
    try:
        broker = settings.celery_broker_url
        exec(compile(snippet, "README.md", "exec"), {"BROKER_URL": broker, "RESULT_BACKEND_URL": result_backend_for(broker)})
    finally:
        worker.stop()
    printed = capsys.readouterr().out.splitlines()
    first_row = eval(printed[0])  # noqa: S307 - the repr of a dict the snippet printed
    assert first_row["rank"] == 1 and first_row["item_id"].startswith("i")
    reply = eval(printed[1])  # noqa: S307
    assert "error" not in reply and reply["interactions_added"] + reply["interactions_updated"] == 1, reply


def test_cli_lines_run_against_the_demo(platform_env):
    runner = CliRunner()
    for line in cli_lines():
        argv = shlex.split(line)[1:]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        if "--json" in argv:
            json.loads(result.output)
