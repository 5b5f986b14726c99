"""Collaborative spaces in Postgres: interactions read as aggregated strengths, vectors written by binary COPY.

Shared by :mod:`.training` (whole spaces) and :mod:`.taste` (one user at a time).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from pgvector import Vector

from recplatform.retrieval import sql
from recplatform.retrieval.als import CollaborativeParams, Interactions, to_csr

# (user, item) strengths aggregated in SQL (als.py's formula), dense indices assigned in SQL (C collation =
# Python's code-point order), in temporary tables dropped at commit. Only positive, finite strengths are kept.
_PAIRS = """
CREATE TEMP TABLE _als_pairs ON COMMIT DROP AS
SELECT e.user_id, e.item_id, sum(e.s) AS strength, max(e.version) AS version
FROM (
    SELECT x.user_id, x.item_id, max(x.interaction_id) OVER w AS version,
           x.weight * coalesce(x.rating / %(rating_max)s, 1.0)
             * power(2.0::float8, greatest(-900.0, -extract(epoch FROM max(x.occurred_at) OVER w - x.occurred_at)::float8
                                                   / (86400.0 * %(half_life_days)s))) AS s
    FROM rec.interactions x
    {where}
    WINDOW w AS (PARTITION BY x.user_id)
) e
GROUP BY e.user_id, e.item_id
HAVING sum(e.s) > 0 AND sum(e.s) < 'Infinity'::float8
"""
_USERS = """
CREATE TEMP TABLE _als_users ON COMMIT DROP AS
SELECT d.user_id, (row_number() OVER (ORDER BY d.user_id COLLATE "C") - 1)::int4 AS idx, d.version
FROM (SELECT p.user_id, max(p.version) AS version FROM _als_pairs p GROUP BY p.user_id) d
"""
_ITEMS = """
CREATE TEMP TABLE _als_items ON COMMIT DROP AS
SELECT d.item_id, (row_number() OVER (ORDER BY d.item_id COLLATE "C") - 1)::int4 AS idx
FROM (SELECT DISTINCT p.item_id FROM _als_pairs p) d
"""
_COPY_TRIPLES = """
COPY (SELECT u.idx, i.idx, p.strength FROM _als_pairs p JOIN _als_users u USING (user_id)
      JOIN _als_items i USING (item_id)) TO STDOUT (FORMAT BINARY)
