"""Collaborative spaces in Postgres: interactions read as aggregated strengths, vectors written by binary COPY.

Shared by :mod:`.training` (whole spaces) and :mod:`.taste` (one user at a time).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from pgvector import Vector

from recplatform import db
from recplatform.config import Settings
from recplatform.retrieval import sql
from recplatform.retrieval.als import CollaborativeParams, Interactions, strengths, to_csr


def load_interactions(settings: Settings, params: CollaborativeParams, user_ids: Sequence[str] | None = None
                      ) -> Interactions:
    """Read rec.interactions (all, or those of ``user_ids``) into aggregated strengths."""
    with db.connect(settings, vector=False) as conn:
        if user_ids is None:
            rows = conn.execute(sql.INTERACTIONS_ALL).fetchall()
        else:
            rows = conn.execute(sql.INTERACTIONS_OF_USERS, (list(user_ids),)).fetchall()
    if not rows:
        return Interactions([], [], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    users = [r[0] for r in rows]
    items = [r[1] for r in rows]
    user_ids_sorted = sorted(set(users))
    item_ids_sorted = sorted(set(items))
    u_index = {u: n for n, u in enumerate(user_ids_sorted)}
    i_index = {i: n for n, i in enumerate(item_ids_sorted)}
    u = np.fromiter((u_index[x] for x in users), np.int64, len(rows))
    i = np.fromiter((i_index[x] for x in items), np.int64, len(rows))
    ratings = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    weights = np.array([r[3] for r in rows], dtype=float)
    occurred = np.array([r[4] for r in rows], dtype=float)
    s = strengths(u, ratings, weights, occurred, params)
    return to_csr(u, i, s, user_ids_sorted, item_ids_sorted)


def history_hash(n: int, strength_sum: float) -> str:
    """What a taste vector was computed from (its interaction count and total strength), stored as its hash."""
    return hashlib.sha256(f"{n}:{strength_sum:.6f}".encode()).hexdigest()[:16]


def copy_vectors(conn, entity: str, space_id: int, ids: Sequence[str], vectors: np.ndarray,
                 hashes: Sequence[str], user_kind: str | None = None) -> None:
    """Binary COPY of vectors of one entity kind (``item`` or ``user``; users also need ``user_kind``, taste or
    demographic) into rec.item_embeddings / rec.user_embeddings (pgvector's psycopg dumper)."""
    if entity == "item":
        statement = ("COPY rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                     "FROM STDIN WITH (FORMAT BINARY)")
        types = ["int4", "text", "vector", "text"]
        rows = ((space_id, i, Vector(v), h) for i, v, h in zip(ids, vectors, hashes))
    else:
        statement = ("COPY rec.user_embeddings (space_id, user_id, kind, embedding, content_hash) "
                     "FROM STDIN WITH (FORMAT BINARY)")
        types = ["int4", "text", "text", "vector", "text"]
        rows = ((space_id, i, user_kind, Vector(v), h) for i, v, h in zip(ids, vectors, hashes))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def content_vectors(conn, content_space_id: int) -> tuple[list[str], np.ndarray]:
    rows = conn.execute(sql.ITEM_VECTORS, (content_space_id,)).fetchall()
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    return [r[0] for r in rows], np.stack([np.asarray(r[1].to_numpy(), np.float32) for r in rows])
