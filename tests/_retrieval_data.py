"""Test helper for retrieval tests: load a Dataset straight into rec.* and embed it with a real encoder.

Rows go in with plain parameterised SQL (the ingestion module has its own tests); content vectors are the
encoder's output on the real templates (``hashing:64`` by default), written to the active content space.
"""

from __future__ import annotations

import json

import numpy as np

from recplatform import db
from recplatform.embedding import spaces


def encoder(model_ref: str = "hashing:64"):
    from recplatform.embedding.encoder import load_encoder

    return load_encoder(model_ref)


def load_dataset(settings, dataset, *, cold_users: set[str] = frozenset(), model_ref: str = "hashing:64"):
    """Insert users/items/interactions (minus those of ``cold_users``) and embed item cards and user prompts."""
    from pgvector import Vector

    from recplatform.text.templates import item_card, user_prompt

    users = dataset.users.astype(object).where(dataset.users.notna(), None).to_dict("records")
    items = dataset.items.astype(object).where(dataset.items.notna(), None).to_dict("records")
    inter = dataset.interactions[~dataset.interactions.user_id.isin(cold_users)]
    enc = encoder(model_ref)
    space = spaces.ensure_content_space(settings, enc)
    item_vecs = enc.encode([item_card(r) for r in items])
    user_vecs = enc.encode([user_prompt(r) for r in users])
    with db.transaction(settings) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rec.users (user_id, age, gender, occupation, zip_code, content_hash) "
                "VALUES (%s, %s, %s, %s, %s, 'h')",
                [(u["user_id"], None if u["age"] is None else int(u["age"]), u["gender"], u["occupation"],
                  u["zip_code"]) for u in users])
            cur.executemany(
                "INSERT INTO rec.items (item_id, title, year, genres, description, extra, content_hash) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb, 'h')",
                [(i["item_id"], i["title"], None if i["year"] is None else int(i["year"]), list(i["genres"]),
                  i["description"], json.dumps(i["extra"] or {})) for i in items])
            with cur.copy("COPY rec.interactions (user_id, item_id, rating, weight, event_type, occurred_at) "
                          "FROM STDIN") as copy:
                for r in inter.itertuples(index=False):
                    copy.write_row((r.user_id, r.item_id, float(r.rating), float(r.weight), r.event_type,
                                    r.occurred_at.to_pydatetime()))
            cur.executemany(
                "INSERT INTO rec.item_embeddings (space_id, item_id, embedding, content_hash) VALUES (%s, %s, %s, 'h')",
                [(space.space_id, i["item_id"], Vector(np.asarray(v, np.float32))) for i, v in zip(items, item_vecs)])
            cur.executemany(
                "INSERT INTO rec.user_embeddings (space_id, user_id, kind, embedding, content_hash) "
                "VALUES (%s, %s, 'demographic', %s, 'h')",
                [(space.space_id, u["user_id"], Vector(np.asarray(v, np.float32))) for u, v in zip(users, user_vecs)])
    return space


def planted_database(services_settings, prefix: str, *, n_users: int = 240, n_items: int = 300, seed: int = 3,
                     n_cold: int = 30):
    """A fresh migrated database with a synthetic dataset (planted tastes), content vectors and a trained
    collaborative space; the first ``n_cold`` users keep their demographics but lose their interactions."""
    import os

    from recplatform import services
    from recplatform.datasets.synthetic import generate_synthetic
    from recplatform.retrieval import training

    settings = services_settings.model_copy(update={"database_name": f"{prefix}_{os.getpid()}"})
    services.ensure_database(settings)
    db.migrate(settings)
    dataset = generate_synthetic(n_users, n_items, seed=seed, signal=1.5)
    cold = {f"u{i}" for i in range(1, n_cold + 1)}
    load_dataset(settings, dataset, cold_users=cold)
    training.train_collaborative_space(settings)
    return settings, dataset, cold
