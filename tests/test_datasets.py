"""Datasets: the MovieLens loaders (ml-100k raw layout, ml-1m ``::`` layout) and the synthetic generator's planted signal."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from recplatform import db
from recplatform.datasets import generate_synthetic, load_movielens
from recplatform.datasets.synthetic import GENRES, segment_of
from recplatform.ingest import ValidationError, ingest_dataset


# ----- ml-100k ------------------------------------------------------------------------------------
@pytest.mark.movielens
def test_ml100k_parses_with_its_quirks(ml100k_path):
    data = load_movielens(ml100k_path)
    assert data.counts() == {"users": 943, "items": 1682, "interactions": 100_000}
    users = data.users.set_index("user_id")
    items = data.items.set_index("item_id")
    assert users.loc["1"].tolist() == [24, "M", "technician", "85711"]
    toy = items.loc["1"]
    assert (toy.title, toy.year, toy.genres) == ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"])
    assert toy.extra == {"release_date": "1995-01-01",
                         "imdb_url": "http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)"}
    assert items.loc["267"].title == "unknown" and pd.isna(items.loc["267"].year) and items.loc["267"].extra == {}
    assert items.loc["1358"].extra.get("imdb_url") is None
    assert items.loc["543"].title == "Misérables, Les (1995)"  # latin-1
    assert items.loc["1128"].title == "Heidi Fleiss: Hollywood Madam (1995)"  # trailing space stripped
    assert (data.items.title.value_counts() == 2).sum() == 18  # both ids kept
    assert set(items.loc[["246", "268"]].title) == {"Chasing Amy (1997)"}
    assert (~data.users.zip_code.str.isdigit()).sum() == 18 and "T8H1N" in set(data.users.zip_code)
    assert data.users.gender.value_counts().to_dict() == {"M": 670, "F": 273}

    inter = data.interactions
    assert inter.rating.value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert str(inter.occurred_at.dt.tz) == "UTC"
    assert inter.occurred_at.min().date().isoformat() == "1997-09-20"
    assert inter.occurred_at.max().date().isoformat() == "1998-04-22"
    assert inter.user_id.map(type).eq(str).all() and inter.item_id.map(type).eq(str).all()
    # Rows remember their file and line, so later validation errors can name them.
    assert data.users.attrs["source"].endswith("u.user") and data.users.index[0] == 1
    assert inter.attrs["source"].endswith("u.data") and inter.index[-1] == 100_000


def _ml100k(root, users="1|24|M|technician|85711\n", items="1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n",
            data="1\t1\t5\t881250949\n"):
    root.mkdir()
    (root / "u.user").write_text(users)
    (root / "u.genre").write_text("unknown|0\nComedy|1\n\n")
    (root / "u.item").write_bytes(items.encode("latin-1"))
    (root / "u.data").write_text(data)
    return root


@pytest.mark.parametrize("kwargs, file, line, field", [
    ({"users": "1|24|M|technician|85711\n2|abc|F|other|94043\n"}, "u.user", 2, "age"),
    ({"users": "1|24|M|technician\n"}, "u.user", 1, "zip_code"),
    ({"items": "1|Toy Story (1995)|01-Jan-1995||http://x|0|2\n"}, "u.item", 1, "genre:Comedy"),
    ({"items": "1|Toy Story (1995)|1995-01-01||http://x|0|1\n"}, "u.item", 1, "release_date"),
    ({"items": "1|Toy Story (1995)|01-Jan-1995||http://x|0\n"}, "u.item", 1, "genre:Comedy"),
    ({"data": "1\t1\t5\t881250949\n\n1\t1\tfive\t881250950\n"}, "u.data", 3, "rating"),
    ({"data": "1\t\t5\t881250949\n"}, "u.data", 1, "item_id"),
])
def test_parse_errors_name_file_line_and_field(tmp_path, kwargs, file, line, field):
    root = _ml100k(tmp_path / "ml", **kwargs)
    with pytest.raises(ValidationError) as caught:
        load_movielens(root)
    err = caught.value
    assert (err.source, err.row, err.field) == (str(root / file), line, field)
    assert file in str(err) and f"line {line}" in str(err) and repr(field) in str(err)


@pytest.mark.parametrize("file, content, line, field", [
    ("u.user", b"1|24|M|technician|85711\n2|25|F|\xe9crivain|94043\n", 2, "occupation"),
    ("u.user", b"\xff1|24|M|technician|85711\n", 1, "user_id"),
    ("u.data", b"1\t1\t5\t881250949\n1\t1\t4\t88125\xc3\xa90950\n", 2, "timestamp"),
])
def test_a_byte_that_is_not_ascii_names_file_line_and_field(tmp_path, file, content, line, field):
    root = _ml100k(tmp_path / "ml")
    (root / file).write_bytes(content)
    with pytest.raises(ValidationError) as caught:
        load_movielens(root)
    err = caught.value
    assert (err.source, err.row, err.field) == (str(root / file), line, field)
    assert "is not ascii text" in err.reason


def test_an_empty_ratings_file_is_refused_unless_allowed(tmp_path):
    root = _ml100k(tmp_path / "ml", data="")
    with pytest.raises(ValidationError, match="no rating") as caught:
        load_movielens(root)
    assert caught.value.source == str(root / "u.data") and caught.value.field == "interactions"
    data = load_movielens(root, allow_empty=True)
    assert len(data.interactions) == 0 and len(data.users) == 1 and len(data.items) == 1


def test_load_movielens_cli_refuses_an_empty_ratings_file(tmp_path):
    from typer.testing import CliRunner

    from recplatform.cli import app

    root = _ml100k(tmp_path / "ml", data="\n")
    result = CliRunner().invoke(app, ["load", "movielens", str(root), "--no-online", "--no-enqueue"])
    assert result.exit_code == 1 and "no rating" in result.output and "--allow-empty" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_year_comes_from_the_title_else_the_release_date(tmp_path):
    root = _ml100k(tmp_path / "ml", items="1|Heat (1995)|15-Dec-1996|||0|0\n2|Untitled|4-Feb-1971|||1|0\n"
                                          "3|unknown||||1|0\n")
    items = load_movielens(root).items.set_index("item_id")
    assert items.loc["1"].year == 1995 and items.loc["1"].extra == {"release_date": "1996-12-15"}
    assert items.loc["2"].year == 1971 and items.loc["2"].genres == ["unknown"]
    assert pd.isna(items.loc["3"].year) and items.loc["3"].title == "unknown"


def test_not_a_movielens_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a MovieLens directory"):
        load_movielens(tmp_path)


# ----- ml-1m --------------------------------------------------------------------------------------
def _ml1m(root):
    root.mkdir()
    (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117-1234\n")
    (root / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Musical\n"
        "3::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n".encode("latin-1"))
    (root / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n"
                                      "3::3::2::978300275\n")
    return root


def test_ml1m_layout_parses_and_ingests(tmp_path, db_settings):
    data = load_movielens(_ml1m(tmp_path / "ml-1m"))
    assert data.name == "ml-1m" and data.counts() == {"users": 3, "items": 3, "interactions": 4}
    users = data.users.set_index("user_id")
    assert users.loc["1"].tolist() == [1, "F", "K-12 student", "48067"]
    assert users.loc["3"].tolist() == [25, "M", "scientist", "55117-1234"]
    items = data.items.set_index("item_id")
    assert (items.loc["1"].title, items.loc["1"].year, items.loc["1"].genres) == \
        ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"])
    assert items.loc["2"].title == "Misérables, Les (1995)"
    assert items.loc["3"].year == 1995  # the last (YYYY), not a parenthesised alternative title
    first = data.interactions.iloc[0]
    assert (first.user_id, first.item_id, first.rating) == ("1", "1", 5.0)
    assert first.occurred_at == pd.Timestamp(978300760, unit="s", tz="UTC")

    result = ingest_dataset(data, settings=db_settings)
    assert (result.users_inserted, result.items_inserted, result.interactions_added) == (3, 3, 4)
    with db.connect(db_settings, vector=False) as conn:
        assert conn.execute("SELECT occupation FROM rec.users WHERE user_id = '2'").fetchone() == ("self-employed",)


def test_ml1m_bad_line_names_the_file(tmp_path):
    root = _ml1m(tmp_path / "ml-1m")
    (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::99::70072\n")
    with pytest.raises(ValidationError) as caught:
        load_movielens(root)
    assert (caught.value.source, caught.value.row, caught.value.field) == (str(root / "users.dat"), 2, "occupation")


# ----- synthetic ----------------------------------------------------------------------------------
def test_synthetic_is_deterministic_per_seed():
    a, b, c = generate_synthetic(300, 120, seed=7), generate_synthetic(300, 120, seed=7), generate_synthetic(300, 120, seed=8)
    for name in ("users", "items", "interactions"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.truth == b.truth
    assert not a.interactions.equals(c.interactions) and not a.users.equals(c.users)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_users": 99999999999999999999}, "n_users"),
    ({"n_users": 0}, "n_users"),
    ({"n_users": 10**9, "n_items": 10**9}, "n_users"),
    ({"n_items": 10**9}, "n_items"),
    ({"n_items": 1}, "n_items"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"n_users": 2.5}, "n_users"),
    ({"interactions_per_user": float("nan")}, "interactions_per_user"),
    ({"noise": -1.0}, "noise"),
])
def test_synthetic_arguments_out_of_bounds_are_named(kwargs, field):
    arguments = {"n_users": 10, "n_items": 5, "seed": 0} | kwargs
    with pytest.raises(ValidationError) as caught:
        generate_synthetic(arguments.pop("n_users"), arguments.pop("n_items"), **arguments)
    assert caught.value.field == field and caught.value.source == "synthetic"


@pytest.mark.parametrize("args, words", [
    (["--users", "99999999999999999999"], "n_users"),
    (["--seed", "-1"], "seed"),
    (["--users", "1000000000", "--items", "1000000000"], "n_users"),
    (["--users", "1e9"], "--users"),
])
def test_load_synthetic_cli_bounds_are_named_errors(args, words):
    from typer.testing import CliRunner

    from recplatform.cli import app

    result = CliRunner().invoke(app, ["load", "synthetic", *args, "--no-online", "--no-enqueue"])
    assert result.exit_code in (1, 2), result.output
    assert words in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_synthetic_shape_and_values():
    data = generate_synthetic(1000, 500, seed=0)
    assert data.counts()["users"] == 1000 and data.counts()["items"] == 500
    assert data.interactions.rating.between(1, 5).all() and set(data.interactions.rating.unique()) <= {1, 2, 3, 4, 5}
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()
    assert data.interactions.groupby("user_id").size().min() >= 5
    assert str(data.interactions.occurred_at.dt.tz) == "UTC"
    assert all(set(g) <= set(GENRES) and 1 <= len(g) <= 3 for g in data.items.genres)
    assert data.items.title.is_unique and data.items.description.str.len().gt(20).all()
    assert data.users.zip_code.str.fullmatch(r"\d{5}").all()
    # Long tail: the top 10% of items get far more than 10% of the interactions.
    per_item = data.interactions.item_id.value_counts()
    assert per_item.iloc[: len(per_item) // 10].sum() > 0.3 * len(data.interactions)
    assert data.truth["user_segment"]["u1"] == segment_of(int(data.users.age[0]), data.users.gender[0],
                                                          data.users.occupation[0])


def _user_genre_shares(data) -> pd.DataFrame:
    """Per user, the share of each genre among the genres of the items they interacted with."""
    genres_of = dict(zip(data.items.item_id, data.items.genres))
    counts: dict[str, Counter] = defaultdict(Counter)
    for user, item in zip(data.interactions.user_id, data.interactions.item_id):
        counts[user].update(genres_of[item])
    frame = pd.DataFrame.from_dict(counts, orient="index").reindex(columns=GENRES).fillna(0.0)
    return frame.div(frame.sum(axis=1), axis=0)


def _segment_difference_p(data) -> float:
    """Chi-square p-value that the two largest segments consume genres in the same proportions."""
    seg = data.truth["user_segment"]
    genres_of = dict(zip(data.items.item_id, data.items.genres))
    by_segment: dict[str, Counter] = defaultdict(Counter)
    for user, item in zip(data.interactions.user_id, data.interactions.item_id):
        by_segment[seg[user]].update(genres_of[item])
    largest = sorted(by_segment, key=lambda s: -sum(by_segment[s].values()))[:2]
    table = np.array([[by_segment[s][g] for g in GENRES] for s in largest]) + 1
    return chi2_contingency(table)[1]


def _segment_prediction_gain(data) -> float:
    """How much better a user's genre shares are predicted by their segment (leave-one-out) than by everyone."""
    shares = _user_genre_shares(data)
    seg = pd.Series(data.truth["user_segment"]).reindex(shares.index)
    overall = shares.mean()
    errors_global, errors_segment = [], []
    groups = shares.groupby(seg)
    for _, members in groups:
        if len(members) < 3:
            continue
        total = members.sum()
        for user, row in members.iterrows():
            loo = (total - row) / (len(members) - 1)
            errors_segment.append(((row - loo) ** 2).sum())
            errors_global.append(((row - overall) ** 2).sum())
    return 1.0 - np.mean(errors_segment) / np.mean(errors_global)


