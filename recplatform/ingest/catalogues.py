"""Which catalogues a database holds (``rec.datasets``): loading a second, different one is refused unless asked.

Two catalogues in one database mix silently: cold-start and popularity lists blend both (Star Wars beside the
demo's synthetic titles), and ids of one may collide with the other's. A dataset's *catalogue* names its id space:
``synthetic`` for every synthetic dataset (reloading with another size or seed replaces rows under the same ids),
else the dataset's name (``ml-100k``, ``ml-1m``, ``ml-latest-small`` …). Rows added one by one (client, task API)
belong to no recorded catalogue and are never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recplatform.config import Settings, get_settings
from recplatform.db import connect, transaction

_RECORDED = "SELECT catalogue, name, source, last_loaded_at FROM rec.datasets ORDER BY first_loaded_at, catalogue"
_RECORD = """
INSERT INTO rec.datasets AS d (catalogue, name, source) VALUES (%s, %s, %s)
ON CONFLICT (catalogue) DO UPDATE SET name = excluded.name, source = excluded.source, last_loaded_at = now()
"""


@dataclass(frozen=True)
class Recorded:
    catalogue: str
    name: str
    source: str
    last_loaded_at: datetime


class MixedCataloguesError(ValueError):
    """The database already holds another catalogue; says how to start afresh or load beside it on purpose."""

    def __init__(self, catalogue: str, present: list[Recorded]):
        names = ", ".join(f"{r.name!r} (loaded {r.last_loaded_at:%Y-%m-%d %H:%M} from {r.source or 'memory'})"
                          for r in present)
        super().__init__(
            f"this database already holds {names}; loading {catalogue!r} beside it would mix two catalogues "
            "(cold-start and popularity lists would blend both). Start afresh with `recplatform down --purge` then "
            "`recplatform up` (deletes all data), use another database (RECPLATFORM_DATABASE_NAME), or pass "
            "--add to load it beside on purpose")
        self.catalogue = catalogue
        self.present = present


def recorded(settings: Settings | None = None) -> list[Recorded]:
    """The catalogues loaded into this database, oldest first."""
    with connect(settings or get_settings(), vector=False) as conn:
        return [Recorded(*row) for row in conn.execute(_RECORDED).fetchall()]


def check(catalogue: str, settings: Settings | None = None, *, allow_mixed: bool = False) -> list[Recorded]:
    """Raise :class:`MixedCataloguesError` when another catalogue is present (unless ``allow_mixed``); returns the
    other catalogues present (what a caller that allows mixing may warn about)."""
    others = [r for r in recorded(settings) if r.catalogue != catalogue]
    if others and not allow_mixed:
        raise MixedCataloguesError(catalogue, others)
    return others


def record(catalogue: str, name: str, source: str = "", settings: Settings | None = None) -> None:
    """Note that ``catalogue`` (as dataset ``name`` from ``source``) is loaded into this database."""
    with transaction(settings or get_settings()) as conn:
        conn.execute(_RECORD, (catalogue, name, source))
