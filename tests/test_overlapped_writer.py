"""The overlapped encode/write of a worker batch: chunk n is written while chunk n+1 is encoded, inside ONE
transaction, so a batch is still all or nothing and a repeated batch writes nothing (real Postgres+pgvector)."""

from __future__ import annotations

import numpy as np
import pytest

from recplatform import db
from recplatform.content import content_hash
from recplatform.embedding import load_encoder
from recplatform.embedding.pipeline import ITEM, embed_batch, encode_and_write, render
from recplatform.embedding.spaces import ensure_content_space
from recplatform.ingest.write import ingest


def _items(n: int) -> list[dict]:
    return [{"item_id": f"ow{k}", "title": f"Overlap film {k}", "year": 1990 + k % 20, "genres": ["Drama"],
             "description": None, "extra": {}} for k in range(n)]


@pytest.fixture
def setup(db_settings):
    encoder = load_encoder("hashing:64")
    space = ensure_content_space(db_settings, encoder)
    items = _items(150)
    ingest(items=items, settings=db_settings)
    with db.connect(db_settings, vector=False) as conn:
        hashes = dict(conn.execute("SELECT item_id, content_hash FROM rec.items").fetchall())
    ids = [row["item_id"] for row in items]
    return db_settings, encoder, space, ids, [hashes[i] for i in ids], render(ITEM, items)


def _count(settings, space) -> int:
    with db.connect(settings, vector=False) as conn:
        return conn.execute("SELECT count(*) FROM rec.item_embeddings WHERE space_id = %s",
                            (space.space_id,)).fetchone()[0]


class _FailingEncoder:
    """Encodes like ``inner`` until call ``fail_at``, then raises (a crash in the middle of a batch)."""

    def __init__(self, inner, fail_at: int):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def encode(self, texts):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("encoder crashed mid-batch")
        return self.inner.encode(texts)


def test_overlapped_chunks_write_every_row_once_and_a_repeat_writes_nothing(setup):
    settings, encoder, space, ids, hashes, texts = setup
    timings: dict[str, float] = {}
    assert encode_and_write(ITEM, space, ids, hashes, texts, encoder, settings, chunk=32, timings=timings) == 150
    assert _count(settings, space) == 150
    assert {"encode_s", "write_s", "commit_s"} <= timings.keys()
    with db.connect(settings) as conn:
        stored = dict(conn.execute("SELECT item_id, embedding FROM rec.item_embeddings").fetchall())
    np.testing.assert_allclose(np.stack([stored[i].to_numpy() for i in ids]), encoder.encode(texts), atol=1e-6)
    assert encode_and_write(ITEM, space, ids, hashes, texts, encoder, settings, chunk=32) == 0  # exactly once


def test_an_encoder_crash_after_chunks_were_written_leaves_nothing(setup):
    settings, encoder, space, ids, hashes, texts = setup
    failing = _FailingEncoder(encoder, fail_at=4)  # chunks 1-3 reached the writer first
    with pytest.raises(RuntimeError, match="mid-batch"):
        encode_and_write(ITEM, space, ids, hashes, texts, failing, settings, chunk=32)
    assert failing.calls == 4 and _count(settings, space) == 0


def test_a_write_error_in_the_writer_thread_fails_the_batch_and_leaves_nothing(setup):
    settings, encoder, space, ids, hashes, texts = setup

    class NaNOnSecondChunk:
        calls = 0

        def encode(self, batch):
            self.calls += 1
            out = encoder.encode(batch)
            if self.calls == 2:
                out[0, 0] = np.nan  # pgvector refuses NaN: the writer's statement fails
            return out

    with pytest.raises(Exception, match="(?i)nan"):
        encode_and_write(ITEM, space, ids, hashes, texts, NaNOnSecondChunk(), settings, chunk=32)
    assert _count(settings, space) == 0
    assert encode_and_write(ITEM, space, ids, hashes, texts, encoder, settings, chunk=32) == 150  # retry: all in


def test_embed_batch_reports_where_its_time_went_and_skips_current_rows(setup):
    settings, encoder, space, ids, hashes, texts = setup
    stats = embed_batch(ITEM, ids, space, settings, encoder=encoder)
    assert (stats.encoded, stats.written) == (150, 150)
    assert {"current_s", "features_s", "render_s", "encode_s", "write_s", "commit_s"} <= stats.timings.keys()
    again = embed_batch(ITEM, ids, space, settings, encoder=encoder)
    assert (again.skipped, again.encoded, again.written) == (150, 0, 0)
    assert content_hash(ITEM, _items(1)[0]) == hashes[0]
