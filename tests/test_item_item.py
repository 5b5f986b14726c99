"""Item-to-item weights (EASE) trained with the collaborative space and added to warm users' taste lists."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _retrieval_data import load_dataset

from recplatform import db
from recplatform.datasets.synthetic import generate_synthetic
from recplatform.embedding import spaces
from recplatform.retrieval import item_item, training
from recplatform.retrieval.als import CollaborativeParams, to_csr


def rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _interactions(n_users=40, n_items=12, seed=0):
    rng = np.random.default_rng(seed)
    pairs = {(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.3 + 0.04 * i}
    u, i = (np.array(x) for x in zip(*sorted(pairs)))
    return to_csr(u, i, rng.random(len(u)) + 0.5, [f"u{n}" for n in range(n_users)],
                  [f"i{n:02d}" for n in range(n_items)])


def test_each_item_keeps_its_largest_ease_weights_towards_it():
    data = _interactions()
    binary = sp.csr_matrix((np.ones(len(data.indices)), data.indices, data.indptr),
                           shape=(len(data.user_ids), len(data.item_ids)))
    full = item_item.ease_weights(binary, 30.0)
    params = CollaborativeParams(item_item_lambda=30.0, item_item_neighbors=4)
    ids, sources, weights = item_item.neighbors(data, params)
    assert ids == data.item_ids
    for target, (src, w) in enumerate(zip(sources, weights)):
        towards = np.delete(full[:, target], target)  # B_ji for every other source j
        assert len(src) == 4 and ids[target] not in src
        np.testing.assert_allclose(np.abs(w), np.sort(np.abs(towards))[::-1][:4], rtol=1e-9)  # largest first
        np.testing.assert_allclose(w, [full[data.item_ids.index(j), target] for j in src], rtol=1e-9)  # signs kept
    # with every neighbour kept, a history's scores are EASE's h B
    ids, sources, weights = item_item.neighbors(data, CollaborativeParams(item_item_lambda=30.0,
                                                                        item_item_neighbors=100))
    history = binary[3].toarray().ravel()
    mine = {data.item_ids[n] for n in np.flatnonzero(history)}
    scores = [sum(w for j, w in zip(src, ws) if j in mine) for src, ws in zip(sources, weights)]
    np.testing.assert_allclose(scores, history @ full, atol=1e-9)
    # only the most-interacted items take part; none when switched off
    ids, _, _ = item_item.neighbors(data, CollaborativeParams(item_item_max_items=5))
    counts = np.bincount(data.indices, minlength=len(data.item_ids))
    assert sorted(ids) == sorted(data.item_ids[n] for n in np.argsort(-counts, kind="stable")[:5])
    assert item_item.neighbors(data, CollaborativeParams(item_item_neighbors=0)) == ([], [], [])


@pytest.fixture
def trained(db_settings, monkeypatch):
    monkeypatch.setenv("RECPLATFORM_MODEL", "hashing:64")
    from recplatform.config import get_settings

    get_settings.cache_clear()
    settings = db_settings.model_copy(update={"model": "hashing:64"})
    dataset = generate_synthetic(80, 60, seed=5, signal=1.5)
    load_dataset(settings, dataset)
    space = training.train_collaborative_space(settings, CollaborativeParams(item_item_neighbors=20))
    return settings, dataset, space


def _warm_user(settings):
    (switch,), = rows(settings, "SELECT switch_after FROM rec.retrieval_defaults WHERE user_type = 'onboarding'")
    return rows(settings, "SELECT user_id FROM rec.interactions GROUP BY user_id HAVING count(DISTINCT item_id) >= %s "
                          "ORDER BY user_id LIMIT 1", (switch,))[0][0]


def _scores(settings, space, user, weight, seen):
    """Every item's warm score, computed in Python from the stored vectors and neighbours."""
    (taste,), = rows(settings, "SELECT embedding FROM rec.user_embeddings WHERE space_id = %s AND user_id = %s "
                               "AND kind = 'taste'", (space.space_id, user))
    taste = taste.to_numpy().astype(float)
    items = {i: v.to_numpy().astype(float) for i, v in rows(
        settings, "SELECT item_id, embedding FROM rec.item_embeddings WHERE space_id = %s", (space.space_id,))}
    ii = {target: sum(w for j, w in zip(src, ws) if j in seen) for target, src, ws in rows(
        settings, "SELECT item_id, source_ids, weights FROM rec.item_neighbors WHERE space_id = %s", (space.space_id,))}
    norm = np.linalg.norm(taste) * space.params["scale"]
    return {i: float(np.dot(taste, np.asarray(v, float)) / (np.linalg.norm(taste) * np.linalg.norm(v)))
            + weight * ii.get(i, 0.0) / norm for i, v in items.items()}


