"""The embedding-space registry (``rec.embedding_models``): register, find, measure and switch spaces.

A content space is identified by (model_ref, template version, dimension) and has a deterministic name,
so every process that runs the same model and templates finds the same space. The first content space
becomes active at once; a later one (new model or new templates) is registered as *building*: workers
backfill it while the active one keeps serving, and :func:`activate` switches in one transaction once it
is full (``recplatform embed --wait`` and ``reconcile`` do that automatically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding.loader import available_cpus
from recplatform.text.templates import TEMPLATE_VERSION

log = logging.getLogger(__name__)

CONTENT, COLLABORATIVE = "content", "collaborative"
# params->>'status' of a space: building (being backfilled), active (serving), retired (replaced), dropping
# (being deleted by drop_space).
BUILDING, ACTIVE, RETIRED, DROPPING = "building", "active", "retired", "dropping"

_COLUMNS = "space_id, name, kind, model_ref, dimension, template_version, is_active, params"


class _EncoderLike(Protocol):
    model_ref: str
    dimension: int


@dataclass(frozen=True)
class Space:
    """One row of ``rec.embedding_models``."""

    space_id: int
    name: str
    kind: str
    model_ref: str
    dimension: int
    template_version: str
    is_active: bool
    params: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        if self.is_active:
            return ACTIVE
        return (self.params or {}).get("status", BUILDING)


@dataclass(frozen=True)
class Completeness:
    """How much of a content space is populated with vectors of the entities' current content."""

    items_total: int
    items_done: int
    users_total: int
    users_done: int

    @property
    def total(self) -> int:
        return self.items_total + self.users_total

    @property
    def done(self) -> int:
        return self.items_done + self.users_done

    @property
    def missing(self) -> int:
        return self.total - self.done

    @property
    def complete(self) -> bool:
        return self.missing == 0


def _row_to_space(row: dict) -> Space:
    return Space(
        space_id=row["space_id"], name=row["name"], kind=row["kind"], model_ref=row["model_ref"],
        dimension=row["dimension"], template_version=row["template_version"], is_active=row["is_active"],
        params=row["params"] or {},
    )


def content_space_name(model_ref: str, template_version: str, dimension: int) -> str:
    """Deterministic name of the content space for a model, template version and dimension.

    Readable (``content/<model>/<template>/<dim>``); a model given as a path is shortened to its last
    component plus a digest of the full reference so that two directories with the same name differ.
    """
    ref = model_ref.rstrip("/")
    short = re.sub(r"[^A-Za-z0-9_.:-]+", "-", ref.rsplit("/", 1)[-1]) or "model"
    if "/" in ref:
        short += "-" + hashlib.sha256(ref.encode()).hexdigest()[:8]
    return f"content/{short}/{template_version or 'none'}/{dimension}"


def _fetch(conn: psycopg.Connection, where: str, params: tuple) -> list[Space]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM rec.embedding_models WHERE {where} ORDER BY space_id", params)
        return [_row_to_space(r) for r in cur.fetchall()]


def active_space(settings: Settings | None = None, kind: str = CONTENT) -> Space | None:
    """The space of ``kind`` that serves queries now, or None when none is active."""
    with db.connect(settings or get_settings(), vector=False) as conn:
        rows = _fetch(conn, "kind = %s AND is_active", (kind,))
    return rows[0] if rows else None


def get_space(settings: Settings | None, key: int | str) -> Space:
    """A space by id or by name; KeyError naming it when there is none."""
    with db.connect(settings or get_settings(), vector=False) as conn:
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            rows = _fetch(conn, "space_id = %s", (int(key),))
        else:
            rows = _fetch(conn, "name = %s", (key,))
    if not rows:
        raise KeyError(f"no embedding space {key!r} in rec.embedding_models")
    return rows[0]


def list_spaces(settings: Settings | None = None, kind: str | None = None) -> list[Space]:
    with db.connect(settings or get_settings(), vector=False) as conn:
        return _fetch(conn, "kind = %s", (kind,)) if kind else _fetch(conn, "true", ())


def serving_and_building(settings: Settings | None = None, kind: str = CONTENT) -> list[Space]:
    """The active space of ``kind`` and the spaces being backfilled to replace it (what workers embed into)."""
    with db.connect(settings or get_settings(), vector=False) as conn:
        return _fetch(conn, "kind = %s AND (is_active OR coalesce(params->>'status', 'building') = 'building')",
                      (kind,))


#: How a space's item HNSW index stores vectors: float32, or halfvec (2-byte floats, half the index memory;
#: pgvector >= 0.7). Chosen at registration as ``params={"storage": "halfvec"}``; see docs/retrieval.md.
STORAGES = ("vector", "halfvec")


