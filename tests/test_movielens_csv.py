"""MovieLens as GroupLens publishes it today (ml-latest-small, ml-latest, ml-25m, ml-32m: CSV files, no
demographics), on a small fixture the tests write (tests/conftest.py: write_movielens_csv): reading it, loading it
(tags as item text, users without demographics served by popularity), refusing to mix it with another catalogue,
and evaluating it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from recplatform import db
from recplatform.cli import app
from recplatform.client import RecClient
from recplatform.datasets import generate_synthetic, load_movielens
from recplatform.embedding import pipeline, spaces
from recplatform.ingest import ValidationError
from recplatform.ingest.catalogues import MixedCataloguesError
from recplatform.publish import ingest_and_publish
from recplatform.retrieval import training
from recplatform.text import item_card

from conftest import write_movielens_csv


def test_the_csv_layout_is_detected_and_read(movielens_csv):
    data = load_movielens(movielens_csv)
    assert data.name == "ml-latest-small" and data.counts()["users"] == 30 and data.counts()["items"] == 40
    items = data.items.set_index("item_id")
    assert items.loc["2"].title == "American President, The (1995)" and items.loc["2"].year == 1995
    assert items.loc["3"].title.startswith("Amélie (Fabuleux destin d'Amélie Poulain, Le)")
    assert items.loc["4"].title == '"Great Performances" Cats (1998)'
    assert items.loc["5"].genres == [] and items.loc["1"].genres[:2] == ["Adventure", "Animation"]
    assert items.loc["1"].extra["imdb_id"] == "0114710" and items.loc["1"].extra["tmdb_id"] == "863"
    assert "tmdb_id" not in items.loc["4"].extra
    # tags: most users first, spelling variants counted once, a comma inside a quoted tag kept
    assert items.loc["1"].extra["tags"] == ["pixar", "friendship"]
    assert items.loc["3"].extra["tags"] == ["Paris", "quirky"]
    assert items.loc["2"].description == "Tagged: politics, romance."
    assert item_card(items.loc["1"].to_dict()).endswith("Tagged: pixar, friendship.")
    assert pd.isna(items.loc["6"].description)
    ratings = data.interactions
    assert set(ratings.rating) - {1.0, 2.0, 3.0, 4.0, 5.0} and ratings.rating.between(0.5, 5).all()  # half stars
    assert str(ratings.occurred_at.dt.tz) == "UTC" and ratings.index[0] == 2  # file lines (header = line 1)
    assert data.users[["age", "gender", "occupation", "zip_code"]].isna().all(axis=None)


def test_a_bad_csv_names_the_file_line_and_field(tmp_path):
    root = write_movielens_csv(tmp_path / "ml-latest-small", n_users=3, n_movies=8)
    lines = (root / "ratings.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 2)[0] + ",four,1500000000"
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError) as caught:
        load_movielens(root)
    assert caught.value.source == str(root / "ratings.csv") and caught.value.row == 5
    assert caught.value.field == "rating"
    (root / "movies.csv").write_text("id,name,genres\n1,X (1990),Drama\n")
    with pytest.raises(ValidationError) as caught:
        load_movielens(root)
    assert caught.value.row == 1 and caught.value.field == "header" and "movieId,title,genres" in str(caught.value)


@pytest.fixture
def csv_database(make_db, monkeypatch):
    settings = make_db("csv").model_copy(update={"model": "hashing:64"})
    monkeypatch.setenv("RECPLATFORM_MODEL", "hashing:64")
    return settings


def test_load_csv_then_users_without_demographics_get_popularity(csv_database, movielens_csv):
    settings = csv_database
    result = CliRunner().invoke(app, ["load", "movielens", str(movielens_csv), "--no-online", "--no-enqueue"])
    assert result.exit_code == 0, result.output
    with db.connect(settings) as conn:
        assert conn.execute("SELECT description FROM rec.items WHERE item_id = '1'").fetchone() == (
            "Tagged: pixar, friendship.",)
    with RecClient(settings) as client:
        client.add_users([{"user_id": "newcomer"}, {"user_id": "described", "age": 30, "gender": "F"}],
                         online=False, enqueue=False)
    space = pipeline.ensure_configured_space(settings)
    missing = spaces.missing_ids(settings, space.space_id)
    pipeline.embed_ids("item", missing["item"], settings)
    pipeline.embed_ids("user", missing["user"], settings)
    spaces.activate_if_complete(settings, spaces.get_space(settings, space.space_id))
    training.train_collaborative_space(settings)
    with RecClient(settings) as client:
        nobody = client.recommend("newcomer", k=5, exploration_share=0)
        assert {r.source for r in nobody} == {"popularity"}  # no demographics: no demographic neighbours
        popular = client.recommend("newcomer", k=5, strategy="popularity", exploration_share=0)
        assert [r.item_id for r in nobody] == [r.item_id for r in popular]
        described = client.recommend("described", k=5, exploration_share=0)
        assert {r.source for r in described} == {"demographic_neighbors"}
        # explain tells the path that served: popularity, not neighbours, for the user without demographics
        assert client.explain("newcomer", nobody[0].item_id).source == "popularity"
        assert client.explain("described", described[0].item_id).source == "demographic_neighbors"


def test_a_second_catalogue_is_refused_unless_added(csv_database, movielens_csv):
    settings = csv_database
    assert CliRunner().invoke(app, ["load", "synthetic", "--users", "20", "--items", "10", "--no-online",
                                    "--no-enqueue"]).exit_code == 0
    again = CliRunner().invoke(app, ["load", "synthetic", "--users", "30", "--items", "10", "--no-online",
                                     "--no-enqueue"])
    assert again.exit_code == 0, again.output  # the same catalogue (synthetic ids) may be reloaded
    mixed = CliRunner().invoke(app, ["load", "movielens", str(movielens_csv), "--no-online", "--no-enqueue"])
    assert mixed.exit_code == 1
    assert "nothing loaded" in mixed.output and "synthetic" in mixed.output
    assert "recplatform down --purge" in mixed.output and "--add" in mixed.output
    with db.connect(settings) as conn:
        assert conn.execute("SELECT count(*) FROM rec.items").fetchone() == (10,)
    with pytest.raises(MixedCataloguesError):
        ingest_and_publish(dataset=load_movielens(movielens_csv), settings=settings, online=False, enqueue=False)
    added = CliRunner().invoke(app, ["load", "movielens", str(movielens_csv), "--no-online", "--no-enqueue", "--add"])
    assert added.exit_code == 0, added.output
    with db.connect(settings) as conn:
        assert conn.execute("SELECT count(*) FROM rec.items").fetchone() == (50,)
        assert conn.execute("SELECT catalogue FROM rec.datasets ORDER BY 1").fetchall() == [
            ("ml-latest-small",), ("synthetic",)]


def test_synthetic_datasets_share_one_catalogue():
    assert generate_synthetic(10, 5, seed=1).catalogue_name == generate_synthetic(20, 5, seed=2).catalogue_name


def test_evaluate_runs_warm_new_item_and_onboarding_on_the_csv_layout(db_settings, movielens_csv, tmp_path):
    out = tmp_path / "eval"
    common = ["evaluate", "--dataset", f"movielens:{movielens_csv}", "--folds", "2", "--bootstrap", "20",
              "--model", "hashing:64", "--out", str(out)]
    result = CliRunner().invoke(app, [*common, "--no-platform"], env={"COLUMNS": "160"})  # every protocol: baselines
    assert result.exit_code == 0, result.output
    assert "cold-user protocol skipped: no user has demographics" in result.output
    data = json.loads((out / "results.json").read_text())
    assert {"warm", "onboarding", "new-item:hybrid"} <= set(data) and "cold-user" not in data
    assert any(r["strategy"] == "cf" for r in data["warm"]) and any(r["known_interactions"] == 20 for r in data["onboarding"])
    # the platform's strategies through rec.recommend (the slow part: a scratch database per split)
    result = CliRunner().invoke(app, [*common, "--protocol", "warm", "--variants", "defaults"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    warm = json.loads((out / "results.json").read_text())["warm"]
    assert {"baseline", "platform"} <= {r["kind"] for r in warm}
    only_cold = CliRunner().invoke(app, ["evaluate", "--dataset", f"movielens:{movielens_csv}",
                                         "--protocol", "cold-user", "--out", str(out)])
    assert only_cold.exit_code == 2 and "no user demographics" in only_cold.output
