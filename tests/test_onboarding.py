"""Onboarding and exploration in SQL: a first interaction never makes a list worse, exploration slots are marked
and obey filters and exclusion, share 0 is the warm list of before, and rec.new_for_you ranks fresh items only.

Real embedded Postgres + pgvector, the synthetic planted-taste data (tests/_retrieval_data.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from _retrieval_data import planted_database
from recplatform import db
from recplatform.client import RecClient
from recplatform.retrieval import taste


@pytest.fixture(scope="module")
def planted(services_settings):
    return planted_database(services_settings, "onb")


def rows(settings, query, params=()):
    with db.connect(settings, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def preferred_share(settings, dataset, user: str, items: list[str]) -> float:
    """Share of a list whose genres meet the user's two planted favourite genres."""
    genres = {i: set(g) for i, g in rows(settings, "SELECT item_id, genres FROM rec.items WHERE item_id = ANY(%s)",
                                         (items,))}
    liked = set(dataset.truth["user_preferred_genres"][user][:2])
    return float(np.mean([bool(genres[i] & liked) for i in items]))


def test_first_interaction_does_not_make_the_list_worse(planted):
    """Cold users of the planted data get their first real interaction (their earliest, written to the table and
    folded in by the taste refresh): the share of their list in their planted favourite genres does not fall, on
    average, and the list is served by the onboarding path. Both lists are judged on what the user can still be
    shown: the item they just interacted with is left out of the list they had before."""
    settings, dataset, cold = planted
    users = sorted(cold)
    first = (dataset.interactions[dataset.interactions.user_id.isin(cold)]
             .sort_values(["user_id", "occurred_at"], kind="mergesort").groupby("user_id").head(1))
    first_item = dict(zip(first.user_id, first.item_id))
    before = {u: [i for i, in rows(settings, "SELECT item_id FROM rec.recommend(%s, 11, exploration_share => 0)",
                                   (u,)) if i != first_item[u]][:10] for u in users}
    try:
        with db.transaction(settings) as conn:
            for r in first.itertuples(index=False):
                conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating, occurred_at) VALUES (%s, %s, %s, %s)",
                             (r.user_id, r.item_id, float(r.rating), r.occurred_at.to_pydatetime()))
        assert taste.refresh_user_taste(users, settings) == len(users)
        after, sources = {}, set()
        for u in users:
            got = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 10, exploration_share => 0)", (u,))
            after[u] = [i for i, _ in got]
            sources |= {s for _, s in got}
        assert sources == {"onboarding"}
        share_before = np.mean([preferred_share(settings, dataset, u, before[u]) for u in users])
        share_after = np.mean([preferred_share(settings, dataset, u, after[u]) for u in users])
        assert share_after >= share_before - 1e-9, (share_before, share_after)
    finally:
        with db.transaction(settings) as conn:
            conn.execute("DELETE FROM rec.interactions WHERE user_id = ANY(%s)", (users,))
        taste.refresh_user_taste(users, settings)


def restore_bars(settings, bars) -> None:
    with db.transaction(settings) as conn:
        for user_type, bar in bars:
            conn.execute("UPDATE rec.retrieval_defaults SET exploration_min_ratio = %s WHERE user_type = %s",
                         (bar, user_type))


def _fresh_items(settings, m: int) -> set[str]:
    return {i for i, in rows(settings, "SELECT item_id FROM rec.item_priors WHERE n_users < %s", (m,))}


