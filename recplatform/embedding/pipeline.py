"""The embedding batch: features for ids → text → encoder → one upsert of vectors and content hashes.

Shared by the Celery tasks (``recplatform.workers.tasks``) and the in-process backfill
(``recplatform embed --local``). One batch:

1. reads the entities' *current* content hashes from ``rec.items`` / ``rec.users`` and drops the ids whose
   hash already has a vector in the space (a redelivered or duplicate message costs one query, no encode);
2. reads the remaining entities' features from Feast's online store; an id Feast does not know, or whose
   served features do not hash to the current content hash (online store behind), is read from the rec
   tables instead, and that is logged;
3. renders the texts with the versioned templates and encodes them (one encoder per process and model)
   in chunks of :data:`OVERLAP_CHUNK`, while a writer thread upserts the chunk before (:func:`encode_and_write`);
4. writes the vectors with ``INSERT ... ON CONFLICT DO UPDATE ... WHERE content_hash IS DISTINCT FROM``
   statements that also re-check the hash against the entity table, all in ONE transaction committed after
   the last chunk, so a batch is all or nothing, and two workers racing on the same ids, or a message
   delivered twice, leave exactly one row per entity and space.

The work done is returned as :class:`BatchStats` and added to the process-wide :data:`COUNTERS`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from recplatform import db, features
from recplatform.config import Settings, get_settings
from recplatform.content import content_hash
from recplatform.embedding.encoder import load_encoder
from recplatform.embedding.spaces import (
    CONTENT,
    Space,
    ensure_content_space,
    get_space,
    missing_ids,
    serving_and_building,
)
from recplatform.text.templates import TEMPLATE_VERSION, item_card, user_prompt

log = logging.getLogger(__name__)

ITEM, USER = "item", "user"
DEFAULT_BATCH = 256  # ids per task / local batch: a few seconds of CPU encoding, well inside the time limits

# Work done by this process, by counter name (requested, skipped, encoded, written, fallback, unknown).
COUNTERS: Counter = Counter()
_counters_lock = threading.Lock()


@dataclass
class BatchStats:
    """What one batch did: ids asked for, already current (skipped), unknown ids, texts encoded, rows written."""

    kind: str
    space_id: int
    requested: int = 0
    skipped: int = 0
    unknown: int = 0
    encoded: int = 0
    written: int = 0
    fallback: int = 0  # entities read from the rec tables because Feast had nothing (current) for them
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    # Where the batch's time went (seconds): current-hash query, feature reads, rendering, encoding (the main
    # thread's), waiting for the writer after the last chunk, and the commit.
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


# ----- SQL (one place) ---------------------------------------------------------------------------------
_CURRENT_SQL = {
    ITEM: """
        SELECT i.item_id, i.content_hash, e.content_hash IS NOT DISTINCT FROM i.content_hash AS current
        FROM rec.items i
        LEFT JOIN rec.item_embeddings e ON e.space_id = %(space_id)s AND e.item_id = i.item_id
        WHERE i.item_id = ANY(%(ids)s)""",
    USER: """
        SELECT u.user_id, u.content_hash, e.content_hash IS NOT DISTINCT FROM u.content_hash AS current
        FROM rec.users u
        LEFT JOIN rec.user_embeddings e
          ON e.space_id = %(space_id)s AND e.user_id = u.user_id AND e.kind = 'demographic'
        WHERE u.user_id = ANY(%(ids)s)""",
}
_TABLE_ROWS_SQL = {
    ITEM: "SELECT item_id, title, year, genres, description FROM rec.items WHERE item_id = ANY(%s)",
    USER: "SELECT user_id, age, gender, occupation, zip_code FROM rec.users WHERE user_id = ANY(%s)",
}
# Vectors go over the wire in binary (%b): 30x faster than text for a batch of 384-d vectors.
_UPSERT_SQL = {
    ITEM: """
        INSERT INTO rec.item_embeddings AS e (space_id, item_id, embedding, content_hash, embedded_at)
        SELECT %(space_id)s, t.id, t.vec, t.hash, now()
        FROM unnest(%(ids)s::text[], %(vecs)b::vector[], %(hashes)s::text[]) AS t(id, vec, hash)
        JOIN rec.items i ON i.item_id = t.id AND i.content_hash = t.hash
        ON CONFLICT (space_id, item_id) DO UPDATE
            SET embedding = excluded.embedding, content_hash = excluded.content_hash, embedded_at = excluded.embedded_at
            WHERE e.content_hash IS DISTINCT FROM excluded.content_hash""",
    USER: """
        INSERT INTO rec.user_embeddings AS e (space_id, user_id, kind, embedding, content_hash, embedded_at)
        SELECT %(space_id)s, t.id, 'demographic', t.vec, t.hash, now()
        FROM unnest(%(ids)s::text[], %(vecs)b::vector[], %(hashes)s::text[]) AS t(id, vec, hash)
        JOIN rec.users u ON u.user_id = t.id AND u.content_hash = t.hash
        ON CONFLICT (space_id, user_id, kind) DO UPDATE
            SET embedding = excluded.embedding, content_hash = excluded.content_hash, embedded_at = excluded.embedded_at
            WHERE e.content_hash IS DISTINCT FROM excluded.content_hash""",
}


# ----- features ------------------------------------------------------------------------------------------
def _feast_rows(kind: str, ids: list[str], settings: Settings) -> list[dict]:
    """Feast online features for ids; [] (logged) when Feast is not available."""
    try:
        fetch = features.online_item_features if kind == ITEM else features.online_user_features
        return fetch(ids, settings)
    except Exception as exc:  # noqa: BLE001 - the tables are the truth; Feast being down must not stop embedding
        log.warning("Feast online %s features failed (%s: %s); reading %d %ss from the rec tables",
                    kind, type(exc).__name__, exc, len(ids), kind)
        return []


def load_features(kind: str, ids: list[str], hashes: dict[str, str], settings: Settings) -> tuple[dict[str, dict], int]:
    """Feature rows by id (Feast first, rec tables for the ids Feast lacks or serves stale); (rows, n_fallback)."""
    key = "item_id" if kind == ITEM else "user_id"
    rows: dict[str, dict] = {}
    stale: list[str] = []
    for row in _feast_rows(kind, ids, settings):
        entity = str(row.get(key))
        if entity not in hashes:
            continue
        if content_hash(kind, row) == hashes[entity]:
            rows[entity] = row
        elif any(row.get(k) is not None for k in row if k != key):
            stale.append(entity)
    fallback = [i for i in ids if i not in rows]
    if fallback:
        unknown = len(fallback) - len(stale)
        log.info("Feast had no current features for %d %ss (%d unknown to it, %d stale; e.g. %s); "
                 "read them from rec.%ss", len(fallback), kind, unknown, len(stale), fallback[:3], kind)
        with db.connect(settings, vector=False) as conn:
            cur = conn.execute(_TABLE_ROWS_SQL[kind], (fallback,))
            names = [d.name for d in cur.description]
            for values in cur.fetchall():
                rows[values[0]] = dict(zip(names, values))
    return rows, len(fallback)


def render(kind: str, rows: Sequence[dict]) -> list[str]:
    """The texts the encoder sees: item cards or demographic prompts (versioned templates)."""
    make = item_card if kind == ITEM else user_prompt
    return [make(row) for row in rows]


# ----- encoder -------------------------------------------------------------------------------------------
def encoder_for(space: Space):
    """The process's encoder for a space's model (loaded once per process and model)."""
    encoder = load_encoder(space.model_ref)
    if encoder.dimension != space.dimension:
        raise ValueError(f"space {space.name}: model {space.model_ref} gives dimension {encoder.dimension}, "
                         f"the space expects {space.dimension}")
    return encoder


def template_matches(space: Space) -> bool:
    return space.template_version == TEMPLATE_VERSION


# ----- the batch -----------------------------------------------------------------------------------------
def embed_batch(kind: str, ids: Iterable[str], space: Space, settings: Settings | None = None,
                *, encoder=None) -> BatchStats:
    """Embed the entities ``ids`` of ``kind`` ('item' or 'user') into ``space``; skip those already current."""
    settings = settings or get_settings()
    started = time.perf_counter()
    ids = list(dict.fromkeys(str(i) for i in ids))
    stats = BatchStats(kind=kind, space_id=space.space_id, requested=len(ids))
    if not ids:
        return stats
    if not template_matches(space):
        raise ValueError(f"space {space.name} was built with templates {space.template_version!r}; this process "
                         "renders another version and cannot add to it")
    timings = stats.timings
    clock = time.perf_counter()
    with db.connect(settings, vector=False) as conn:
        current = conn.execute(_CURRENT_SQL[kind], {"space_id": space.space_id, "ids": ids}).fetchall()
    hashes = {entity: h for entity, h, done in current if not done}
    stats.skipped = sum(1 for _, _, done in current if done)
    stats.unknown = len(ids) - len(current)
    todo = [i for i in ids if i in hashes]
    timings["current_s"] = time.perf_counter() - clock
    if todo:
        clock = time.perf_counter()
        rows, stats.fallback = load_features(kind, todo, hashes, settings)
        todo = [i for i in todo if i in rows]  # an entity deleted meanwhile has no row anywhere
        timings["features_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        texts = render(kind, [rows[i] for i in todo])
        timings["render_s"] = time.perf_counter() - clock
        encoder = encoder or encoder_for(space)
        stats.written = encode_and_write(kind, space, todo, [hashes[i] for i in todo], texts, encoder, settings,
                                         timings=timings)
        stats.encoded = len(todo)
    stats.seconds = time.perf_counter() - started
    with _counters_lock:
        for name in ("requested", "skipped", "unknown", "encoded", "written", "fallback"):
            COUNTERS[f"{kind}s_{name}"] += getattr(stats, name)
    log.info("space %s: %ss requested %d, already current %d, unknown %d, encoded %d, written %d (%.2fs: %s)",
             space.space_id, kind, stats.requested, stats.skipped, stats.unknown, stats.encoded, stats.written,
             stats.seconds, ", ".join(f"{k[:-2]} {v:.3f}" for k, v in timings.items()))
    return stats


def _checked(space: Space, ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(ids), space.dimension):
        raise ValueError(f"vectors: expected shape ({len(ids)}, {space.dimension}) for space {space.name}, "
                         f"got {vectors.shape}")
    return vectors


def _upsert(conn, kind: str, space: Space, ids: Sequence[str], hashes: Sequence[str], vectors: np.ndarray) -> int:
    cur = conn.execute(_UPSERT_SQL[kind], {"space_id": space.space_id, "ids": list(ids), "vecs": list(vectors),
                                           "hashes": list(hashes)})
    return cur.rowcount


def write_vectors(kind: str, space: Space, ids: Sequence[str], hashes: Sequence[str], vectors: np.ndarray,
                  settings: Settings | None = None) -> int:
    """ONE upsert statement for the batch; returns the rows inserted or changed."""
    vectors = _checked(space, ids, vectors)
    with db.transaction(settings or get_settings()) as conn:
        return _upsert(conn, kind, space, ids, hashes, vectors)


OVERLAP_CHUNK = 64  # texts per encode call while the previous chunk is written


class VectorWriter:
    """Upserts chunks of vectors from a background thread inside ONE transaction, so that writing chunk n
    overlaps encoding chunk n+1; :meth:`commit` waits for the last chunk and commits, :meth:`close` without a
    commit rolls everything back. A write error surfaces at the next :meth:`put` or at :meth:`commit`."""

    _COMMIT, _ROLLBACK = object(), object()

    def __init__(self, kind: str, space: Space, settings: Settings) -> None:
        self.kind, self.space, self.settings = kind, space, settings
        self.written = 0
        self.error: BaseException | None = None
        self.write_s = 0.0
        self.committed = False
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="vector-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        try:
            conn = db.connect(self.settings)
            with conn.transaction():
                while True:
                    item = self._queue.get()
                    if item is self._COMMIT:
                        break
                    if item is self._ROLLBACK:
                        raise _RolledBack
                    clock = time.perf_counter()
                    self.written += _upsert(conn, self.kind, self.space, *item)
                    self.write_s += time.perf_counter() - clock
            self.committed = True
        except _RolledBack:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by put() / commit()
            self.error = exc
            while True:  # drain so that a producer blocked on a full queue wakes up and sees the error
                item = self._queue.get()
                if item is self._COMMIT or item is self._ROLLBACK:
                    break
        finally:
            if conn is not None:
                conn.close()

    def put(self, ids: Sequence[str], hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Queue one chunk (waits while two are pending); raises the writer's error, if it had one."""
        if self.error is not None:
            raise self.error
        self._queue.put((list(ids), list(hashes), _checked(self.space, ids, vectors)))

    def commit(self) -> int:
        """Wait for every chunk, commit; the rows inserted or changed. Raises (all rolled back) on a write error."""
        self._queue.put(self._COMMIT)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.written

    def close(self) -> None:
        """Roll back unless committed (idempotent); waits for the writer thread."""
        if self._thread.is_alive():
            self._queue.put(self._ROLLBACK)
            self._thread.join()


