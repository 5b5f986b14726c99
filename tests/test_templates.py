"""Prompt templates: the documented texts for MovieLens user 1 and item 1, missing fields, occupations, ZIP regions."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recplatform.text import (
    TEMPLATE_VERSION,
    display_title,
    history_prompt,
    item_card,
    user_prompt,
    zip_region,
    zip_state,
)
from recplatform.text.regions import _STATE_RANGES

USER_1 = {"user_id": "1", "age": 24, "gender": "M", "occupation": "technician", "zip_code": "85711"}
USER_1_TEXT = "A 24-year-old man working as a technician, living in ZIP code 85711 (Tucson, Arizona area)."
ITEM_1 = {"item_id": "1", "title": "Toy Story (1995)", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
ITEM_1_TEXT = "Toy Story (1995). Genres: Animation, Children's, Comedy."


def test_template_version_is_a_nonempty_string():
    assert isinstance(TEMPLATE_VERSION, str) and TEMPLATE_VERSION


def test_documented_texts_for_user_1_and_item_1():
    assert user_prompt(USER_1) == USER_1_TEXT
    assert item_card(ITEM_1) == ITEM_1_TEXT


@pytest.mark.movielens
def test_documented_texts_from_the_raw_movielens_files(ml100k_path):
    user_line = (ml100k_path / "u.user").read_text().splitlines()[0].split("|")
    user = dict(zip(["user_id", "age", "gender", "occupation", "zip_code"], user_line))
    assert user_prompt(user) == USER_1_TEXT

    genre_names = [line.split("|")[0] for line in (ml100k_path / "u.genre").read_text().splitlines() if line]
    item_line = (ml100k_path / "u.item").read_text(encoding="latin-1").splitlines()[0].split("|")
    genres = [name for name, flag in zip(genre_names, item_line[5:]) if flag == "1"]
    item = {"item_id": item_line[0], "title": item_line[1], "year": item_line[2][-4:], "genres": genres}
    assert item_card(item) == ITEM_1_TEXT


def test_item_card_year_once_and_added_when_the_title_lacks_it():
    assert item_card({"title": "Star Wars (1977)", "year": 1977, "genres": ["Sci-Fi"]}) == "Star Wars (1977). Genre: Sci-Fi."
    assert item_card({"title": "Star Wars", "year": "1977.0"}) == "Star Wars (1977)."
    assert item_card({"title": "Star Wars", "year": float("nan"), "genres": None}) == "Star Wars."
    # The title's own year wins over a release-date year that disagrees.
    assert item_card({"title": "Heat (1995)", "year": 1996}) == "Heat (1995)."


def test_item_card_restores_leading_articles_and_adds_description():
    card = item_card(
        {
            "title": "Shawshank Redemption, The (1994)",
            "genres": "Drama",
            "description": "  Two imprisoned men bond over a number of years ",
        }
    )
    assert card == "The Shawshank Redemption (1994). Genre: Drama. Two imprisoned men bond over a number of years."
    assert display_title("Postino, Il (1994)") == "Il Postino (1994)"
    assert display_title("Misérables, Les (1995)") == "Les Misérables (1995)"
    assert display_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "The City of Lost Children (Cité des enfants perdus, La) (1995)"
    )


def test_item_card_genre_forms_and_unknown_genre_dropped():
    assert item_card({"title": "X", "genres": "Action|Comedy"}) == "X. Genres: Action, Comedy."
    assert item_card({"title": "X", "genres": ("unknown",)}) == "X."
    assert item_card(pd.Series({"title": "X", "genres": ["Drama", "Drama"], "description": None})) == "X. Genre: Drama."


def test_item_card_without_title_names_the_field_and_item():
    with pytest.raises(ValueError, match=r"item '7'.*'title'"):
        item_card({"item_id": "7", "title": "  ", "year": 1990})


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"age": 30, "gender": "F", "occupation": "homemaker"}, "A 30-year-old woman who is a homemaker."),
        ({"age": 70, "gender": "M", "occupation": "retired"}, "A 70-year-old man who is retired."),
        ({"age": 19, "gender": "F", "occupation": "student"}, "A 19-year-old woman who is a student."),
        ({"age": 33, "gender": "M", "occupation": "none"}, "A 33-year-old man with no current occupation."),
        ({"age": 53, "gender": "F", "occupation": "other"}, "A 53-year-old woman."),
        ({"age": 40, "gender": "M", "occupation": "salesman"}, "A 40-year-old man working in sales."),
        ({"age": 40, "gender": "M", "occupation": "administrator"}, "A 40-year-old man working as an administrator."),
        ({"age": 7, "gender": "M", "occupation": "student"}, "A 7-year-old boy who is a student."),
        ({"age": 25, "gender": "X"}, "A 25-year-old person."),
        ({"gender": "F"}, "A woman."),
        ({"age": None, "gender": None, "occupation": None, "zip_code": None}, "A person."),
        ({}, "A person."),
        ({"age": 30, "occupation": "12"}, "A 30-year-old person working as a programmer."),  # MovieLens 1M code
        ({"age": 30, "occupation": "Data Analyst"}, "A 30-year-old person working as a data analyst."),
    ],
)
def test_user_prompt_phrases(user, expected):
    assert user_prompt(user) == expected


def test_user_prompt_missing_values_of_every_kind():
    nan_user = {"age": math.nan, "gender": pd.NA, "occupation": "", "zip_code": None}
    assert user_prompt(nan_user) == "A person."
    assert user_prompt(pd.Series({"age": 24.0, "gender": "m", "zip_code": "T8H1N"})) == (
        "A 24-year-old man, living in postal code T8H1N."
    )


def test_history_prompt_lists_the_first_titles_once():
    titles = [f"Movie {i} (1990)" for i in range(15)]
    text = history_prompt(USER_1, ["Net, The (1995)", "Net, The (1995)", None, *titles])
    assert text.startswith(USER_1_TEXT + " They liked: The Net (1995), Movie 0 (1990),")
    assert text.endswith("Movie 8 (1990).")
    assert text.count("(1990)") == 9  # ten titles in all
    assert history_prompt(USER_1, titles, max_titles=2) == USER_1_TEXT + " They liked: Movie 0 (1990), Movie 1 (1990)."
    assert history_prompt(USER_1, []) == USER_1_TEXT


@pytest.mark.parametrize(
    ("zip_code", "region"),
    [
        ("85711", "Tucson, Arizona area"),
        ("10025", "New York City, New York area"),
        ("02139", "Boston, Massachusetts area"),
        ("20008", "Washington, D.C. area"),
        ("22202", "Washington, D.C. area"),
        ("94110", "San Francisco, California area"),
        ("60614", "Chicago, Illinois area"),
        ("98105", "Seattle, Washington area"),
        ("59801", "Montana"),
        ("85711-1234", "Tucson, Arizona area"),
        ("T8H1N", None),
        ("E2A4H", None),
        ("1234", None),
        ("", None),
        ("00000", None),
    ],
)
def test_zip_region(zip_code, region):
    assert zip_region(zip_code) == region


def test_zip_region_covers_every_allocated_prefix_with_a_state():
    for first, last, state in _STATE_RANGES:
        for prefix in range(first, last + 1):
            assert zip_state(f"{prefix:03d}01") == state
            assert zip_region(f"{prefix:03d}01") is not None
    assert zip_region(85711) is None  # type: ignore[arg-type]  # numbers lose leading zeros: not a ZIP string