def test_exploration_slots_are_marked_fresh_filtered_and_unseen(planted):
    settings, dataset, cold = planted
    m = 4
    fresh = _fresh_items(settings, m)
    assert len(fresh) >= 5, "the planted data should have items with few interactions"
    bars = rows(settings, "SELECT user_type, exploration_min_ratio FROM rec.retrieval_defaults")
    with db.transaction(settings) as conn:  # bar 0: the fresh items take their slots whatever their scores
        conn.execute("UPDATE rec.retrieval_defaults SET fresh_max_interactions = %s, exploration_min_ratio = 0", (m,))
    try:
        (genre,), = rows(settings, "SELECT g FROM rec.items i, unnest(i.genres) g WHERE i.item_id = ANY(%s) "
                                   "GROUP BY g ORDER BY count(*) DESC, g LIMIT 1", (sorted(fresh),))
        for user in ("u150", "u3"):  # a warm user and a cold one
            seen = {i for i, in rows(settings, "SELECT item_id FROM rec.interactions WHERE user_id = %s", (user,))}
            got = rows(settings, "SELECT rank, item_id, source FROM rec.recommend(%s, 10, genres => ARRAY[%s], "
                                 "exploration_share => 0.3)", (user, genre))
            assert [r for r, *_ in got] == list(range(1, 11))
            assert len({i for _, i, _ in got}) == 10
            explore = [i for _, i, s in got if s == "exploration"]
            assert len(explore) == 3 and [s for *_, s in got][-3:] == ["exploration"] * 3
            assert set(explore) <= fresh and not set(explore) & seen
            genres = {i: set(g) for i, g in rows(settings, "SELECT item_id, genres FROM rec.items WHERE item_id = ANY(%s)",
                                                 ([i for _, i, _ in got],))}
            assert all(genre in genres[i] for _, i, _ in got)
            assert not {i for _, i, _ in got} & seen
        # the default share comes from rec.retrieval_defaults; 0 there turns it off
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET exploration_share = 0.2")
        assert [s for *_, s in rows(settings, "SELECT * FROM rec.recommend('u150', 10)")][-2:] == ["exploration"] * 2
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET exploration_share = 0")
        assert "exploration" not in {s for *_, s in rows(settings, "SELECT * FROM rec.recommend('u150', 10)")}
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET fresh_max_interactions = 5, exploration_share = 0.1")
        restore_bars(settings, bars)


def test_exploration_slot_taken_only_above_the_bar(planted):
    """exploration_min_ratio: a fresh item takes its slot only when its similarity to the user's taste vector is at
    least that multiple of the main list's k-th item's; a bar nobody clears gives back the list without
    exploration, and every fresh item shown under a lower bar clears it."""
    settings, dataset, cold = planted
    user = "u150"
    bars = rows(settings, "SELECT user_type, exploration_min_ratio FROM rec.retrieval_defaults")
    plain = rows(settings, "SELECT item_id, source FROM rec.recommend(%s, 10, exploration_share => 0)", (user,))
    kth = rows(settings, """SELECT 1 - (e.embedding <=> t.embedding) FROM rec.embedding_models m
                            JOIN rec.user_embeddings t ON t.space_id = m.space_id AND t.user_id = %s AND t.kind = 'taste'
                            JOIN rec.item_embeddings e ON e.space_id = m.space_id AND e.item_id = %s
                            WHERE m.kind = 'collaborative' AND m.is_active""", (user, plain[-1][0]))[0][0]
    try:
        for bar in (10.0, 0.5):
            with db.transaction(settings) as conn:
                conn.execute("UPDATE rec.retrieval_defaults SET exploration_min_ratio = %s, fresh_max_interactions = 4",
                             (bar,))
            got = rows(settings, "SELECT item_id, score, source FROM rec.recommend(%s, 10, exploration_share => 0.3)",
                       (user,))
            fresh = [(i, s) for i, s, src in got if src == "exploration"]
            assert len(got) == 10 and all(s >= bar * kth - 1e-9 for _, s in fresh)
            if bar == 10.0:
                assert [(i, src) for i, _, src in got] == plain
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET fresh_max_interactions = 5")
        restore_bars(settings, bars)


def test_share_zero_reproduces_the_warm_taste_list(planted):
    """A user past the onboarding switch, share 0: exactly the taste-vector ranking of before (rec._rank_by_vector
    with the user's taste vector and seen items excluded, no prior)."""
    settings, dataset, cold = planted
    (switch,), = rows(settings, "SELECT switch_after FROM rec.retrieval_defaults WHERE user_type = 'onboarding'")
    counts = dataset.interactions.groupby("user_id").item_id.nunique()
    user = str(counts[counts >= switch].index[0]) if (counts >= switch).any() else None
    if user is None:  # the planted users are small: move the switch below the first warm user's history
        user = str(counts.index[-1])
        switch = int(counts.iloc[-1])
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET switch_after = %s WHERE user_type = 'onboarding'", (switch,))
    try:
        got = rows(settings, "SELECT rank, item_id, score, source FROM rec.recommend(%s, 10, exploration_share => 0)",
                   (user,))
        expected = rows(settings, """
            SELECT r.rank, r.item_id, r.score, r.source FROM rec.embedding_models m
            JOIN rec.user_embeddings t ON t.space_id = m.space_id AND t.user_id = %(u)s AND t.kind = 'taste',
            LATERAL rec._rank_by_vector(m.space_id, t.embedding, 10,
                                        (SELECT array_agg(DISTINCT x.item_id) FROM rec.interactions x
                                         WHERE x.user_id = %(u)s), NULL, NULL, NULL, 0, 'taste') r
            WHERE m.kind = 'collaborative' AND m.is_active ORDER BY r.rank""", {"u": user})
        assert got == expected and len(got) == 10
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET switch_after = 21 WHERE user_type = 'onboarding'")