class _RolledBack(Exception):
    """Raised inside the writer's transaction to roll it back."""


def encode_and_write(kind: str, space: Space, ids: Sequence[str], hashes: Sequence[str], texts: Sequence[str],
                     encoder, settings: Settings, *, chunk: int = OVERLAP_CHUNK,
                     timings: dict[str, float] | None = None) -> int:
    """Encode ``texts`` chunk by chunk while a :class:`VectorWriter` upserts the chunk before, all in ONE
    transaction committed after the last chunk: all or nothing, like a single statement. Rows written."""
    timings = timings if timings is not None else {}
    if len(ids) <= chunk:  # nothing to overlap: one encode, one statement
        clock = time.perf_counter()
        vectors = encoder.encode(texts)
        timings["encode_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        written = write_vectors(kind, space, ids, hashes, vectors, settings)
        timings["write_s"] = timings["commit_s"] = time.perf_counter() - clock
        return written
    writer = VectorWriter(kind, space, settings)
    try:
        encode_s = 0.0
        for start in range(0, len(ids), chunk):
            clock = time.perf_counter()
            vectors = encoder.encode(texts[start:start + chunk])
            encode_s += time.perf_counter() - clock
            writer.put(ids[start:start + chunk], hashes[start:start + chunk], vectors)
        timings["encode_s"] = encode_s
        clock = time.perf_counter()
        written = writer.commit()
        timings["commit_s"] = time.perf_counter() - clock  # the last chunk's write, then COMMIT
        timings["write_s"] = writer.write_s  # all chunks' statements, mostly overlapped with encoding
        return written
    finally:
        writer.close()


def target_spaces(settings: Settings | None = None, space_id: int | None = None) -> list[Space]:
    """The spaces a batch writes to: the one asked for, else the active content space and any being built
    with the templates this process renders (an old-template space can only be served, not extended)."""
    settings = settings or get_settings()
    if space_id is not None:
        return [get_space(settings, int(space_id))]
    spaces = serving_and_building(settings, CONTENT)
    usable = [s for s in spaces if template_matches(s)]
    for s in spaces:
        if s not in usable:
            log.warning("content space %s uses templates %r that this process does not render; skipped",
                        s.name, s.template_version)
    return usable


_registered: set[tuple[str, str]] = set()


def ensure_configured_space(settings: Settings) -> Space:
    """The content space of this process's configured model (registered on first use; once per process)."""
    space = ensure_content_space(settings, load_encoder(settings.model))
    _registered.add((settings.postgres_url, settings.model))
    return space


def embed_ids(kind: str, ids: Iterable[str], settings: Settings | None = None,
              space_id: int | None = None) -> list[BatchStats]:
    """Embed ids into every target space (see :func:`target_spaces`); what the Celery tasks call.

    The first call in a process makes sure the configured model's content space exists, so the very
    first ingestion is embedded without anyone registering a space by hand.
    """
    settings = settings or get_settings()
    ids = list(ids)
    if space_id is None and (settings.postgres_url, settings.model) not in _registered:
        ensure_configured_space(settings)
    return [embed_batch(kind, ids, space, settings) for space in target_spaces(settings, space_id)]


# ----- backfill ------------------------------------------------------------------------------------------
def batches(ids: Sequence[str], size: int = DEFAULT_BATCH) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def embed_missing_local(settings: Settings | None, space: Space, *, batch_size: int = DEFAULT_BATCH,
                        on_batch: Callable[[BatchStats], None] | None = None) -> list[BatchStats]:
    """Embed everything the space lacks in this process (no broker): ``recplatform embed --local``."""
    settings = settings or get_settings()
    encoder = encoder_for(space)
    done: list[BatchStats] = []
    for kind, ids in missing_ids(settings, space.space_id).items():
        for chunk in batches(ids, batch_size):
            stats = embed_batch(kind, chunk, space, settings, encoder=encoder)
            done.append(stats)
            if on_batch:
                on_batch(stats)
    return done
