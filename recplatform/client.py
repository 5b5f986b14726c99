"""Python client: recommendations, similar items, explanations and ingestion calls over the SQL functions.

Retrieval reads go to ``Settings.read_url`` (``RECPLATFORM_READ_DATABASE_URL``, or the hot standby that
``recplatform up --replica`` started), ingestion writes to the primary.

The client never ranks anything itself: every list comes from the ``rec.*`` SQL functions (recplatform/sql),
so Python, the CLI and analytics tools see the same results. For a person who is not stored,
:meth:`RecClient.recommend_for_profile` writes their demographic prompt with the same template and embeds it
in-process with the encoder of the active content space, then calls ``rec.recommend_for_demographic_vector``.
The early argument checks use the limits and strategy names the database defines (``rec.limits()``,
``rec.strategies``; :mod:`recplatform.retrieval.limits` reads them once per database).

Errors: :class:`UnknownUserError`, :class:`UnknownItemError`, :class:`InvalidRequestError` (``.argument``
names the bad argument) and :class:`ServiceUnavailableError` (the database does not answer: the message names
the redacted URL and says what to do, as the command line does), all subclasses of :class:`RecClientError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding.encoder import load_encoder
from recplatform.input_limits import AGE_RANGE, GENDERS, MAX_ID_LENGTH, MAX_SHORT_TEXT_LENGTH, MAX_VECTOR_DIMENSION
from recplatform.retrieval import limits, sql
from recplatform.retrieval.limits import Limits
from recplatform.text.templates import TEMPLATE_VERSION, user_prompt


# ----- results and errors -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recommendation:
    """One ranked item; ``source`` says which path served it (taste, demographic_neighbors, learned_map, ...)."""

    rank: int
    item_id: str
    title: str
    score: float
    source: str


@dataclass(frozen=True)
class Reason:
    """One contribution to an explanation: a history item or a neighbour user, with its similarity/weight."""

    source: str
    reason: str  # history_item | neighbor_user | popularity
    ref_id: str
    label: str
    similarity: float | None
    weight: float | None


@dataclass(frozen=True)
class Explanation:
    user_id: str
    item_id: str
    source: str | None
    reasons: list[Reason] = field(default_factory=list)


class RecClientError(Exception):
    """Base class of the client's errors."""


class UnknownUserError(RecClientError, LookupError):
    def __init__(self, user_id: object, message: str | None = None):
        super().__init__(message or f"unknown user_id {user_id!r}")
        self.user_id = user_id


class UnknownItemError(RecClientError, LookupError):
    def __init__(self, item_id: object, message: str | None = None):
        super().__init__(message or f"unknown item_id {item_id!r}")
        self.item_id = item_id


class ServiceUnavailableError(RecClientError, ConnectionError):
    """Postgres does not answer (not started, or started from another directory's state): says how to fix it."""

    def __init__(self, message: str):
        super().__init__(message)


class InvalidRequestError(RecClientError, ValueError):
    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument


# ----- argument checks (types; value ranges are checked again by the SQL functions) -----------------------
def _check_k(k: Any, limit: Limits) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidRequestError("k", f"must be an integer between 1 and {limit.max_k}, got {k!r}")
    if not 1 <= int(k) <= limit.max_k:
        raise InvalidRequestError("k", f"must be between 1 and {limit.max_k}, got {k}")
    return int(k)


def _check_genres(genres: Any, limit: Limits) -> list[str] | None:
    if genres is None:
        return None
    if isinstance(genres, str):
        genres = [genres]
    if not isinstance(genres, Iterable) or isinstance(genres, (bytes, Mapping)):
        raise InvalidRequestError("genres", f"must be a genre name or a list of genre names, got {genres!r}")
    out = []
    for genre in genres:  # stops at the bound: a generator of a million names is never materialised
        if len(out) == limit.max_genres:
            raise InvalidRequestError("genres", f"at most {limit.max_genres} genre names per request")
        out.append(genre)
    if not out or any(not isinstance(g, str) or not g.strip() for g in out):
        raise InvalidRequestError("genres", f"must be a non-empty list of non-empty genre names, got {_shown(genres)}")
    for genre in out:
        if "\x00" in genre:
            raise InvalidRequestError("genres", f"a genre name contains a NUL character: {_shown(genre)}")
        if len(genre) > limit.max_genre_length:
            raise InvalidRequestError("genres", f"a genre name is longer than {limit.max_genre_length} characters")
    return out


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _check_years(years: Any, limit: Limits) -> tuple[int | None, int | None]:
    """None, one year, a (min, max) pair with None for an open end, or a range."""

    def year(value: Any) -> int | None:
        if value is None:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not limit.min_year <= int(value) <= limit.max_year):
            raise InvalidRequestError("years", f"years must be integers between {limit.min_year} and "
                                               f"{limit.max_year}, got {value!r}")
        return int(value)

    if years is None:
        return None, None
    if isinstance(years, range):
        if years.step != 1 or len(years) == 0:
            raise InvalidRequestError("years", f"a range of years must be non-empty with step 1, got {years!r}")
        return year(years.start), year(years.stop - 1)
    if isinstance(years, (int, np.integer)) and not isinstance(years, bool):
        return year(years), year(years)
    if isinstance(years, (tuple, list)) and len(years) == 2:
        low, high = year(years[0]), year(years[1])
        if low is not None and high is not None and low > high:
            raise InvalidRequestError("years", f"min year {low} is greater than max year {high}")
        return low, high
    raise InvalidRequestError("years", f"must be a year, a (min, max) pair or a range, got {years!r}")


