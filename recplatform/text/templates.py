"""Versioned prompt templates that turn user and item features (as Feast serves them) into text for the encoder.

The template version is part of an embedding space (``rec.embedding_models.template_version``): change any wording
here and bump :data:`TEMPLATE_VERSION`, so that the new text lands in a new space instead of mixing with the old.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence

from recplatform.text.regions import zip_region

TEMPLATE_VERSION = "v1"

#: How many liked titles a history prompt lists (the caller passes them most relevant first).
HISTORY_MAX_TITLES = 10

__all__ = [
    "TEMPLATE_VERSION",
    "HISTORY_MAX_TITLES",
    "item_card",
    "tags_text",
    "user_prompt",
    "history_prompt",
    "display_title",
    "zip_region",
]

# ----- missing values ----------------------------------------------------------------------------------------------


def _missing(value: object) -> bool:
    """None, NaN, pandas NA/NaT, blank strings and empty sequences all count as 'not given'."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if hasattr(value, "__len__"):
        return len(value) == 0  # type: ignore[arg-type]
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _get(row: Mapping, key: str) -> object:
    value = row.get(key) if hasattr(row, "get") else None
    return None if _missing(value) else value


# ----- items -------------------------------------------------------------------------------------------------------

_TITLE_YEAR = re.compile(r"^(?P<base>.*?)\s*\((?P<year>\d{4})\)\s*$")
# MovieLens writes "Shawshank Redemption, The (1994)"; put the article back in front.
_TRAILING_ARTICLE = re.compile(
    r"^(?P<main>.+?), (?P<article>The|A|An|Les|La|Le|L'|Il|El|Lo|Los|Las|Das|Der|Die|Det|Den|Une|Un)"
    r"(?P<rest>(?: \(.*\))?)$"
)
_IGNORED_GENRES = {"unknown", "(no genres listed)"}


def _split_title(title: str) -> tuple[str, int | None]:
    """Title without a trailing "(YYYY)", and that year when present."""
    match = _TITLE_YEAR.match(title)
    if match and match.group("base"):
        return match.group("base"), int(match.group("year"))
    return title, None


def _front_article(title: str) -> str:
    match = _TRAILING_ARTICLE.match(title)
    if not match:
        return title
    article = match.group("article")
    glue = "" if article.endswith("'") else " "
    return f"{article}{glue}{match.group('main')}{match.group('rest')}"


def _year(value: object) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.year
    try:
        year = int(float(str(value).strip()))
    except ValueError:
        return None
    return year if 1800 <= year <= 2200 else None


def display_title(title: str, year: object = None) -> str:
    """A title as people write it: leading article restored, year in parentheses once ("The Net (1995)")."""
    base, title_year = _split_title(str(title).strip())
    base = _front_article(base.strip())
    if base.lower() == "unknown":
        base = "Unknown title"
    shown_year = title_year if title_year is not None else _year(year)
    return f"{base} ({shown_year})" if shown_year is not None else base


def _genres(value: object) -> list[str]:
    if _missing(value):
        return []
    if isinstance(value, str):
        parts = re.split(r"[|,]", value)
    else:
        parts = [str(v) for v in value]  # list, tuple, numpy array
    seen: list[str] = []
    for part in parts:
        genre = part.strip()
        if genre and genre.lower() not in _IGNORED_GENRES and genre not in seen:
            seen.append(genre)
    return seen


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text[-1:] in ".!?" else text + "."


#: How many tags an item's text carries (the caller passes them most used first) and how long one may be.
MAX_TAGS = 12
MAX_TAG_LENGTH = 60


def tags_text(tags: Sequence[str], *, max_tags: int = MAX_TAGS) -> str | None:
    """Free-text tags as one sentence of item text ("Tagged: pixar, time travel, funny."), or None without any.

    Datasets without descriptions (MovieLens' ``tags.csv``) store it as the item's description, so it reaches the
    item card, the content hash and Feast like any description. Tags are de-duplicated case-insensitively in
    their order; overlong tags are left out."""
    shown: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        if _missing(tag):
            continue
        text = " ".join(str(tag).split())
        key = text.casefold()
        if len(text) > MAX_TAG_LENGTH or key in seen:
            continue
        seen.add(key)
        shown.append(text)
        if len(shown) == max_tags:
            break
    return f"Tagged: {', '.join(shown)}." if shown else None


def item_card(item: Mapping) -> str:
    """Item text: "Toy Story (1995). Genres: Animation, Children's, Comedy." plus the description when present."""
    title = _get(item, "title")
    if title is None:
        raise ValueError(f"item_card: item {item.get('item_id')!r}: field 'title' is missing")
    parts = [_sentence(display_title(str(title), _get(item, "year")))]
    genres = _genres(item.get("genres"))
    if genres:
        label = "Genre" if len(genres) == 1 else "Genres"
        parts.append(f"{label}: {', '.join(genres)}.")
    description = _get(item, "description")
    if description is not None:
        parts.append(_sentence(str(description)))
    return " ".join(parts)