def test_warm_lists_add_the_item_to_item_weights_of_the_users_items(trained):
    settings, dataset, space = trained
    (n,), = rows(settings, "SELECT count(*) FROM rec.item_neighbors WHERE space_id = %s", (space.space_id,))
    assert n == dataset.interactions.item_id.nunique()
    user = _warm_user(settings)
    seen = {r[0] for r in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = %s", (user,))}
    (weight,), = rows(settings, "SELECT item_item_weight FROM rec.retrieval_defaults WHERE user_type = 'warm'")
    assert weight > 0  # the default since revision 0025
    served = rows(settings, "SELECT item_id, score, source FROM rec.recommend(%s, 10, exploration_share => 0)",
                  (user,))
    assert len(served) == 10 and {r[2] for r in served} == {"taste"} and not seen & {r[0] for r in served}
    expected = _scores(settings, space, user, weight, seen)
    for item, score, _ in served:
        assert score == pytest.approx(expected[item], abs=1e-5)
    # the list is the exact top 10 of that score over the unseen catalogue (small catalogue: every item a candidate)
    best = sorted((expected[i] for i in expected if i not in seen), reverse=True)[:10]
    assert [expected[r[0]] for r in served] == pytest.approx(best, abs=1e-6)
    # a genre filter holds
    genre = dataset.items[~dataset.items.item_id.isin(seen)].genres.iloc[0][0]
    filtered = rows(settings, "SELECT r.item_id FROM rec.recommend(%s, 5, genres => %s, exploration_share => 0) r",
                    (user, [genre]))
    allowed = set(dataset.items[dataset.items.genres.map(lambda g: genre in g)].item_id)
    assert filtered and {r[0] for r in filtered} <= allowed - seen


def test_a_weight_of_0_or_switching_it_off_serves_the_taste_vector_alone(trained):
    settings, _, space = trained
    user = _warm_user(settings)
    with db.connect(settings) as conn:
        with_ii = conn.execute("SELECT item_id, score FROM rec.recommend(%s, 10, exploration_share => 0)",
                               (user,)).fetchall()
        conn.execute("SET LOCAL rec.item_item = 'off'")
        switched_off = conn.execute("SELECT item_id, score FROM rec.recommend(%s, 10, exploration_share => 0)",
                                    (user,)).fetchall()
        conn.execute("SET LOCAL rec.item_item = 'on'")
        conn.execute("UPDATE rec.retrieval_defaults SET item_item_weight = 0 WHERE user_type = 'warm'")
        served = conn.execute("SELECT item_id, score FROM rec.recommend(%s, 10, exploration_share => 0)",
                              (user,)).fetchall()
        alone = conn.execute("SELECT r.item_id, r.score FROM rec._rank_by_vector(%s, (SELECT embedding FROM "
                             "rec.user_embeddings WHERE space_id = %s AND user_id = %s AND kind = 'taste'), 10, "
                             "(SELECT array_agg(item_id) FROM rec.interactions WHERE user_id = %s), NULL, NULL, "
                             "NULL, 0, 'taste') r", (space.space_id, space.space_id, user, user)).fetchall()
        conn.rollback()
    assert served == alone == switched_off != with_ii


def test_item_neighbors_go_with_their_space(trained):
    settings, _, first = trained
    second = training.train_collaborative_space(settings, CollaborativeParams(item_item_neighbors=20))
    counts = dict(rows(settings, "SELECT space_id, count(*) FROM rec.item_neighbors GROUP BY space_id"))
    assert set(counts) == {first.space_id, second.space_id}
    training.train_collaborative_space(settings, CollaborativeParams(item_item_neighbors=0))  # drops the first
    counts = dict(rows(settings, "SELECT space_id, count(*) FROM rec.item_neighbors GROUP BY space_id"))
    assert set(counts) == {second.space_id}
    assert spaces.active_space(settings, spaces.COLLABORATIVE).space_id not in counts


def test_onboarding_adds_the_item_to_item_weights_from_evidence_from_items_on(trained):
    settings, _, space = trained
    user = _warm_user(settings)
    seen = {r[0] for r in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = %s", (user,))}
    ii = {target: sum(w for j, w in zip(src, ws) if j in seen) for target, src, ws in rows(
        settings, "SELECT item_id, source_ids, weights FROM rec.item_neighbors WHERE space_id = %s", (space.space_id,))}
    served = {}
    with db.connect(settings) as conn:
        # the user is onboarding (switch above their history), with evidence from the first item
        conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 1000, evidence_from = 1 "
                     "WHERE user_type = 'onboarding'")
        for weight in (0.0, 3.0):
            conn.execute("UPDATE rec.retrieval_defaults SET item_item_weight = %s WHERE user_type = 'onboarding'",
                         (weight,))
            served[weight] = conn.execute("SELECT item_id, score, source FROM rec.recommend(%s, 40, "
                                          "exploration_share => 0)", (user,)).fetchall()
        # a user without a taste vector (not folded in yet) gets the prior and the item-to-item term
        conn.execute("DELETE FROM rec.user_embeddings WHERE user_id = %s AND kind = 'taste'", (user,))
        no_taste = conn.execute("SELECT item_id, score, source FROM rec.recommend(%s, 10, exploration_share => 0)",
                                (user,)).fetchall()
        conn.execute("UPDATE rec.retrieval_defaults SET evidence_from = %s WHERE user_type = 'onboarding'",
                     (len(seen) + 1,))
        below = {}
        for weight in (0.0, 3.0):
            conn.execute("UPDATE rec.retrieval_defaults SET item_item_weight = %s WHERE user_type = 'onboarding'",
                         (weight,))
            below[weight] = conn.execute("SELECT item_id, score FROM rec.recommend(%s, 40, exploration_share => 0)",
                                         (user,)).fetchall()
        conn.rollback()
    assert {r[2] for r in served[3.0]} == {"onboarding"}
    base = {r[0]: r[1] for r in served[0.0]}
    with_ii = {r[0]: r[1] for r in served[3.0]}
    both = set(base) & set(with_ii)
    assert len(both) >= 10 and list(base) != list(with_ii)
    for item in both:  # the same prior and taste terms, plus 3 times the item-to-item score
        assert with_ii[item] - base[item] == pytest.approx(3.0 * ii.get(item, 0.0), abs=1e-6)
    assert not set(with_ii) & seen
    assert len(no_taste) == 10 and {r[2] for r in no_taste} == {"onboarding"} and not {r[0] for r in no_taste} & seen
    # below evidence_from the weight does not act
    assert below[3.0] == below[0.0] and len(below[0.0]) >= 10
