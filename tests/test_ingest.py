"""Ingestion against the real embedded Postgres: validation, all-or-nothing batches, idempotent upserts, hashes."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import pandas as pd
import psycopg
import pytest

from recplatform import db
from recplatform.config import Settings
from recplatform.datasets import generate_synthetic, load_movielens
from recplatform.content import item_content_hash, user_content_hash
from recplatform.ingest import ValidationError, add_interactions, ingest, ingest_dataset, upsert_items, upsert_users
from recplatform.publish import after_commit_step
# Validation runs before any connection is opened, so these need no database at all.
NOWHERE = Settings(database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")


def _counts(settings) -> tuple[int, int, int]:
    with db.connect(settings, vector=False) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM rec.{t}").fetchone()[0]  # fixed table names
                     for t in ("users", "items", "interactions"))


def _hashes(settings, table: str) -> dict[str, tuple[str, datetime]]:
    key = "user_id" if table == "users" else "item_id"
    with db.connect(settings, vector=False) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            f"SELECT {key}, content_hash, updated_at FROM rec.{table}")}  # fixed names, no caller input


USERS = [
    {"user_id": "a", "age": 30, "gender": "F", "occupation": "writer", "zip_code": "02139"},
    {"user_id": "b", "age": 41, "gender": "M", "occupation": "engineer", "zip_code": "T8H1N"},
]
ITEMS = [
    {"item_id": "x", "title": "Heat (1995)", "year": 1995, "genres": ["Action", "Crime"], "description": "Cops."},
    {"item_id": "y", "title": "Babe (1995)", "year": 1995, "genres": ["Children's"], "extra": {"k": 1}},
    {"item_id": "z", "title": "Fargo (1996)", "year": 1996, "genres": []},
]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
INTERACTIONS = [
    {"user_id": "a", "item_id": "x", "rating": 4, "occurred_at": T0},
    {"user_id": "a", "item_id": "y", "rating": 5, "occurred_at": T0},
    {"user_id": "b", "item_id": "x", "rating": 2.5, "occurred_at": "2024-01-02T10:00:00Z"},
]


# ----- MovieLens 100K end to end ------------------------------------------------------------------
@pytest.mark.movielens
def test_movielens_100k_loads_exactly_and_reloads_as_a_no_op(ml100k_path, db_settings):
    data = load_movielens(ml100k_path)
    started = time.perf_counter()
    result = ingest_dataset(data, settings=db_settings)
    print(f"\nML-100K ingest: {time.perf_counter() - started:.2f}s (validate {result.timings['validate']:.2f}s, "
          f"database write {result.timings['write']:.2f}s)")
    assert _counts(db_settings) == (943, 1682, 100_000)
    assert (result.users_inserted, result.items_inserted, result.interactions_added) == (943, 1682, 100_000)
    assert len(result.changed_user_ids) == 943 and len(result.changed_item_ids) == 1682
    assert len(result.touched_user_ids) == 943 and len(result.touched_item_ids) == 1682

    with db.connect(db_settings, vector=False) as conn:
        user = conn.execute("SELECT age, gender, occupation, zip_code FROM rec.users WHERE user_id = '1'").fetchone()
        item = conn.execute("SELECT title, year, genres, extra FROM rec.items WHERE item_id = '1'").fetchone()
        unknown = conn.execute("SELECT title, year FROM rec.items WHERE item_id = '267'").fetchone()
        amy = conn.execute("SELECT count(*) FROM rec.items WHERE title = 'Chasing Amy (1997)'").fetchone()[0]
        latin = conn.execute("SELECT count(*) FROM rec.items WHERE title = 'Misérables, Les (1995)'").fetchone()[0]
        canadian = conn.execute("SELECT zip_code FROM rec.users WHERE zip_code = 'T8H1N'").fetchone()
        rating = conn.execute("SELECT rating, occurred_at FROM rec.interactions "
                              "WHERE user_id = '196' AND item_id = '242'").fetchone()
    assert user == (24, "M", "technician", "85711")
    assert item[:3] == ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"])
    assert item[3]["release_date"] == "1995-01-01" and "imdb.com" in item[3]["imdb_url"]
    assert unknown == ("unknown", None)
    assert amy == 2 and latin == 1 and canadian == ("T8H1N",)
    assert rating == (3.0, datetime.fromtimestamp(881250949, tz=timezone.utc))

    users_before, items_before = _hashes(db_settings, "users"), _hashes(db_settings, "items")
    again = ingest_dataset(load_movielens(ml100k_path), settings=db_settings)
    assert (again.users_inserted, again.users_updated, again.items_inserted, again.items_updated) == (0, 0, 0, 0)
    assert again.interactions_added == 0 and again.interactions_updated == 0
    assert again.changed_user_ids == [] and again.changed_item_ids == [] and again.touched_user_ids == []
    assert _hashes(db_settings, "users") == users_before and _hashes(db_settings, "items") == items_before
    assert _counts(db_settings) == (943, 1682, 100_000)


# ----- all or nothing -----------------------------------------------------------------------------
def _write_ml100k(root, users: str) -> None:
    root.mkdir()
    (root / "u.user").write_text(users)
    (root / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    (root / "u.item").write_bytes("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
                                  "2|Misérables, Les (1995)|01-Jan-1995|||0|1|0\n".encode("latin-1"))
    (root / "u.data").write_text("1\t1\t5\t881250949\n2\t2\t3\t881250950\n3\t1\t4\t881250951\n")


def test_file_with_one_bad_row_loads_nothing_and_names_file_row_and_field(tmp_path, db_settings):
    root = tmp_path / "ml"
    _write_ml100k(root, "1|24|M|technician|85711\n2|53|F|other|94043\n3|230|M|writer|32067\n")
    data = load_movielens(root)
    with pytest.raises(ValidationError) as caught:
        ingest_dataset(data, settings=db_settings)
    err = caught.value
    assert err.source == str(root / "u.user") and err.row == 3 and err.field == "age" and err.value == 230
    assert "u.user" in str(err) and "line 3" in str(err) and "'age'" in str(err) and "between 0 and 120" in str(err)
    assert _counts(db_settings) == (0, 0, 0)

    good = tmp_path / "good"
    _write_ml100k(good, "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    result = ingest_dataset(load_movielens(good), settings=db_settings)
    assert (result.users_inserted, result.items_inserted, result.interactions_added) == (3, 2, 3)
    assert _counts(db_settings) == (3, 2, 3)


def test_bad_interaction_writes_no_users_items_or_interactions(db_settings):
    bad = INTERACTIONS + [{"user_id": "b", "item_id": "no-such-item", "rating": 3, "occurred_at": T0}]
    with pytest.raises(ValidationError) as caught:
        ingest(USERS, ITEMS, bad, source="api", settings=db_settings)
    err = caught.value
    assert (err.source, err.row, err.field, err.value) == ("api", 4, "item_id", "no-such-item")
    assert "unknown item" in str(err) and "row 4" in str(err)
    assert _counts(db_settings) == (0, 0, 0)


def test_interactions_may_reference_rows_already_in_the_database(db_settings):
    upsert_users(USERS, settings=db_settings)
    upsert_items(ITEMS, settings=db_settings)
    result = add_interactions(INTERACTIONS, settings=db_settings)
    assert result.interactions_added == 3
    assert result.touched_user_ids == ["a", "b"] and result.touched_item_ids == ["x", "y"]
    assert result.changed_user_ids == [] and result.users_inserted == 0

    again = add_interactions(INTERACTIONS, settings=db_settings)
    assert (again.interactions_added, again.interactions_updated) == (0, 0)
    changed = [dict(INTERACTIONS[0], rating=1)] + INTERACTIONS[1:]
    third = add_interactions(changed, settings=db_settings)
    assert (third.interactions_added, third.interactions_updated, third.touched_user_ids) == (0, 1, ["a"])
    with db.connect(db_settings, vector=False) as conn:
        assert conn.execute("SELECT rating FROM rec.interactions WHERE user_id = 'a' AND item_id = 'x'"
                            ).fetchone() == (1.0,)
    assert _counts(db_settings) == (2, 3, 3)


# ----- content hashes -----------------------------------------------------------------------------
def test_reingest_changes_no_hash_and_one_title_changes_one_hash(db_settings):
    first = ingest(USERS, ITEMS, INTERACTIONS, settings=db_settings)
    assert (first.users_inserted, first.items_inserted, first.interactions_added) == (2, 3, 3)
    users0, items0 = _hashes(db_settings, "users"), _hashes(db_settings, "items")
    assert items0["x"][0] == item_content_hash(ITEMS[0]) and users0["a"][0] == user_content_hash(USERS[0])

    same = ingest(pd.DataFrame(USERS), pd.DataFrame(ITEMS), pd.DataFrame(INTERACTIONS), settings=db_settings)
    assert (same.users_updated, same.items_updated, same.interactions_added) == (0, 0, 0)
    assert same.changed_user_ids == [] and same.changed_item_ids == []
    assert _hashes(db_settings, "users") == users0 and _hashes(db_settings, "items") == items0

    renamed = [dict(ITEMS[0], title="Heat (Director's Cut) (1995)")] + ITEMS[1:]
    result = upsert_items(renamed, settings=db_settings)
    assert (result.items_inserted, result.items_updated, result.changed_item_ids) == (0, 1, ["x"])
    items1 = _hashes(db_settings, "items")
    assert items1["x"][0] != items0["x"][0] and items1["x"][1] > items0["x"][1]
    assert {k: v for k, v in items1.items() if k != "x"} == {k: v for k, v in items0.items() if k != "x"}

    # extra is not text-relevant: the row is updated, its hash is not, and it is not reported as changed.
    extra_only = [dict(ITEMS[1], extra={"k": 2})]
    result = upsert_items(extra_only, settings=db_settings)
    assert (result.items_updated, result.changed_item_ids) == (1, [])
    assert _hashes(db_settings, "items")["y"][0] == items0["y"][0]

    older = [dict(USERS[1], age=42)]
    result = upsert_users(older, settings=db_settings)
    assert (result.users_updated, result.changed_user_ids) == (1, ["b"])
    assert _hashes(db_settings, "users")["a"] == users0["a"]


def test_hostile_ids_are_stored_as_plain_ids(db_settings):
    ids = ["1'; DROP TABLE rec.users; --", 'a"b', "x;y", "$$; DELETE FROM rec.items; $$", "\\N", "tab\there", "ü€"]
    users = [{"user_id": i, "age": 20, "gender": "X"} for i in ids]
    items = [{"item_id": i, "title": f"Title {n} '; SELECT 1; --"} for n, i in enumerate(ids)]
    inter = [{"user_id": i, "item_id": j, "rating": 3, "occurred_at": T0} for i in ids for j in ids[:2]]
    result = ingest(users, items, inter, settings=db_settings)
    assert result.users_inserted == len(ids) and result.interactions_added == 2 * len(ids)
    with db.connect(db_settings, vector=False) as conn:
        stored = sorted(r[0] for r in conn.execute("SELECT user_id FROM rec.users"))
        titles = [r[0] for r in conn.execute("SELECT title FROM rec.items WHERE item_id = %s", (ids[0],))]
    assert stored == sorted(ids)
    assert titles == ["Title 0 '; SELECT 1; --"]
    assert _counts(db_settings) == (len(ids), len(ids), 2 * len(ids))


def test_synthetic_dataset_ingests(db_settings):
    data = generate_synthetic(200, 80, seed=3)
    result = ingest_dataset(data, settings=db_settings)
    assert _counts(db_settings) == (200, 80, len(data.interactions))
    assert result.interactions_added == len(data.interactions)


# ----- validation (no database needed: nothing is even connected to) ------------------------------
@pytest.mark.parametrize("table, rows, row, field, reason", [
    ("users", [{"user_id": "u", "age": 12}, {"user_id": "v", "age": -1}], 2, "age", "between 0 and 120"),
    ("users", [{"user_id": "u", "age": 12.5}], 1, "age", "integer"),
    ("users", [{"user_id": "u", "age": True}], 1, "age", "integer"),
    ("users", [{"user_id": "u", "gender": "male"}], 1, "gender", "M, F, X"),
    ("users", [{"user_id": "u", "zip_code": 2139}], 1, "zip_code", "string"),
    ("users", [{"user_id": ""}], 1, "user_id", "non-empty"),
    ("users", [{"user_id": "   "}], 1, "user_id", "non-empty"),
    ("users", [{"user_id": None}], 1, "user_id", "non-empty"),
    ("users", [{"user_id": "x" * 257}], 1, "user_id", "256"),
    ("users", [{"user_id": 1.5}], 1, "user_id", "string"),
    ("users", [{"user_id": "a\x00b"}], 1, "user_id", "NUL"),
    ("users", [{"user_id": "u"}, {"user_id": "v"}, {"user_id": "u"}], 3, "user_id", "duplicate"),
    ("users", [{"user_id": "u", "agee": 3}], None, "agee", "unknown users column"),
    ("items", [{"item_id": "i", "title": "  "}], 1, "title", "non-empty"),
    ("items", [{"item_id": "i"}], 1, "title", "missing"),
    ("items", [{"item_id": "i", "title": "T", "year": 1500}], 1, "year", "between 1800 and 2100"),
    ("items", [{"item_id": "i", "title": "T", "genres": "Comedy|Drama"}], 1, "genres", "list of strings"),
    ("items", [{"item_id": "i", "title": "T", "genres": ["Comedy", 3]}], 1, "genres", "list of non-empty"),
    ("items", [{"item_id": "i", "title": "T", "extra": {"f": object()}}], 1, "extra", "JSON"),
    ("items", [{"item_id": "i", "title": "T", "extra": "x"}], 1, "extra", "dict"),
    ("interactions", [{"user_id": "u", "item_id": "i", "rating": 6}], 1, "rating", "at most 5"),
    ("interactions", [{"user_id": "u", "item_id": "i", "rating": 0}], 1, "rating", "greater than 0"),
    ("interactions", [{"user_id": "u", "item_id": "i", "rating": -2}], 1, "rating", "greater than 0"),
    ("interactions", [{"user_id": "u", "item_id": "i", "weight": -1e300}], 1, "weight", "greater than 0"),
    ("interactions", [{"user_id": "u", "item_id": "i", "weight": -1}], 1, "weight", "greater than 0"),
    ("interactions", [{"user_id": "u", "item_id": "i", "weight": 0}], 1, "weight", "greater than 0"),
    ("interactions", [{"user_id": "u", "item_id": "i", "weight": 1e300}], 1, "weight", "at most 1e+06"),
    ("interactions", [{"user_id": "u", "item_id": "i", "weight": float("inf")}], 1, "weight", "finite"),
    ("users", [{"user_id": "u", "gender": "Q"}], 1, "gender", "M, F, X"),
    ("users", [{"user_id": "u", "occupation": "o" * 201}], 1, "occupation", "200"),
    ("items", [{"item_id": "i", "title": "T" * 1001}], 1, "title", "1,000 characters"),
    ("items", [{"item_id": "i", "title": "T" * 1_000_000}], 1, "title", "1,000 characters"),
    ("items", [{"item_id": "i", "title": "T", "description": "d" * 10_001}], 1, "description", "10,000"),
    ("items", [{"item_id": "i", "title": "T", "genres": [f"g{n}" for n in range(101)]}], 1, "genres", "100 genres"),
    ("items", [{"item_id": "i", "title": "T", "genres": ["g" * 201]}], 1, "genres", "200 characters"),
    ("items", [{"item_id": "i", "title": "T", "genres": ["Dra\x00ma"]}], 1, "genres", "NUL"),
    ("interactions", [{"user_id": "u", "item_id": "i", "rating": float("inf")}], 1, "rating", "finite"),
    ("interactions", [{"user_id": "u", "item_id": "i", "rating": "5"}], 1, "rating", "number"),
    ("interactions", [{"user_id": "u", "item_id": "i", "occurred_at": "yesterday-ish"}], 1, "occurred_at", "time"),
    ("interactions", [{"user_id": "u", "item_id": "i", "event_type": ""}], 1, "event_type", "non-empty"),
    ("interactions", [{"user_id": "u", "item_id": "i", "occurred_at": T0},
                      {"user_id": "u", "item_id": "i", "occurred_at": T0}], 2, "occurred_at", "duplicate"),
])
def test_validation_names_row_field_and_value(table, rows, row, field, reason):
    with pytest.raises(ValidationError) as caught:
        ingest(**{table: rows}, source="feed.jsonl", settings=NOWHERE)
    err = caught.value
    assert (err.source, err.row, err.field) == ("feed.jsonl", row, field)
    assert reason in str(err) and "feed.jsonl" in str(err) and repr(field) in str(err)


@pytest.mark.parametrize("statement, constraint", [
    ("INSERT INTO rec.interactions (user_id, item_id, rating, weight) VALUES ('u', 'i', 0, 1)",
     "interactions_rating_range"),
    ("INSERT INTO rec.interactions (user_id, item_id, rating, weight) VALUES ('u', 'i', 3, -1e300)",
     "interactions_weight_range"),
    ("INSERT INTO rec.interactions (user_id, item_id, rating, weight) VALUES ('u', 'i', 3, 'NaN')",
     "interactions_weight_range"),
    ("INSERT INTO rec.interactions (user_id, item_id, rating, weight) VALUES ('u', 'i', 'NaN', 1)",
     "interactions_rating_range"),
    ("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('j', repeat('t', 1001), 'h')",
     "items_title_length"),
    ("INSERT INTO rec.items (item_id, title, description, content_hash) VALUES ('j', 't', repeat('d', 10001), 'h')",
     "items_description_length"),
])
def test_check_constraints_refuse_what_validation_refuses(db_settings, statement, constraint):
    with db.connect(db_settings) as conn:
        conn.execute("INSERT INTO rec.users (user_id, content_hash) VALUES ('u', 'h')")
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('i', 'T', 'h')")
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            conn.execute(statement)
        assert caught.value.diag.constraint_name == constraint


def test_the_first_bad_row_is_reported_whatever_its_column():
    rows = [{"user_id": "u1", "age": 20}, {"user_id": "u2", "age": 20, "gender": "?"}, {"user_id": "", "age": 500}]
    with pytest.raises(ValidationError) as caught:
        upsert_users(pd.DataFrame(rows), source="frame", settings=NOWHERE)
    assert (caught.value.row, caught.value.field, caught.value.value) == (2, "gender", "?")


def test_normalisation_of_accepted_values():
    from recplatform.ingest.validate import SPECS, validate

    now = datetime(2025, 5, 5, tzinfo=timezone.utc)
    table = validate([{"user_id": 7, "item_id": "i", "occurred_at": 0},
                       {"user_id": "u", "item_id": "i", "rating": 4, "occurred_at": "2024-01-01 00:00:00"},
                       {"user_id": "u", "item_id": "j", "weight": None}],
                      SPECS["interactions"], "<input>", now)
    cols = table.columns
    assert cols["user_id"] == ["7", "u", "u"]
    assert cols["occurred_at"] == [datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, tzinfo=timezone.utc), now]
    assert cols["event_type"] == ["interaction", "rating", "interaction"] and cols["weight"] == [1.0, 1.0, 1.0]
    # Hashes ignore representation: numpy / float-typed integers hash like Python ints.
    import numpy as np

    assert item_content_hash({"title": "T", "year": np.int64(1995), "genres": np.array(["A"])}) == \
        item_content_hash({"title": "T", "year": 1995.0, "genres": ["A"], "description": None})


def test_after_commit_steps_never_raise(caplog):
    import json

    caplog.set_level(logging.DEBUG, logger="recplatform.publish")
    assert after_commit_step(json.loads, "{not json") is False
    assert any(r.levelno == logging.WARNING and "loads failed after the data was committed" in r.message
               for r in caplog.records)
    assert after_commit_step(json.loads, "{}") is True


def test_a_failure_in_the_last_statement_rolls_back_users_and_items_too(db_settings, monkeypatch):
    """Users and items are already upserted when the interactions statement fails: one transaction undoes all."""

    from recplatform.ingest import write as ingest_module

    monkeypatch.setattr(ingest_module, "_UPSERT_INTERACTIONS", "SELECT 1 / 0, 0, '{}'::text[], '{}'::text[]")
    with pytest.raises(psycopg.errors.DivisionByZero):
        ingest(USERS, ITEMS, INTERACTIONS, settings=db_settings)
    assert _counts(db_settings) == (0, 0, 0)