def _check_strategy(strategy: Any, limit: Limits) -> str | None:
    if strategy is not None and strategy not in limit.strategies:
        raise InvalidRequestError("strategy", f"must be one of {', '.join(limit.strategies)}, got {strategy!r}")
    return strategy


def _check_weight(weight: Any, name: str = "popularity_weight") -> float | None:
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not 0 <= float(weight) <= 1:
        raise InvalidRequestError(name, f"must be a number between 0 and 1, got {weight!r}")
    return float(weight)


def _check_id(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
        raise InvalidRequestError(name, f"must be a string id, got {_shown(value)}")
    value = str(value)
    if "\x00" in value:
        raise InvalidRequestError(name, f"contains a NUL character: {_shown(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequestError(name, f"longer than {MAX_ID_LENGTH} characters (no stored id is)")
    return value


def _check_profile_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(name, f"must be a string, got {_shown(value)}")
    if "\x00" in value:
        raise InvalidRequestError(name, f"contains a NUL character: {_shown(value)}")
    if len(value.strip()) > MAX_SHORT_TEXT_LENGTH:
        raise InvalidRequestError(name, f"longer than {MAX_SHORT_TEXT_LENGTH} characters")
    return value


def _check_profile(age: Any, gender: Any, occupation: Any, zip_code: Any) -> dict[str, Any]:
    """The profile checked as ingestion checks a stored user (recplatform.input_limits: ages, genders, lengths)."""
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, np.integer))
                            or not AGE_RANGE[0] <= age <= AGE_RANGE[1]):
        raise InvalidRequestError("age", f"must be an integer between {AGE_RANGE[0]} and {AGE_RANGE[1]}, "
                                         f"got {_shown(age)}")
    gender = _check_profile_text("gender", gender)
    if gender is not None and gender.strip() and gender.strip() not in GENDERS:
        raise InvalidRequestError("gender", f"must be one of {', '.join(GENDERS)} or empty, got {_shown(gender)}")
    return {"age": None if age is None else int(age), "gender": gender.strip() if gender else gender,
            "occupation": _check_profile_text("occupation", occupation),
            "zip_code": _check_profile_text("zip_code", zip_code)}


def _translate(error: psycopg.Error, user_id: Any = None, item_id: Any = None) -> Exception:
    diag = error.diag
    column = diag.column_name or ""
    message = diag.message_primary or str(error)
    if diag.sqlstate == "P0002" and column == "user_id":
        return UnknownUserError(user_id, message)
    if diag.sqlstate == "P0002" and column == "item_id":
        return UnknownItemError(item_id, message)
    if diag.sqlstate in ("22023", "22000", "P0002") and column:
        return InvalidRequestError(column, message)
    return error


def _unreachable(settings: Settings) -> bool:
    """Whether the primary refuses a new connection (an OperationalError mid-write may be something else)."""
    try:
        db.connect(settings, vector=False).close()
    except psycopg.OperationalError:
        return True
    return False