def register_space(
    settings: Settings | None,
    name: str,
    kind: str,
    model_ref: str,
    dimension: int,
    template_version: str = "",
    params: dict | None = None,
) -> Space:
    """Register a space (or find the one with this name); it starts inactive, status *building*.

    Raises ValueError when a space of that name exists with a different kind, model, dimension or template.
    """
    settings = settings or get_settings()
    if kind not in (CONTENT, COLLABORATIVE):
        raise ValueError(f"kind: must be 'content' or 'collaborative', got {kind!r}")
    if not isinstance(dimension, int) or not 1 <= dimension <= 2000:
        raise ValueError(f"dimension: must be an integer in 1..2000, got {dimension!r}")
    storage = (params or {}).get("storage", "vector")
    if storage not in STORAGES:
        raise ValueError(f"params.storage: must be one of {', '.join(STORAGES)}, got {storage!r}")
    merged = {"status": BUILDING, **(params or {})}
    with db.transaction(settings) as conn:
        conn.execute(
            "INSERT INTO rec.embedding_models (name, kind, model_ref, dimension, template_version, params) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (name) DO NOTHING",
            (name, kind, model_ref, dimension, template_version, json.dumps(merged)),
        )
        space = _fetch(conn, "name = %s", (name,))[0]
    expected = (kind, model_ref, dimension, template_version)
    found = (space.kind, space.model_ref, space.dimension, space.template_version)
    if found != expected:
        raise ValueError(f"name: embedding space {name!r} already exists as {found}, not {expected}")
    return space


def ensure_content_space(settings: Settings | None, encoder: _EncoderLike) -> Space:
    """The content space for this encoder and the current templates, registered on first use.

    The first content space becomes active at once (there is nothing to keep serving); any later one
    stays *building* until it is full and :func:`activate` switches to it.
    """
    settings = settings or get_settings()
    name = content_space_name(encoder.model_ref, TEMPLATE_VERSION, encoder.dimension)
    space = register_space(settings, name, CONTENT, encoder.model_ref, encoder.dimension, TEMPLATE_VERSION)
    if not space.is_active and active_space(settings, CONTENT) is None:
        try:
            activate(settings, space.space_id)
        except psycopg.errors.UniqueViolation:  # another process activated a space at the same moment
            pass
        space = get_space(settings, space.space_id)
        log.info("content space %s (id %s) is the first one: active", space.name, space.space_id)
    elif not space.is_active and space.status == RETIRED:
        log.info("content space %s was retired; backfilling it again to replace the active one", space.name)
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.embedding_models SET params = params || '{\"status\": \"building\"}' "
                         "WHERE space_id = %s", (space.space_id,))
        space = get_space(settings, space.space_id)
    return space


def activate(settings: Settings | None, space_id: int) -> Space:
    """Make ``space_id`` the active space of its kind in one transaction (the old one is retired)."""
    settings = settings or get_settings()
    with db.transaction(settings) as conn:
        target = _fetch(conn, "space_id = %s", (space_id,))
        if not target:
            raise KeyError(f"space_id: no embedding space {space_id}")
        kind = target[0].kind
        # Lock every space of this kind so two activations serialise.
        conn.execute("SELECT space_id FROM rec.embedding_models WHERE kind = %s FOR UPDATE", (kind,))
        conn.execute(
            "UPDATE rec.embedding_models SET is_active = false, params = params || '{\"status\": \"retired\"}' "
            "WHERE kind = %s AND is_active AND space_id <> %s", (kind, space_id))
        conn.execute(
            "UPDATE rec.embedding_models SET is_active = true, activated_at = now(), "
            "params = params || '{\"status\": \"active\"}' WHERE space_id = %s AND NOT is_active", (space_id,))
        space = _fetch(conn, "space_id = %s", (space_id,))[0]
    log.info("embedding space %s (id %s) is now the active %s space", space.name, space_id, kind)
    return space


# ----- completeness: one place for the "current hash has no vector" anti-joins ----------------------
MISSING_ITEMS_SQL = """
SELECT i.item_id FROM rec.items i
WHERE NOT EXISTS (SELECT 1 FROM rec.item_embeddings e
                  WHERE e.space_id = %(space_id)s AND e.item_id = i.item_id AND e.content_hash = i.content_hash)
ORDER BY i.item_id
"""
MISSING_USERS_SQL = """
SELECT u.user_id FROM rec.users u
WHERE NOT EXISTS (SELECT 1 FROM rec.user_embeddings e
                  WHERE e.space_id = %(space_id)s AND e.user_id = u.user_id AND e.kind = 'demographic'
                    AND e.content_hash = u.content_hash)
ORDER BY u.user_id
"""


def missing_ids(settings: Settings | None, space_id: int) -> dict[str, list[str]]:
    """Ids whose current content hash has no vector in the space: ``{"item": [...], "user": [...]}``."""
    with db.connect(settings or get_settings(), vector=False) as conn:
        return {"item": [r[0] for r in conn.execute(MISSING_ITEMS_SQL, {"space_id": space_id})],
                "user": [r[0] for r in conn.execute(MISSING_USERS_SQL, {"space_id": space_id})]}