# ----- users -------------------------------------------------------------------------------------------------------

# Occupation → the phrase that follows the person ("A 30-year-old woman working as a doctor").
# MovieLens 100K names, MovieLens 1M names, and "" for values that say nothing ("other").
_OCCUPATIONS: dict[str, str] = {
    "administrator": "working as an administrator",
    "artist": "working as an artist",
    "doctor": "working as a doctor",
    "educator": "working as an educator",
    "engineer": "working as an engineer",
    "entertainment": "working in entertainment",
    "executive": "working as an executive",
    "healthcare": "working in healthcare",
    "homemaker": "who is a homemaker",
    "lawyer": "working as a lawyer",
    "librarian": "working as a librarian",
    "marketing": "working in marketing",
    "none": "with no current occupation",
    "other": "",
    "programmer": "working as a programmer",
    "retired": "who is retired",
    "salesman": "working in sales",
    "scientist": "working as a scientist",
    "student": "who is a student",
    "technician": "working as a technician",
    "writer": "working as a writer",
    # MovieLens 1M
    "other or not specified": "",
    "academic/educator": "working as an academic or educator",
    "clerical/admin": "working in clerical or administrative work",
    "college/grad student": "who is a college or graduate student",
    "customer service": "working in customer service",
    "doctor/health care": "working as a doctor or in health care",
    "executive/managerial": "working as an executive or manager",
    "farmer": "working as a farmer",
    "k-12 student": "who is a school student",
    "sales/marketing": "working in sales or marketing",
    "self-employed": "who is self-employed",
    "technician/engineer": "working as a technician or engineer",
    "tradesman/craftsman": "working as a tradesman or craftsman",
    "unemployed": "who is unemployed",
    "unknown": "",
}
# MovieLens 1M stores occupations as codes 0..20.
_ML1M_CODES = [
    "other or not specified", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker", "k-12 student",
    "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
]  # fmt: skip

_GENDERS = {"m": "man", "male": "man", "man": "man", "f": "woman", "female": "woman", "woman": "woman"}
_YOUNG = {"man": "boy", "woman": "girl"}


def _occupation_phrase(value: object) -> str:
    if value is None:
        return ""
    occupation = " ".join(str(value).strip().lower().split())
    if occupation.isdigit() and int(occupation) < len(_ML1M_CODES):
        occupation = _ML1M_CODES[int(occupation)]
    if occupation in _OCCUPATIONS:
        return _OCCUPATIONS[occupation]
    if "/" in occupation or occupation.endswith("ing"):
        return f"working in {occupation}"
    article = "an" if occupation[0] in "aeiou" else "a"
    return f"working as {article} {occupation}"


def _age(value: object) -> int | None:
    if value is None:
        return None
    try:
        age = int(float(str(value).strip()))
    except ValueError:
        return None
    return age if 5 <= age <= 120 else None


def user_prompt(user: Mapping) -> str:
    """Demographic prompt: "A 24-year-old man working as a technician, living in ZIP code 85711 (Tucson, Arizona area)."

    Missing fields are left out ("A person."), unknown genders read "person", under-18s "boy"/"girl", and
    non-US postal codes are kept without a region.
    """
    age = _age(_get(user, "age"))
    gender = _get(user, "gender")
    noun = _GENDERS.get(str(gender).strip().lower(), "person") if gender is not None else "person"
    if age is not None and age < 18:
        noun = _YOUNG.get(noun, "young person")
    text = f"A {age}-year-old {noun}" if age is not None else f"A {noun}"
    occupation = _occupation_phrase(_get(user, "occupation"))
    if occupation:
        text += f" {occupation}"
    zip_code = _get(user, "zip_code")
    if zip_code is not None:
        zip_code = str(zip_code).strip()
        region = zip_region(zip_code)
        if region is not None:
            text += f", living in ZIP code {zip_code} ({region})"
        else:
            text += f", living in postal code {zip_code}"
    return text + "."


def history_prompt(user: Mapping, titles: Sequence[str], *, max_titles: int = HISTORY_MAX_TITLES) -> str:
    """Demographic prompt plus "They liked: A, B, …" with the first ``max_titles`` titles (pass them best first)."""
    shown: list[str] = []
    for title in titles:
        if _missing(title):
            continue
        name = display_title(str(title))
        if name not in shown:
            shown.append(name)
        if len(shown) >= max_titles:
            break
    prompt = user_prompt(user)
    if not shown:
        return prompt
    return f"{prompt} They liked: {', '.join(shown)}."
