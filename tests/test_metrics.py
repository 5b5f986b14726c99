"""Ranking metrics against hand-computed values, including the edge cases the report relies on."""

import math

import numpy as np
import pytest

from recplatform.evaluation import metrics as M

L2, L3, L4, L5 = math.log2(2), math.log2(3), math.log2(4), math.log2(5)
RECS = ["a", "b", "c", "d", "e"]
REL = {"b", "d", "z"}  # hits at ranks 2 and 4; one relevant item never recommended


def test_precision_recall_hit_at_5():
    assert M.precision_at_k(RECS, REL, 5) == pytest.approx(2 / 5)
    assert M.recall_at_k(RECS, REL, 5) == pytest.approx(2 / 3)
    assert M.hit_at_k(RECS, REL, 5) == 1.0
    assert M.hit_at_k(RECS, REL, 1) == 0.0


def test_ndcg_uses_log2_discount_and_ideal_from_relevant_set():
    dcg = 1 / L3 + 1 / L5
    idcg = 1 / L2 + 1 / L3 + 1 / L4  # three relevant items
    assert M.ndcg_at_k(RECS, REL, 5) == pytest.approx(dcg / idcg)
    assert M.ndcg_at_k(RECS, REL, 5) == pytest.approx(0.4981893, abs=1e-6)
    # at k = 2 the ideal list is truncated to two hits
    assert M.ndcg_at_k(RECS, REL, 2) == pytest.approx((1 / L3) / (1 / L2 + 1 / L3))
    assert M.ndcg_at_k(["b", "d", "z"], REL, 3) == pytest.approx(1.0)


def test_average_precision_normalised_by_min_relevant_k():
    assert M.average_precision_at_k(RECS, REL, 5) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert M.average_precision_at_k(RECS, REL, 2) == pytest.approx((1 / 2) / 2)
    assert M.average_precision_at_k(["b", "d"], {"b", "d"}, 10) == pytest.approx(1.0)


def test_fewer_than_k_recommendations():
    recs, rel = ["b"], {"b", "c"}
    assert M.precision_at_k(recs, rel, 5) == pytest.approx(1 / 5)  # short lists are not rewarded
    assert M.recall_at_k(recs, rel, 5) == pytest.approx(1 / 2)
    assert M.ndcg_at_k(recs, rel, 5) == pytest.approx(1 / (1 + 1 / L3))
    assert M.average_precision_at_k(recs, rel, 5) == pytest.approx(1 / 2)
    assert M.ndcg_at_k([], rel, 5) == 0.0


def test_duplicates_count_once_and_bad_k_raises():
    assert M.precision_at_k(["b", "b"], {"b"}, 2) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="k must be positive"):
        M.ndcg_at_k(RECS, REL, 0)
    with pytest.raises(ValueError, match="no relevant items"):
        M.ndcg_at_k(RECS, set(), 5)


def test_users_without_relevant_items_are_excluded_and_counted():
    report = M.evaluate({"u1": ["b", "x"], "u2": ["a"], "u3": ["q"]}, {"u1": {"b"}, "u2": set(), "u3": {"r"}},
                        catalogue_size=10, ks=(1,), n_boot=50)
    assert report.n_users == 2 and report.users_without_relevant == 1
    assert report.values["precision@1"] == pytest.approx(0.5)  # u1 hit, u3 miss; u2 not averaged in
    assert report.values["ndcg@1"] == pytest.approx(0.5)
    # a user with relevant items and no recommendations at all scores zero
    report = M.evaluate({}, {"u1": {"b"}}, catalogue_size=5, ks=(5,), n_boot=10)
    assert report.values["recall@5"] == 0.0 and report.values["coverage@5"] == 0.0


def test_coverage_novelty_diversity():
    recs = {"u1": ["a", "b"], "u2": ["b", "c"]}
    assert M.coverage_at_k(recs, 10, 2) == pytest.approx(3 / 10)
    assert M.coverage_at_k(recs, 10, 1) == pytest.approx(2 / 10)
    # counts a=3, b=1 over a catalogue of 4: shares (3+1)/8 and (0+1)/8
    assert M.novelty_at_k({"u": ["a", "c"]}, {"a": 3, "b": 1}, 4, 2) == pytest.approx((1 + 3) / 2)
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 1.0])}
    d = 1 - 1 / math.sqrt(2)
    assert M.intra_list_diversity(["a", "b", "c"], vectors) == pytest.approx((1 + d + d) / 3)
    assert M.intra_list_diversity(["a"], vectors) is None
    assert M.diversity_at_k({"u1": ["a", "b"], "u2": ["a", "a"]}, vectors, 2) == pytest.approx((1 + 0) / 2)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(3).random(200)
    lo, hi = M.bootstrap_ci(values, n_boot=500, seed=1)
    assert lo < values.mean() < hi
    assert (lo, hi) == M.bootstrap_ci(values, n_boot=500, seed=1)
    assert M.bootstrap_ci(np.full(10, 0.25), n_boot=100) == (pytest.approx(0.25), pytest.approx(0.25))


def test_ranking_auc_full_and_truncated_lists():
    # 5 candidates; relevant item at position 1 of a full list: 3 of the 4 others are below it
    assert M.ranking_auc(["a", "b", "c", "d", "e"], {"b"}, 5) == pytest.approx(1 - 1 / 4)
    assert M.ranking_auc(["a", "b", "c", "d", "e"], {"a", "e"}, 5) == pytest.approx((1 + 0) / 2)
    # truncated at 2 of 5: an unlisted relevant item sits in the middle of positions 2..4, i.e. at 3
    assert M.ranking_auc(["a", "b"], {"z"}, 5) == pytest.approx(1 - 3 / 4)
    report = M.evaluate({"u": ["a", "b"]}, {"u": {"a"}}, catalogue_size=5, ks=(1,), n_boot=10, candidates={"u": 5})
    assert report.values["auc"] == pytest.approx(1.0) and "auc" in report.ci95
