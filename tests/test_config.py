"""The one Settings object: RECPLATFORM_* variables, keywords that win over them, values checked with errors
that name the field and the variable, and copies that change a field without re-reading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from recplatform.config import Settings, SettingsError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    import os

    for key in [k for k in os.environ if k.upper().startswith("RECPLATFORM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RECPLATFORM_STATE_DIR", str(tmp_path / "state"))


def test_defaults_environment_and_keywords(monkeypatch, tmp_path):
    default = Settings()
    assert default.state_dir == (tmp_path / "state").resolve() and default.state_dir.is_absolute()
    assert (default.feature_server_port, default.enqueue_on_ingest, default.pg_port) == (6566, True, None)
    monkeypatch.setenv("RECPLATFORM_FEATURE_SERVER_PORT", "7001")
    monkeypatch.setenv("recplatform_enqueue_on_ingest", "no")  # any case, as before
    monkeypatch.setenv("RECPLATFORM_EMBED_WAIT_SECONDS", "2.5")
    monkeypatch.setenv("RECPLATFORM_PG_PORT", "5433")
    read = Settings()
    assert (read.feature_server_port, read.enqueue_on_ingest, read.embed_wait_seconds, read.pg_port) == \
        (7001, False, 2.5, 5433)
    given = Settings(feature_server_port=7002, state_dir=str(tmp_path / "other"), database_url=None)
    assert given.feature_server_port == 7002 and given.state_dir == (tmp_path / "other").resolve()
    assert isinstance(given.state_dir, Path) and given.database_url is None


def test_every_bad_value_is_named_with_its_variable(monkeypatch):
    monkeypatch.setenv("RECPLATFORM_FEATURE_SERVER_PORT", "70000")
    monkeypatch.setenv("RECPLATFORM_READER_WORK_MEM", "lots")
    monkeypatch.setenv("RECPLATFORM_ENQUEUE_ON_INGEST", "maybe")
    with pytest.raises(SettingsError) as caught:
        Settings()
    message = str(caught.value)
    assert message.startswith("3 invalid settings")
    assert "feature_server_port (RECPLATFORM_FEATURE_SERVER_PORT = '70000'): input should be less than or equal " \
           "to 65535" in message
    assert "reader_work_mem (RECPLATFORM_READER_WORK_MEM = 'lots')" in message
    assert "enqueue_on_ingest" in message
    with pytest.raises(SettingsError, match=r"retrain_after_interactions \(retrain_after_interactions = 0\)"):
        Settings(feature_server_port=1, reader_work_mem="8MB", enqueue_on_ingest=True, retrain_after_interactions=0)
    with pytest.raises(SettingsError, match=r"reader_password .*\*\*\*"):  # a secret is never shown
        Settings(reader_password=12345, feature_server_port=1, reader_work_mem="8MB", enqueue_on_ingest=True)


def test_copies_replace_fields_and_children_get_the_changed_ones():
    base = Settings(model="hashing:64")
    copy = base.model_copy(update={"database_name": "other", "pg_port": 6000})
    assert (copy.database_name, copy.pg_port, copy.model) == ("other", 6000, "hashing:64")
    assert (base.database_name, base.pg_port) == ("recplatform", None)
    assert copy == base.model_copy(update={"database_name": "other", "pg_port": 6000}) and copy != base
    with pytest.raises(TypeError):
        base.model_copy(update={"no_such_field": 1})
    env = copy.export_env()
    assert env["RECPLATFORM_DATABASE_NAME"] == "other" and env["RECPLATFORM_PG_PORT"] == "6000"
    assert env["RECPLATFORM_MODEL"] == "hashing:64" and "RECPLATFORM_LOG_LEVEL" not in env  # defaults stay out
    assert "reader_password" not in repr(Settings(reader_password="s3cret"))
