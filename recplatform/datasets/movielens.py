"""MovieLens loader: GroupLens' raw ml-100k layout (u.user, u.item, u.data), the ml-1m ``::`` layout, and the
CSV layout of today's releases (ml-latest-small, ml-latest, ml-25m, ml-32m: ratings.csv, movies.csv, tags.csv,
links.csv).

Decisions on the data's quirks (see ``../shared/data/ml-100k/README.md``):

- ids, zip codes and every other text stay strings exactly as in the files (zip codes such as ``T8H1N``);
  titles keep their ``"Title (1995)"`` form, only surrounding whitespace is stripped (three titles end in a
  space);
- ``u.item`` and ``movies.dat`` are read as latin-1; the 19 genre flags map to names through ``u.genre``
  (flag order), the ``unknown`` genre included, as the file says;
- ``year`` is the last ``(YYYY)`` in the title (the film's year), else the year of the release date, else
  None; ``extra`` holds ``release_date`` (ISO date), ``video_release_date`` and ``imdb_url`` where present;
- item 267 has the title ``unknown`` and no date: it is kept with title ``"unknown"`` (a non-empty title),
  year None; the 18 titles that appear under two ids keep both ids (ratings are split between them);
- ml-1m: ``age`` is the file's age-band code (1 = under 18, 18 = 18-24, 25, 35, 45, 50, 56 = 56+) and the
  occupation code is mapped to its name from the ml-1m README;
- every file is decoded line by line (u.user and u.data as ASCII, u.item and the ml-1m files as latin-1); a byte
  that does not decode is a ValidationError naming the file, the line and the field it is in;
- a ratings file with no rating is refused unless ``allow_empty=True`` (``recplatform load movielens
  --allow-empty``);
- ratings become float ratings with weight 1.0, event type ``rating``, ``occurred_at`` the unix timestamp in UTC.

The CSV layout (GroupLens' README for ml-latest): UTF-8, a header row in every file, fields quoted where they hold
a comma or a quote (``"American President, The (1995)"``), half-star ratings 0.5-5.0, genres ``A|B`` with
``(no genres listed)`` for none, the year only in the title:

- the header of each file must be exactly GroupLens' (``userId,movieId,rating,timestamp`` …): another file with the
  same name is refused, naming the file and line 1; ``movies.csv`` and ``ratings.csv`` are required, ``tags.csv``
  and ``links.csv`` are optional;
- there is **no user file and no demographics**: users are the ``userId`` values of ``ratings.csv`` with age,
  gender, occupation and ZIP unknown, so cold users are served by popularity (a user with nothing to describe
  them has no demographic neighbours) and the cold-user evaluation protocol does not apply;
- ``tags.csv`` (free text per user and movie) becomes item text: a movie's tags, most users first (ties
  alphabetical, case-insensitively de-duplicated), rendered by :func:`recplatform.text.tags_text` as its
  ``description`` (so they reach the item card, the content hash and Feast) and kept in ``extra["tags"]``;
- ``links.csv`` gives ``extra["imdb_id"]`` (with its leading zeros), ``extra["imdb_url"]`` and ``extra["tmdb_id"]``;
- ratings.csv is read by pandas' C parser (ml-32m has 32 million lines); a line it cannot parse is found again
  line by line and named.

A malformed line raises :class:`recplatform.ingest.ValidationError` naming the file, the line and the field.
Every frame records its file and lines (see :mod:`recplatform.datasets`), so later validation errors do too.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from recplatform.datasets import Dataset, with_source
from recplatform.ingest import ValidationError
from recplatform.text.templates import tags_text

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
ML1M_OCCUPATIONS = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin", 4: "college/grad student",
    5: "customer service", 6: "doctor/health care", 7: "executive/managerial", 8: "farmer", 9: "homemaker",
    10: "K-12 student", 11: "lawyer", 12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist",
    16: "self-employed", 17: "technician/engineer", 18: "tradesman/craftsman", 19: "unemployed", 20: "writer",
}
_TITLE_YEAR = re.compile(r"\((\d{4})\)")


def load_movielens(path: str | Path, *, allow_empty: bool = False) -> Dataset:
    """Read a MovieLens directory (ml-100k raw layout or ml-1m ``::`` layout) into a :class:`Dataset`.

    A ratings file with no rating is refused (a ValidationError naming the file) unless ``allow_empty``: an
    empty ``u.data`` is far more often a failed download or copy than an intended load of users and items only.
    """
    root = Path(path).expanduser()
    layout = detect_layout(root)
    if layout == "ml-100k":
        dataset = _load_100k(root)
    elif layout == "ml-1m":
        dataset = _load_1m(root)
    elif layout == "csv":
        dataset = _load_csv(root)
    else:
        raise FileNotFoundError(
            f"{root}: not a MovieLens directory (expected u.user/u.item/u.data of ml-100k, "
            f"users.dat/movies.dat/ratings.dat of ml-1m, or ratings.csv/movies.csv of ml-latest, ml-25m, ml-32m)")
    if not allow_empty and len(dataset.interactions) == 0:
        ratings = root / {"ml-100k": "u.data", "ml-1m": "ratings.dat", "csv": "ratings.csv"}[layout]
        raise ValidationError(str(ratings), None, "interactions", 0,
                              "the ratings file has no rating (pass allow_empty=True / --allow-empty to load "
                              "users and items only)", is_file=True)
    return dataset


def detect_layout(root: Path) -> str | None:
    """``ml-100k``, ``ml-1m`` or ``csv`` (today's GroupLens releases) from the files in ``root``; None if none."""
    if (root / "u.data").exists():
        return "ml-100k"
    if (root / "ratings.dat").exists():
        return "ml-1m"
    if (root / "ratings.csv").exists() or (root / "movies.csv").exists():
        return "csv"
    return None


def has_demographics(root: str | Path) -> bool:
    """Whether the MovieLens directory's layout carries user demographics (the CSV releases do not)."""
    return detect_layout(Path(root).expanduser()) in ("ml-100k", "ml-1m")


# ----- helpers ------------------------------------------------------------------------------------
def _rows(path: Path, sep: str, names: list[str], encoding: str = "ascii") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-empty line; a wrong field count names the first missing field, a byte
    the encoding cannot decode names the field it is in."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _undecodable(path, lineno, raw, sep, names, encoding, exc) from None
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(sep)
            if len(fields) != len(names):
                field = names[len(fields)] if len(fields) < len(names) else f"field {len(names) + 1}"
                raise ValidationError(
                    str(path), lineno, field, line,
                    f"expected {len(names)} fields separated by {sep!r}, found {len(fields)}", is_file=True)
            yield lineno, fields


def _undecodable(path: Path, lineno: int, raw: bytes, sep: str, names: list[str], encoding: str,
                 exc: UnicodeDecodeError) -> ValidationError:
    """The ValidationError for a line with a byte ``encoding`` cannot decode: the field holding that byte."""
    index = raw[:exc.start].count(sep.encode("ascii"))
    field = names[index] if index < len(names) else f"field {index + 1}"
    return ValidationError(str(path), lineno, field, raw.rstrip(b"\r\n"),
                           f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not {encoding} text",
                           is_file=True)


def _int(path: Path, lineno: int, field: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValidationError(str(path), lineno, field, text, "not an integer", is_file=True) from None


def _float(path: Path, lineno: int, field: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValidationError(str(path), lineno, field, text, "not a number", is_file=True) from None
    if not np.isfinite(value):
        raise ValidationError(str(path), lineno, field, text, "not a finite number", is_file=True)
    return value


def _id(path: Path, lineno: int, field: str, text: str) -> str:
    value = text.strip()
    if not value:
        raise ValidationError(str(path), lineno, field, text, "empty id", is_file=True)
    return value


def _title_year(title: str) -> int | None:
    found = _TITLE_YEAR.findall(title)
    return int(found[-1]) if found else None


def _users_frame(records: list[dict], lines: list[int], source: Path) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=["user_id", "age", "gender", "occupation", "zip_code"])
    frame["age"] = frame["age"].astype("Int64")
    return with_source(frame, str(source), lines)


def _items_frame(records: list[dict], lines: list[int], source: Path) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(
        records, columns=["item_id", "title", "year", "genres", "description", "extra"])
    frame["year"] = frame["year"].astype("Int64")
    frame["description"] = frame["description"].astype(object)
    return with_source(frame, str(source), lines)


def _ratings(path: Path, sep: str, encoding: str = "ascii") -> pd.DataFrame:
    names = ["user_id", "item_id", "rating", "timestamp"]
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[int] = []
    lines: list[int] = []
    for lineno, f in _rows(path, sep, names, encoding):
        users.append(_id(path, lineno, "user_id", f[0]))
        items.append(_id(path, lineno, "item_id", f[1]))
        ratings.append(_float(path, lineno, "rating", f[2]))
        stamps.append(_int(path, lineno, "timestamp", f[3]))
        lines.append(lineno)
    frame = pd.DataFrame({
        "user_id": pd.Series(users, dtype=object),
        "item_id": pd.Series(items, dtype=object),
        "rating": np.asarray(ratings, dtype="float64"),
        "weight": np.ones(len(ratings), dtype="float64"),
        "event_type": "rating",
        "occurred_at": pd.to_datetime(np.asarray(stamps, dtype="int64"), unit="s", utc=True),
    })
    return with_source(frame, str(path), lines)


# ----- ml-100k ------------------------------------------------------------------------------------
def _genre_names(root: Path) -> list[str]:
    path = root / "u.genre"
    if not path.exists():
        return list(ML100K_GENRES)
    by_index: dict[int, str] = {}
    for lineno, (name, index) in _rows(path, "|", ["genre", "index"], "latin-1"):
        by_index[_int(path, lineno, "index", index)] = name.strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise ValidationError(str(path), len(by_index), "index", sorted(by_index),
                              "genre indexes must run 0..n-1", is_file=True)
    return [by_index[i] for i in range(len(by_index))]


def _load_100k(root: Path) -> Dataset:
    path = root / "u.user"
    users, user_lines = [], []
    for lineno, f in _rows(path, "|", ["user_id", "age", "gender", "occupation", "zip_code"]):
        users.append({
            "user_id": _id(path, lineno, "user_id", f[0]),
            "age": _int(path, lineno, "age", f[1]) if f[1].strip() else None,
            "gender": f[2].strip() or None,
            "occupation": f[3].strip() or None,
            "zip_code": f[4].strip() or None,
        })
        user_lines.append(lineno)

    genres = _genre_names(root)
    path = root / "u.item"
    names = ["item_id", "title", "release_date", "video_release_date", "imdb_url"] + [f"genre:{g}" for g in genres]
    items, item_lines = [], []
    for lineno, f in _rows(path, "|", names, "latin-1"):
        flags = f[5:]
        for name, flag in zip(names[5:], flags):
            if flag not in ("0", "1"):
                raise ValidationError(str(path), lineno, name, flag, "genre flag must be 0 or 1", is_file=True)
        release = _date(path, lineno, "release_date", f[2])
        video = _date(path, lineno, "video_release_date", f[3])
        title = f[1].strip()
        extra = {}
        if release:
            extra["release_date"] = release.date().isoformat()
        if video:
            extra["video_release_date"] = video.date().isoformat()
        if f[4].strip():
            extra["imdb_url"] = f[4].strip()
        year = _title_year(title)
        items.append({
            "item_id": _id(path, lineno, "item_id", f[0]),
            "title": title,
            "year": year if year is not None else (release.year if release else None),
            "genres": [g for g, flag in zip(genres, flags) if flag == "1"],
            "description": None,
            "extra": extra,
        })
        item_lines.append(lineno)

    return Dataset(
        name="ml-100k",
        users=_users_frame(users, user_lines, root / "u.user"),
        items=_items_frame(items, item_lines, root / "u.item"),
        interactions=_ratings(root / "u.data", "\t"),
        source=str(root),
    )


def _date(path: Path, lineno: int, field: str, text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%d-%b-%Y")
    except ValueError:
        raise ValidationError(str(path), lineno, field, text, "not a date like 01-Jan-1995", is_file=True) from None


# ----- ml-1m --------------------------------------------------------------------------------------
def _load_1m(root: Path) -> Dataset:
    path = root / "users.dat"
    users, user_lines = [], []
    for lineno, f in _rows(path, "::", ["user_id", "gender", "age", "occupation", "zip_code"], "latin-1"):
        code = _int(path, lineno, "occupation", f[3])
        if code not in ML1M_OCCUPATIONS:
            raise ValidationError(str(path), lineno, "occupation", f[3], "unknown ml-1m occupation code",
                                  is_file=True)
        users.append({
            "user_id": _id(path, lineno, "user_id", f[0]),
            "age": _int(path, lineno, "age", f[2]),
            "gender": f[1].strip() or None,
            "occupation": ML1M_OCCUPATIONS[code],
            "zip_code": f[4].strip() or None,
        })
        user_lines.append(lineno)

    path = root / "movies.dat"
    items, item_lines = [], []
    for lineno, f in _rows(path, "::", ["item_id", "title", "genres"], "latin-1"):
        title = f[1].strip()
        items.append({
            "item_id": _id(path, lineno, "item_id", f[0]),
            "title": title,
            "year": _title_year(title),
            "genres": [g.strip() for g in f[2].split("|") if g.strip() and g.strip() != "(no genres listed)"],
            "description": None,
            "extra": {},
        })
        item_lines.append(lineno)

    return Dataset(
        name="ml-1m",
        users=_users_frame(users, user_lines, root / "users.dat"),
        items=_items_frame(items, item_lines, root / "movies.dat"),
        interactions=_ratings(root / "ratings.dat", "::"),
        source=str(root),
    )


# ----- the CSV layout (ml-latest-small, ml-latest, ml-25m, ml-32m) ------------------------------------------------
CSV_HEADERS = {
    "ratings.csv": ["userId", "movieId", "rating", "timestamp"],
    "movies.csv": ["movieId", "title", "genres"],
    "tags.csv": ["userId", "movieId", "tag", "timestamp"],
    "links.csv": ["movieId", "imdbId", "tmdbId"],
}


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a GroupLens CSV file after its header, which must be GroupLens' own."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    names = CSV_HEADERS[path.name]
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ValidationError(str(path), 1, "header", "", f"empty file; expected the header "
                                      f"{','.join(names)}", is_file=True)
            if [h.strip().lstrip("\ufeff") for h in header] != names:
                raise ValidationError(str(path), 1, "header", ",".join(header),
                                      f"expected GroupLens' header {','.join(names)}", is_file=True)
            start = reader.line_num
            for fields in reader:
                if not fields or fields == [""]:
                    start = reader.line_num
                    continue
                lineno = start + 1
                start = reader.line_num
                if len(fields) != len(names):
                    field = names[len(fields)] if len(fields) < len(names) else f"field {len(names) + 1}"
                    raise ValidationError(str(path), lineno, field, ",".join(fields),
                                          f"expected {len(names)} comma-separated fields, found {len(fields)}",
                                          is_file=True)
                yield lineno, fields
        except UnicodeDecodeError as exc:
            raise ValidationError(str(path), reader.line_num + 1, "line", repr(exc.object[exc.start:exc.start + 8]),
                                  f"byte 0x{exc.object[exc.start]:02x} is not UTF-8 text", is_file=True) from None
        except csv.Error as exc:
            raise ValidationError(str(path), reader.line_num, "line", "", f"not CSV: {exc}", is_file=True) from None


def _csv_ratings(path: Path) -> pd.DataFrame:
    """ratings.csv by pandas' C parser; any line it refuses is found and named by the line-by-line reader."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype={"userId": str, "movieId": str, "rating": "float64", "timestamp": "int64"},
                            encoding="utf-8", skip_blank_lines=False, keep_default_na=False, na_filter=False)
        if list(frame.columns) != CSV_HEADERS["ratings.csv"]:
            raise ValueError("header")
        ok = bool(frame["userId"].str.strip().ne("").all() and frame["movieId"].str.strip().ne("").all()
                  and np.isfinite(frame["rating"].to_numpy()).all())
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        ok = False
    if not ok:  # the slow path exists to name the line; it raises at the first bad one
        rows = [(lineno, _id(path, lineno, "userId", f[0]), _id(path, lineno, "movieId", f[1]),
                 _float(path, lineno, "rating", f[2]), _int(path, lineno, "timestamp", f[3]))
                for lineno, f in _csv_rows(path)]
        frame = pd.DataFrame([r[1:] for r in rows], columns=CSV_HEADERS["ratings.csv"])
        lines = [r[0] for r in rows]
    else:
        lines = list(range(2, len(frame) + 2))
    out = pd.DataFrame({
        "user_id": pd.Series(frame["userId"].str.strip().to_numpy(), dtype=object),
        "item_id": pd.Series(frame["movieId"].str.strip().to_numpy(), dtype=object),
        "rating": frame["rating"].to_numpy(dtype="float64"),
        "weight": np.ones(len(frame), dtype="float64"),
        "event_type": "rating",
        "occurred_at": pd.to_datetime(frame["timestamp"].to_numpy(dtype="int64"), unit="s", utc=True),
    })
    return with_source(out, str(path), lines)


def _csv_tags(path: Path) -> dict[str, list[str]]:
    """Each movie's tags, most users first (ties alphabetical); spelling variants count as one tag."""
    if not path.exists():
        return {}
    users: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    spelling: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for lineno, (user, movie, tag, _) in _csv_rows(path):
        text = " ".join(tag.split())
        if not text:
            continue
        key = text.casefold()
        movie = _id(path, lineno, "movieId", movie)
        users[movie][key].add(user.strip())
        spelling[movie][key][text] += 1
    return {movie: [spelling[movie][key].most_common(1)[0][0]
                    for key in sorted(by_tag, key=lambda k: (-len(by_tag[k]), k))]
            for movie, by_tag in users.items()}


def _csv_links(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    links: dict[str, dict] = {}
    for lineno, (movie, imdb, tmdb) in _csv_rows(path):
        extra = {}
        if imdb.strip():
            if not imdb.strip().isdigit():
                raise ValidationError(str(path), lineno, "imdbId", imdb, "not a number", is_file=True)
            extra["imdb_id"] = imdb.strip()
            extra["imdb_url"] = f"https://www.imdb.com/title/tt{imdb.strip()}/"
        if tmdb.strip():
            extra["tmdb_id"] = tmdb.strip()
        links[_id(path, lineno, "movieId", movie)] = extra
    return links


def _load_csv(root: Path) -> Dataset:
    tags = _csv_tags(root / "tags.csv")
    links = _csv_links(root / "links.csv")
    path = root / "movies.csv"
    items, item_lines = [], []
    for lineno, (movie, title, genres) in _csv_rows(path):
        item_id = _id(path, lineno, "movieId", movie)
        title = title.strip()
        extra = dict(links.get(item_id, {}))
        if item_id in tags:
            extra["tags"] = tags[item_id][:50]
        items.append({
            "item_id": item_id,
            "title": title,
            "year": _title_year(title),
            "genres": [g.strip() for g in genres.split("|") if g.strip() and g.strip() != "(no genres listed)"],
            "description": tags_text(tags.get(item_id, [])),
            "extra": extra,
        })
        item_lines.append(lineno)

    interactions = _csv_ratings(root / "ratings.csv")
    first = interactions.reset_index().drop_duplicates("user_id")
    users = [{"user_id": u, "age": None, "gender": None, "occupation": None, "zip_code": None}
             for u in first["user_id"]]
    name = root.name if root.name.startswith("ml-") else "movielens-csv"
    return Dataset(
        name=name,
        users=_users_frame(users, first["line"].tolist(), root / "ratings.csv"),
        items=_items_frame(items, item_lines, root / "movies.csv"),
        interactions=interactions,
        source=str(root),
    )