def test_new_for_you_ranks_fresh_items_only(planted):
    settings, dataset, cold = planted
    m = 4
    fresh = _fresh_items(settings, m)
    with db.transaction(settings) as conn:
        conn.execute("UPDATE rec.retrieval_defaults SET fresh_max_interactions = %s", (m,))
    try:
        with RecClient(settings) as client:
            got = client.new_for_you("u150", k=5)
            assert len(got) == 5 and {r.source for r in got} == {"fresh"} and {r.item_id for r in got} <= fresh
            assert [r.score for r in got] == sorted([r.score for r in got], reverse=True)
            via_sql = rows(settings, "SELECT rank, item_id, title, score, source FROM rec.new_for_you('u150', 5)")
            assert [tuple(vars(r).values()) for r in got] == [tuple(r) for r in via_sql]
            assert {r.item_id for r in client.new_for_you("u3", k=len(fresh) + 5)} == fresh  # all, never more
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET fresh_max_interactions = 5")


def test_demographic_neighbours_need_the_configured_history(planted):
    """Only users with at least ``neighbor_min_interactions`` items (the cold row of rec.retrieval_defaults) vote
    as demographic neighbours: a user who is still onboarding (a handful of items) would vote with noise, and
    every fold's onboarding users did so at once in the evaluation. Lowering the minimum lets them back in; when
    too few users reach it, the nearest with at least 5 items fill the neighbourhood."""
    settings, dataset, cold = planted
    counts = dict(rows(settings, "SELECT user_id, count(*) FROM rec.interactions GROUP BY user_id"))
    minimum = 30
    assert any(5 <= n < minimum for n in counts.values()), "the planted data should have users with short histories"
    query = """SELECT n.user_id FROM rec.embedding_models m
               JOIN rec.user_embeddings d ON d.space_id = m.space_id AND d.user_id = %s AND d.kind = 'demographic',
               LATERAL rec._demographic_neighbors(m.space_id, rec.active_space_id('collaborative'), d.embedding::vector,
                                                  %s, 40, 'interactions') n
               WHERE m.kind = 'content' AND m.is_active"""
    try:
        for value in (minimum, 5):
            with db.transaction(settings) as conn:
                conn.execute("UPDATE rec.retrieval_defaults SET neighbor_min_interactions = %s", (value,))
            for user in ("u1", "u2", "u3"):
                got = [u for u, in rows(settings, query, (user, user))]
                assert len(got) == 40 and user not in got
                assert min(counts[u] for u in got) >= value
                if value == 5:
                    assert any(counts[u] < minimum for u in got), "a lower minimum should let short histories vote"
        # a minimum nobody reaches (a young deployment): the nearest users with at least 5 items fill in
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET neighbor_min_interactions = 1000")
        got = [u for u, in rows(settings, query, ("u1", "u1"))]
        assert len(got) == 40 and min(counts[u] for u in got) >= 5
    finally:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE rec.retrieval_defaults SET neighbor_min_interactions = 50")


def test_fresh_items_are_only_those_among_the_10000_newest(db_settings):
    """An item with few users is "new" only among the 10,000 newest items: ranked at the priors' refresh, and
    shifted by every item created since (which is newer than all of them)."""
    long_tail = (10, 49, 50, 5000)  # item numbers left without users; item n is ranked 10,050 - n at the refresh
    with db.transaction(db_settings) as conn:
        conn.execute("INSERT INTO rec.users (user_id, content_hash) SELECT 'u' || g, 'h' FROM generate_series(0, 5) g")
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash, created_at) "
                     "SELECT 'i' || lpad(g::text, 5, '0'), 'Film ' || g, 'h', "
                     "now() - interval '1 day' + g * interval '1 second' FROM generate_series(0, 10049) g")
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating) "
                     "SELECT 'u' || u, 'i' || lpad(g::text, 5, '0'), 4 "
                     "FROM generate_series(0, 10049) g, generate_series(1, 5) u WHERE NOT (g = ANY(%s))",
                     (list(long_tail),))
        conn.execute("SELECT rec.refresh_item_priors()")

    def fresh() -> set[str]:
        return {r[1] for r in rows(db_settings, "SELECT * FROM rec.new_for_you('u0', 10)")}

    assert fresh() == {"i00050", "i05000"}  # ranks 10,000 and 5,050; i00049 (10,001) and i00010 are not new
    with db.transaction(db_settings) as conn:
        conn.execute("INSERT INTO rec.items (item_id, title, content_hash) VALUES ('late', 'Late film', 'h')")
    assert fresh() == {"late", "i05000"}  # one item newer than all: i00050 is now the 10,001st newest


