"""Items into the active collaborative space from their content vectors, with the stored content → item map.

Training maps every item without interactions when it builds a space (:mod:`.training`); this module maps the
items whose content vector arrives *later*: the worker that embedded an item calls :func:`map_items` right after
its write, and training (after activation) and ``reconcile`` call it for everything still missing. The map is
the space's ``content_to_item`` ridge map (rec.coldstart_maps); when the space was trained before any content
vector existed, it is fitted here from the stored trained item vectors (``y = ŷ[:f] · M``) and stored. Mapped
vectors are clipped and augmented like training's (:func:`.als.augment_items`), with content hash ``mapped``.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from recplatform import db
from recplatform.config import Settings, get_settings
from recplatform.embedding import spaces
from recplatform.embedding.spaces import Space
from recplatform.retrieval import sql
from recplatform.retrieval.als import augment_items, usable
from recplatform.retrieval.linear_map import ridge, store_map

log = logging.getLogger(__name__)

MAP_LOCK = 0x6D61_7070  # advisory lock (with the space id): one process fits a space's missing map at a time
MAPPED, TRAINED = "mapped", "trained"


def map_items(settings: Settings | None = None, item_ids: Sequence[str] | None = None) -> int:
    """Write collaborative vectors for items that have a current content vector but no collaborative one
    (``item_ids`` given: those items, also re-mapping ones already mapped from older content). Returns how many
    vectors were written; 0 when there is no active content or collaborative space, or no map can be fitted."""
    settings = settings or get_settings()
    collab = spaces.active_space(settings, spaces.COLLABORATIVE)
    content = spaces.active_space(settings, spaces.CONTENT)
    if collab is None or content is None or (item_ids is not None and not item_ids):
        return 0
    with db.transaction(settings) as conn:
        ids = None if item_ids is None else sorted({str(i) for i in item_ids})
        rows = conn.execute(sql.ITEMS_TO_MAP, {"content": content.space_id, "collab": collab.space_id,
                                               "ids": ids}).fetchall()
        if not rows:
            return 0
        fitted = _active_map(conn, content, collab)
        if fitted is None:
            return 0
        w, b = fitted
        scale = float((collab.params or {})["scale"])
        vecs = np.stack([np.asarray(r[1].to_numpy(), float) for r in rows]) @ w + b
        keep = usable(vecs)
        out = augment_items(vecs[keep], scale)
        ids_out = [r[0] for r, k in zip(rows, keep) if k]
        written = conn.execute(sql.UPSERT_MAPPED_ITEMS,
                               {"space_id": collab.space_id, "ids": ids_out, "vecs": list(out)}).fetchone()[0]
    log.info("mapped %d items from content space %s into collaborative space %s", written, content.name, collab.name)
    return written


def lock_mapping(conn, space_id: int) -> None:
    """Hold the space's mapping lock until the transaction ends: no item of ``space_id`` is mapped meanwhile (fitting
    its missing map; copying its mapped vectors into the fresh pool, rec.refresh_item_priors)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (MAP_LOCK, space_id))


def _active_map(conn, content: Space, collab: Space) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) of the space's active content → item map; fitted from the stored vectors when there is none."""
    lock_mapping(conn, collab.space_id)
    found = conn.execute(sql.ACTIVE_MAP_ROWS, ("content_to_item", content.space_id, collab.space_id)).fetchall()
    if found:
        w = np.stack([np.asarray(r[0].to_numpy(), float) for r in found], axis=1)
        return w, np.array([float(r[1]) for r in found])
    pairs = conn.execute(sql.TRAINED_AND_CONTENT, (content.space_id, collab.space_id)).fetchall()
    if len(pairs) < 2:
        log.info("no content → item map for space %s: only %d trained items have a content vector",
                 collab.name, len(pairs))
        return None
    params = collab.params or {}
    scale = float(params["scale"])
    x = np.stack([np.asarray(r[0].to_numpy(), float) for r in pairs])
    y = np.stack([np.asarray(r[1].to_numpy(), float)[:-1] * scale for r in pairs])  # raw factors from ŷ
    lam = float(params.get("map_reg", 10.0))
    w, b = ridge(x, y, lam)
    store_map(conn, "content_to_item", content.space_id, collab.space_id, w, b,
              {"lambda": lam, "n_train": len(pairs), "target": "raw item factors", "fitted": "from stored vectors"})
    log.info("fitted the content → item map of space %s from %d stored trained items", collab.name, len(pairs))
    return w, b