def test_synthetic_demographics_really_predict_taste():
    data = generate_synthetic(1000, 500, seed=0)
    assert _segment_difference_p(data) < 1e-9
    gain = _segment_prediction_gain(data)
    assert gain > 0.4, gain  # knowing only the segment removes >40% of the squared error of genre shares

    # The planted per-user preference shows in behaviour: users' top planted genre is over-consumed.
    shares = _user_genre_shares(data)
    catalogue = pd.Series(Counter(g for gs in data.items.genres for g in gs)).reindex(GENRES) / sum(
        len(gs) for gs in data.items.genres)
    top = [data.truth["user_preferred_genres"][u][0] for u in shares.index]
    lift = np.array([shares.loc[u, g] / catalogue[g] for u, g in zip(shares.index, top)])
    assert np.median(lift) > 2.0

    # Planted segment weights and observed segment consumption agree.
    seg = pd.Series(data.truth["user_segment"]).reindex(shares.index)
    sizes = seg.value_counts()
    big = sizes[sizes >= 15].index
    corr = [np.corrcoef(shares[seg == s].mean().values,
                        [data.truth["segment_genre_weights"][s][g] for g in GENRES])[0, 1] for s in big]
    assert len(corr) >= 5 and np.median(corr) > 0.6


def test_synthetic_without_planted_signal_shows_none():
    """The control: with signal=0 the same checks fail, so the test above can fail."""
    data = generate_synthetic(1000, 500, seed=0, signal=0.0)
    assert _segment_prediction_gain(data) < 0.05
    assert _segment_difference_p(data) > 1e-4