def completeness(settings: Settings | None, space_id: int) -> Completeness:
    """Counts of entities and of those whose current content hash has a vector in the space."""
    sql = """
    SELECT (SELECT count(*) FROM rec.items),
           (SELECT count(*) FROM rec.items i JOIN rec.item_embeddings e
              ON e.space_id = %(space_id)s AND e.item_id = i.item_id AND e.content_hash = i.content_hash),
           (SELECT count(*) FROM rec.users),
           (SELECT count(*) FROM rec.users u JOIN rec.user_embeddings e
              ON e.space_id = %(space_id)s AND e.user_id = u.user_id AND e.kind = 'demographic'
                 AND e.content_hash = u.content_hash)
    """
    with db.connect(settings or get_settings(), vector=False) as conn:
        row = conn.execute(sql, {"space_id": space_id}).fetchone()
    return Completeness(*map(int, row))


def activate_if_complete(settings: Settings | None, space: Space) -> bool:
    """Switch to a building content space once it is full; returns whether it is (now) the active one."""
    if space.is_active:
        return True
    if space.status != BUILDING or not completeness(settings, space.space_id).complete:
        return False
    activate(settings, space.space_id)
    return True


# ----- building and dropping a space beside the serving one, without blocking it ---------------------
#: Rows deleted per transaction when an old space is dropped (each batch holds row locks only).
DROP_BATCH = 20_000
_INVALID_INDEXES = """
SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'rec' AND NOT x.indisvalid AND c.relname = ANY(%s)
"""


def _ddl(conn: psycopg.Connection, space_id: int, *, drop: bool) -> list[tuple[str, str]]:
    """(index name, CONCURRENTLY statement) pairs of a space, from rec.space_index_ddl."""
    return conn.execute("SELECT index_name, statement FROM rec.space_index_ddl(%s, true, %s)",
                        (space_id, drop)).fetchall()


def build_indexes(settings: Settings | None, space_id: int) -> None:
    """Build a space's HNSW indexes with CREATE INDEX CONCURRENTLY: reads and writes of every other space go
    on meanwhile (a plain CREATE INDEX would hold writers for the whole build), with at most
    ``settings.index_build_workers`` parallel workers so that serving keeps CPU.

    A concurrent build that fails leaves an INVALID index behind, which ``IF NOT EXISTS`` would then skip for
    ever; such an index is dropped (concurrently) and built again once.
    """
    settings = settings or get_settings()
    workers = settings.index_build_workers
    workers = max(0, available_cpus() // 2 - 1) if workers is None else workers
    with db.connect(settings, autocommit=True, vector=False) as conn:
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),))
        statements = dict(_ddl(conn, space_id, drop=False))
        drops = dict(_ddl(conn, space_id, drop=True))
        for _attempt in range(2):
            for name, in conn.execute(_INVALID_INDEXES, (list(statements),)).fetchall():
                conn.execute(drops[name])
            for statement in statements.values():
                conn.execute(statement)
            if not conn.execute(_INVALID_INDEXES, (list(statements),)).fetchall():
                return
        raise RuntimeError(f"space_id {space_id}: an index of the space is still invalid after a rebuild")


def drop_space(settings: Settings | None, space_id: int, *, batch: int = DROP_BATCH) -> int:
    """Delete an inactive space without blocking serving: its indexes go with DROP INDEX CONCURRENTLY, its
    vectors and item-to-item rows in batches of ``batch`` rows (one short transaction each), then its registry
    row. Returns the number of rows deleted. Raises ValueError for the active space."""
    settings = settings or get_settings()
    deleted = 0
    with db.connect(settings, autocommit=True, vector=False) as conn:
        row = conn.execute("SELECT is_active FROM rec.embedding_models WHERE space_id = %s", (space_id,)).fetchone()
        if row is None:
            return 0
        if row[0]:
            raise ValueError(f"space_id: embedding space {space_id} is active; activate another one first")
        conn.execute("UPDATE rec.embedding_models SET params = params || %s::jsonb "
                     "WHERE space_id = %s AND NOT is_active", (json.dumps({"status": DROPPING}), space_id))
        for _name, statement in _ddl(conn, space_id, drop=True):
            conn.execute(statement)
        for table in ("item_embeddings", "user_embeddings", "item_neighbors"):
            while True:
                n = conn.execute(
                    f"DELETE FROM rec.{table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM rec.{table} "  # fixed names
                    "WHERE space_id = %s LIMIT %s))", (space_id, batch)).rowcount
                deleted += n
                if n < batch:
                    break
        conn.execute("DELETE FROM rec.embedding_models WHERE space_id = %s AND NOT is_active", (space_id,))
    log.info("embedding space %s dropped (%d vectors, indexes dropped concurrently)", space_id, deleted)
    return deleted
