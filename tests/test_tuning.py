"""recplatform.retrieval.tuning: the validation split, the budget, and the record stored for the next training."""

from __future__ import annotations

import numpy as np

from recplatform import db
from recplatform.datasets import generate_synthetic
from recplatform.retrieval import tuning


def _rows(n_users=120, n_items=90, seed=4):
    data = generate_synthetic(n_users, n_items, seed=seed)
    return [(r.user_id, r.item_id, float(r.rating), float(r.weight), r.occurred_at.timestamp())
            for r in data.interactions.itertuples()]


def test_validation_split_holds_out_each_users_latest_interactions():
    rows = _rows()
    train, relevant = tuning.validation_split(rows)
    held = set(rows) - set(train)
    assert held and len(train) + len(held) == len(rows)
    for user, items in relevant.items():
        mine = sorted((r for r in rows if r[0] == user), key=lambda r: r[4])
        later = {r for r in held if r[0] == user}
        assert min(r[4] for r in later) >= max(r[4] for r in mine if r not in later)  # the latest ones
        assert items == {r[1] for r in later if r[2] >= 4}


def test_tune_picks_the_best_candidate_and_respects_the_budget():
    rows = _rows()
    grid = ((8, 5.0, 3.0), (8, 20.0, 2.0))
    result = tuning.tune(rows=rows, grid=grid, budget_s=600)
    per_grid = len(tuning.PRIOR_WEIGHTS) * len(tuning.ITEM_WEIGHTS)
    assert len(result.candidates) == len(grid) * per_grid and not result.stopped_by_budget
    assert abs(result.score - max(c["ndcg@10"] for c in result.candidates)) < 1e-6
    assert 0 < result.score <= 1 and result.popularity_weight in tuning.PRIOR_WEIGHTS
    assert result.item_item_weight in tuning.ITEM_WEIGHTS
    quick = tuning.tune(rows=rows, grid=grid, budget_s=1e-6)
    assert quick.stopped_by_budget and len(quick.candidates) == per_grid  # the first only


def test_the_item_to_item_term_is_ease_from_the_users_history():
    rows = _rows()
    train, relevant = tuning.validation_split(rows)
    params = tuning.CollaborativeParams(factors=8, item_item_neighbors=1000)
    data = tuning._matrix(train, params)
    towards = tuning._item_item_matrix(data, params).toarray()
    import scipy.sparse as sp

    from recplatform.retrieval.item_item import ease_weights

    binary = sp.csr_matrix((np.ones(len(data.indices)), data.indices, data.indptr),
                           shape=(len(data.user_ids), len(data.item_ids)))
    np.testing.assert_allclose(towards, ease_weights(binary, params.item_item_lambda), atol=1e-12)
    scores = tuning.score_candidate(train, relevant, params, prior_weights=(0.0,), item_weights=(0.0, 1.0, 100.0))
    assert set(scores) == {(0.0, 0.0), (0.0, 1.0), (0.0, 100.0)} and all(0 <= v <= 1 for v in scores.values())


def test_stored_tuning_is_what_the_next_training_reads(db_settings):
    assert tuning.tuned_params(db_settings) is None
    result = tuning.tune(rows=_rows(), grid=((8, 20.0, 2.0),), budget_s=600)
    tuning.store(db_settings, result)
    params = tuning.tuned_params(db_settings)
    assert (params.factors, params.reg, params.alpha) == (8, 20.0, 2.0)
    with db.connect(db_settings) as conn:
            weight, item_weight, record = conn.execute("SELECT popularity_weight, item_item_weight, tuning "
                                                   "FROM rec.retrieval_defaults WHERE user_type = 'warm'").fetchone()
    assert weight == result.popularity_weight and record["validation_ndcg@10"] == round(result.score, 6)
    assert item_weight == result.item_item_weight == record["item_item_weight"]
    assert len(record["candidates"]) == len(tuning.PRIOR_WEIGHTS) * len(tuning.ITEM_WEIGHTS)