"""
_COPY_USERS = "COPY (SELECT user_id, version FROM _als_users ORDER BY idx) TO STDOUT (FORMAT BINARY)"
_COPY_ITEMS = "COPY (SELECT item_id FROM _als_items ORDER BY idx) TO STDOUT (FORMAT BINARY)"
# One binary COPY row of (int4, int4, float8): field count, then (length, value) per field, big-endian.
_TRIPLE = np.dtype([("n", ">i2"), ("lu", ">i4"), ("u", ">i4"), ("li", ">i4"), ("i", ">i4"), ("ls", ">i4"),
                    ("s", ">f8")])
_COPY_HEADER = 19  # PGCOPY signature (11) + flags (4) + header extension length (4)


def load_interactions(conn, params: CollaborativeParams, user_ids: Sequence[str] | None = None) -> Interactions:
    """Aggregated strengths of rec.interactions (all, or those of ``user_ids``) as CSR, read on ``conn``.

    The caller's transaction is the snapshot (REPEATABLE READ for a training, so its watermark matches what it
    read). Per (user, item) pair one row crosses the wire, as binary COPY parsed by numpy into integer keys;
    ids cross once per user and item. Also returns, per user, the newest interaction id (the taste version).
    """
    where, args = "", {"rating_max": float(params.rating_max), "half_life_days": float(params.half_life_days)}
    if user_ids is not None:
        where, args["ids"] = "WHERE x.user_id = ANY(%(ids)s)", list(user_ids)
    conn.execute(_PAIRS.format(where=where), args)
    conn.execute(_USERS)
    conn.execute(_ITEMS)
    with conn.cursor() as cur:
        with cur.copy(_COPY_USERS) as copy:
            copy.set_types(["text", "int8"])
            users = list(copy.rows())
        with cur.copy(_COPY_ITEMS) as copy:
            copy.set_types(["text"])
            item_ids = [r[0] for r in copy.rows()]
        with cur.copy(_COPY_TRIPLES) as copy:
            triples = _parse_triples(copy)
    user_ids_sorted = [r[0] for r in users]
    versions = np.fromiter((r[1] for r in users), np.int64, len(users))
    if not user_ids_sorted:
        return Interactions([], [], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0), versions)
    return to_csr(triples["u"].astype(np.int32), triples["i"].astype(np.int32), triples["s"].astype(float),
                  user_ids_sorted, item_ids, versions)


def _parse_triples(copy, block: int = 1 << 23) -> np.ndarray:
    """The (int4, int4, float8) rows of a binary COPY as one numpy structured array, parsed in ~8 MB blocks
    (the server sends one message per row; they are gathered into a buffer and parsed by numpy at once)."""
    parts: list[np.ndarray] = []
    buf = bytearray()
    header = False

    def flush(final: bool) -> None:
        nonlocal buf
        whole = len(buf) // _TRIPLE.itemsize * _TRIPLE.itemsize
        if final and buf[whole:] == b"\xff\xff":  # the trailer (field count -1) after the last row
            del buf[whole:]
        parts.append(np.frombuffer(bytes(buf[:whole]), _TRIPLE))
        del buf[:whole]

    for chunk in copy:
        buf += chunk
        if not header and len(buf) >= _COPY_HEADER:
            if not buf.startswith(b"PGCOPY\n\xff\r\n\0"):
                raise RuntimeError("binary COPY of interaction strengths: no PGCOPY signature")
            del buf[:_COPY_HEADER]
            header = True
        if header and len(buf) >= block:
            flush(False)
    flush(True)
    if buf:
        raise RuntimeError(f"binary COPY of interaction strengths ended with {len(buf)} unparsed bytes")
    rows = np.concatenate(parts)
    if len(rows) and not (np.all(rows["n"] == 3) and np.all(rows["lu"] == 4) and np.all(rows["ls"] == 8)):
        raise RuntimeError("binary COPY of interaction strengths: unexpected row layout")
    return rows


def history_hash(n: int, strength_sum: float) -> str:
    """What a taste vector was computed from (its interaction count and total strength), stored as its hash."""
    return hashlib.sha256(f"{n}:{strength_sum:.6f}".encode()).hexdigest()[:16]


def copy_vectors(conn, entity: str, space_id: int, ids: Sequence[str], vectors: np.ndarray,
                 hashes: Sequence[str], user_kind: str | None = None, versions: np.ndarray | None = None) -> None:
    """Binary COPY of vectors of one entity kind (``item`` or ``user``; users also need ``user_kind``, taste or
    demographic, and taste vectors their ``versions``) into rec.item_embeddings / rec.user_embeddings."""
    if entity == "item":
        statement = ("COPY rec.item_embeddings (space_id, item_id, embedding, content_hash) "
                     "FROM STDIN WITH (FORMAT BINARY)")
        types = ["int4", "text", "vector", "text"]
        rows = ((space_id, i, Vector(v), h) for i, v, h in zip(ids, vectors, hashes))
    else:
        statement = ("COPY rec.user_embeddings (space_id, user_id, kind, embedding, content_hash, version) "
                     "FROM STDIN WITH (FORMAT BINARY)")
        types = ["int4", "text", "text", "vector", "text", "int8"]
        vs = [None] * len(ids) if versions is None else [int(v) for v in versions]
        rows = ((space_id, i, user_kind, Vector(v), h, n) for i, v, h, n in zip(ids, vectors, hashes, vs))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def content_vectors(conn, content_space_id: int) -> tuple[list[str], np.ndarray]:
    rows = conn.execute(sql.ITEM_VECTORS, (content_space_id,)).fetchall()
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    return [r[0] for r in rows], np.stack([np.asarray(r[1].to_numpy(), np.float32) for r in rows])