def test_many_fresh_items_are_read_newest_first_and_ranked_for_the_user(db_settings):
    """More than 10,000 items below the fresh threshold (rec._rank_fresh walks the newest items with a priors probe
    each): the 2000 newest fresh items among the 10,000 newest, the items created since the refresh first, seen and
    filtered items left out, ranked by cosine with the user's taste. Checked against the same rule computed here."""
    n, k = 13_000, 25
    rng = np.random.default_rng(7)
    vectors = {f"i{g:05d}": rng.normal(size=3) for g in range(n)} | {f"late{j}": rng.normal(size=3) for j in range(3)}
    taste_vec = rng.normal(size=3)
    popular = [g for g in range(n) if g % 7 == 0]  # five users each: not fresh
    seen = ["i12998", "i12990", "late1"]
    text = lambda v: "[" + ",".join(f"{x:.6f}" for x in v) + "]"  # noqa: E731
    with db.transaction(db_settings) as conn:
        conn.execute("INSERT INTO rec.users (user_id, content_hash) SELECT 'u' || g, 'h' FROM generate_series(0, 5) g")
        conn.execute("INSERT INTO rec.items (item_id, title, genres, content_hash, created_at) "
                     "SELECT 'i' || lpad(g::text, 5, '0'), 'Film ' || g, CASE WHEN g %% 3 = 0 THEN ARRAY['Drama'] "
                     "ELSE ARRAY['Comedy'] END, 'h', now() - interval '1 day' + g * interval '1 second' "
                     "FROM generate_series(0, %s) g", (n - 1,))
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating) SELECT 'u' || u, 'i' || lpad(g::text, 5, "
                     "'0'), 4 FROM unnest(%s::int[]) g, generate_series(1, 5) u", (popular,))
        conn.execute("SELECT rec.refresh_item_priors()")
        conn.execute("INSERT INTO rec.items (item_id, title, genres, content_hash) SELECT 'late' || j, 'Late ' || j, "
                     "ARRAY['Drama'], 'h' FROM generate_series(0, 2) j")
        conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating) SELECT 'u0', s, 4 FROM unnest(%s::text[]) s",
                     (seen,))
        space = conn.execute("INSERT INTO rec.embedding_models (name, kind, model_ref, dimension, is_active) "
                             "VALUES ('collaborative-test', 'collaborative', 'test', 3, true) RETURNING space_id"
                             ).fetchone()[0]
        with conn.cursor().copy("COPY rec.item_embeddings (space_id, item_id, embedding, content_hash) FROM STDIN") as cp:
            for item, v in vectors.items():
                cp.write_row((space, item, text(v), "h"))
        conn.execute("INSERT INTO rec.user_embeddings (space_id, user_id, kind, embedding, content_hash) "
                     "VALUES (%s, 'u0', 'taste', %s::vector, 'h')", (space, text(taste_vec)))
    (few,), = rows(db_settings, "SELECT count(*) FROM rec.item_priors WHERE n_users < 5")
    assert few > 10_000  # the many-fresh path

    def expected(genre: str | None) -> list[str]:
        ranked = [f"late{j}" for j in (2, 1, 0)] + [f"i{g:05d}" for g in range(n - 1, n - 1 - (10_000 - 3), -1)]
        fresh = [i for i in ranked if i.startswith("late") or int(i[1:]) % 7]
        fresh = [i for i in fresh if i not in seen and (genre is None or i.startswith("late") or
                                                        (int(i[1:]) % 3 == 0) == (genre == "Drama"))][:2000]
        cos = {i: float(vectors[i] @ taste_vec / np.linalg.norm(vectors[i]) / np.linalg.norm(taste_vec)) for i in fresh}
        return sorted(fresh, key=lambda i: -cos[i])[:k]

    for genre in (None, "Drama"):
        got = rows(db_settings, "SELECT item_id, score, source FROM rec.new_for_you('u0', %s, %s)",
                   (k, None if genre is None else [genre]))
        assert [r[0] for r in got] == expected(genre), genre
        assert {r[2] for r in got} == {"fresh"} and all(r[1] is not None for r in got)
