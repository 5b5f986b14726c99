"""Bounds on stored values, one copy for ingestion (``recplatform.ingest.validate``) and the client's checks.

The CHECK constraints of ``rec.users``, ``rec.items`` and ``rec.interactions`` (migration 0005) repeat the
numeric ones so that a write that skips validation is refused too; ``docs/operations.md`` "Limits on inputs"
lists every limit and where it is enforced. Request limits of the SQL functions (k, years, genres per call)
are ``rec.limits()``'s, not these.
"""

from __future__ import annotations

GENDERS = ("M", "F", "X")  # M = male, F = female, X = other / non-binary
AGE_RANGE = (0, 120)
YEAR_RANGE = (1800, 2100)
RATING_RANGE = (0.0, 5.0)  # exclusive below: a rating, when given, is > 0 (a zero strength teaches nothing)
MAX_WEIGHT = 1e6  # interaction weight: finite, > 0 and at most this
MAX_ID_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 64
MAX_TITLE_LENGTH = 1_000
MAX_DESCRIPTION_LENGTH = 10_000
MAX_SHORT_TEXT_LENGTH = 200  # occupation, zip_code, one genre name (rec.limits().max_genre_length)
MAX_GENRES_PER_ITEM = 100
MAX_VECTOR_DIMENSION = 16_000  # pgvector's largest vector; the SQL functions then require the space's dimension