# ----- the client ---------------------------------------------------------------------------------------
class RecClient:
    """Recommendations for stored users, unstored profiles and items, from Python (one connection, thread-safe)."""

    def __init__(self, settings: Settings | None = None, *, database_url: str | None = None,
                 broker_url: str | None = None, read_database_url: str | None = None):
        settings = settings or get_settings()
        updates = {k: v for k, v in (("database_url", database_url), ("broker_url", broker_url),
                                     ("read_database_url", read_database_url)) if v}
        self.settings = settings.model_copy(update=updates) if updates else settings
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_urls(cls, database_url: str, broker_url: str | None = None) -> "RecClient":
        return cls(Settings(database_url=database_url, broker_url=broker_url))

    # -- plumbing --
    def _connection(self) -> psycopg.Connection:
        """The client's one connection, for reads only: to the read replica when one is configured or started
        (``Settings.read_url``); ingestion writes to the primary through :mod:`recplatform.publish`."""
        if self._conn is None or self._conn.closed:
            try:
                self._conn = db.connect(self.settings, autocommit=True, read=True)
            except psycopg.OperationalError as error:
                raise ServiceUnavailableError(db.unreachable_message(self.settings, error,
                                                                     self.settings.read_url)) from None
        return self._conn

    def _limits(self) -> Limits:
        """The database's request limits and strategy names (read once per database, then cached)."""
        with self._lock:
            return limits.limits(self.settings, self._connection())

    def _rows(self, query: str, params: Mapping[str, Any], *, user_id: Any = None, item_id: Any = None) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(query, params).fetchall()
            except psycopg.Error as error:
                translated = _translate(error, user_id, item_id)
                if translated is error:
                    raise
                raise translated from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "RecClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retrieval --
    def recommend(self, user_id: str, k: int = 10, *, exclude_seen: bool = True, genres: Sequence[str] | str | None = None,
                  years: Any = None, strategy: str | None = None, popularity_weight: float | None = None,
                  content_weight: float | None = None,
                  exploration_share: float | None = None) -> list[Recommendation]:
        """Top k items for a stored user (warm: taste; onboarding: prior + evidence; cold: the strategy in
        rec.retrieval_defaults).

        ``popularity_weight`` and ``content_weight`` (warm users: share of the content-space similarity) override
        the defaults in rec.retrieval_defaults; ``exploration_share`` (0..1) is the share of the k slots given to
        fresh items (``source = 'exploration'``), 0 disables it, None takes the default.
        """
        user_id = _check_id("user_id", user_id)
        limit = self._limits()
        min_year, max_year = _check_years(years, limit)
        params = {"user_id": user_id, "k": _check_k(k, limit), "exclude_seen": bool(exclude_seen),
                  "genres": _check_genres(genres, limit), "min_year": min_year, "max_year": max_year,
                  "strategy": _check_strategy(strategy, limit), "popularity_weight": _check_weight(popularity_weight),
                  "content_weight": _check_weight(content_weight, "content_weight"),
                  "exploration_share": _check_weight(exploration_share, "exploration_share")}
        return [Recommendation(*r) for r in self._rows(sql.RECOMMEND, params, user_id=user_id)]

    def new_for_you(self, user_id: str, k: int = 10, *, genres: Sequence[str] | str | None = None,
                    years: Any = None, exclude_seen: bool = True) -> list[Recommendation]:
        """Fresh items only (few interactions, or recently added), ranked for the user (``source = 'fresh'``)."""
        user_id = _check_id("user_id", user_id)
        limit = self._limits()
        min_year, max_year = _check_years(years, limit)
        params = {"user_id": user_id, "k": _check_k(k, limit), "genres": _check_genres(genres, limit),
                  "min_year": min_year,
                  "max_year": max_year, "exclude_seen": bool(exclude_seen)}
        return [Recommendation(*r) for r in self._rows(sql.NEW_FOR_YOU, params, user_id=user_id)]

    def retrieval_defaults(self) -> list[dict[str, Any]]:
        """The rows of rec.retrieval_defaults (per user type: strategy, weights, exploration, tuning record)."""
        with self._lock:
            cur = self._connection().execute(sql.RETRIEVAL_DEFAULTS)
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def recommend_for_profile(self, *, age: int | None = None, gender: str | None = None,
                              occupation: str | None = None, zip_code: str | None = None, k: int = 10,
                              genres: Sequence[str] | str | None = None, years: Any = None,
                              strategy: str | None = None,
                              popularity_weight: float | None = None) -> list[Recommendation]:
        """Top k items for a person who is not stored, from the demographics given here.

        With no demographics at all the result is popularity (``source`` says so).
        """
        profile = _check_profile(age, gender, occupation, zip_code)
        limit = self._limits()
        min_year, max_year = _check_years(years, limit)
        k, strategy = _check_k(k, limit), _check_strategy(strategy, limit)  # before the encoder runs
        genres = _check_genres(genres, limit)
        vector = self.profile_vector(profile) if any(v not in (None, "") for v in profile.values()) else None
        params = {"vector": vector, "k": k, "strategy": strategy,
                  "genres": genres, "min_year": min_year, "max_year": max_year,
                  "popularity_weight": _check_weight(popularity_weight)}
        return [Recommendation(*r) for r in self._rows(sql.RECOMMEND_FOR_DEMOGRAPHIC, params)]

    def profile_vector(self, profile: Mapping[str, Any]) -> np.ndarray | None:
        """The demographic-prompt embedding of a profile with the active content space's encoder and template."""
        with self._lock:
            row = self._connection().execute(sql.ACTIVE_CONTENT_SPACE).fetchone()
        if row is None:
            return None  # no content space yet: the SQL serves popularity
        _, model_ref, dimension, template_version = row
        if template_version and template_version != TEMPLATE_VERSION:
            raise InvalidRequestError("profile", f"the active content space uses templates {template_version!r} "
                                                 f"but this process renders {TEMPLATE_VERSION!r}")
        encoder = load_encoder(model_ref)
        vector = encoder.encode([user_prompt(profile)])[0]
        if len(vector) != dimension:
            raise InvalidRequestError("profile", f"encoder {model_ref} gives dimension {len(vector)}, "
                                                 f"the content space has {dimension}")
        return np.asarray(vector, dtype=np.float32)

    def recommend_for_vector(self, vector: Sequence[float] | np.ndarray, k: int = 10, *,
                             genres: Sequence[str] | str | None = None, years: Any = None,
                             space: str = "content", exclude_user: str | None = None) -> list[Recommendation]:
        """Items nearest an arbitrary vector in the active ``content`` or ``collaborative`` space."""
        try:
            array = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidRequestError("query", f"must be a sequence of numbers, got {type(vector).__name__}") from None
        if array.ndim != 1 or not len(array) or not np.all(np.isfinite(array)):
            raise InvalidRequestError("query", "must be a non-empty one-dimensional vector of finite numbers")
        if len(array) > MAX_VECTOR_DIMENSION:
            raise InvalidRequestError("query", f"has dimension {len(array):,}; it must equal the embedding space's "
                                               f"(vectors have at most {MAX_VECTOR_DIMENSION:,} dimensions)")
        if not np.isfinite(np.linalg.norm(array.astype(np.float64))) or not np.any(array):
            raise InvalidRequestError("query", "must have a finite, non-zero length (cosine similarity is undefined "
                                               "for a zero vector)")
        limit = self._limits()
        min_year, max_year = _check_years(years, limit)
        params = {"vector": array, "k": _check_k(k, limit), "genres": _check_genres(genres, limit), "min_year": min_year,
                  "max_year": max_year, "space": space,
                  "exclude_user": None if exclude_user is None else _check_id("exclude_user", exclude_user)}
        return [Recommendation(*r) for r in self._rows(sql.RECOMMEND_FOR_VECTOR, params)]

    def similar_items(self, item_id: str, k: int = 10, *, genres: Sequence[str] | str | None = None,
                      years: Any = None, space: str | None = None) -> list[Recommendation]:
        """Items most similar to ``item_id`` (collaborative space when it has a vector there, else content)."""
        item_id = _check_id("item_id", item_id)
        limit = self._limits()
        min_year, max_year = _check_years(years, limit)
        params = {"item_id": item_id, "k": _check_k(k, limit), "genres": _check_genres(genres, limit), "min_year": min_year,
                  "max_year": max_year, "space": space}
        return [Recommendation(*r) for r in self._rows(sql.SIMILAR_ITEMS, params, item_id=item_id)]

    def explain(self, user_id: str, item_id: str, k: int = 5) -> Explanation:
        """The history items (warm) or neighbour users (cold) that pulled ``item_id`` up for ``user_id``."""
        user_id, item_id = _check_id("user_id", user_id), _check_id("item_id", item_id)
        rows = self._rows(sql.EXPLAIN, {"user_id": user_id, "item_id": item_id, "k": _check_k(k, self._limits())},
                          user_id=user_id, item_id=item_id)
        reasons = [Reason(*r) for r in rows]
        return Explanation(user_id, item_id, reasons[0].source if reasons else None, reasons)

    # -- ingestion: validated, one transaction, then Feast online write and embedding queue --
    def _ingest(self, **kwargs: Any):
        from recplatform.publish import ingest_and_publish  # deferred: pandas (ingestion)

        try:
            return ingest_and_publish(settings=self.settings, **kwargs)
        except psycopg.OperationalError as error:
            if not _unreachable(self.settings):
                raise
            raise ServiceUnavailableError(db.unreachable_message(self.settings, error)) from None

    def add_users(self, rows: Any, **kwargs: Any):
        """Insert or update users (canonical columns); returns the IngestResult."""
        return self._ingest(users=rows, **kwargs)

    update_users = add_users

    def add_items(self, rows: Any, **kwargs: Any):
        """Insert or update items (canonical columns); returns the IngestResult."""
        return self._ingest(items=rows, **kwargs)

    update_items = add_items

    def add_interactions(self, rows: Any, **kwargs: Any):
        """Append interactions (canonical columns); their users and items must exist; returns the IngestResult."""
        return self._ingest(interactions=rows, **kwargs)
