"""Precomputed neighbour votes (rec.cold_candidates): they serve exactly the live vote's lists, only while current,
and only cold and onboarding users with demographics and voters get one.

Real embedded Postgres + pgvector, the synthetic planted-taste data (tests/_retrieval_data.py): 30 cold users.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import psycopg
import pytest

from _retrieval_data import planted_database
from recplatform import db
from recplatform.retrieval import candidates

RECOMMEND = "SELECT item_id, source, score FROM rec.recommend(%s, %s, true, %s, exploration_share => 0)"


@pytest.fixture(scope="module")
def planted(services_settings):
    settings, dataset, cold = planted_database(services_settings, "cand")
    assert candidates.refresh(settings, sorted(cold)) == len(cold)
    return settings, dataset, cold


@contextmanager
def rolled_back(settings):
    """A connection whose whole work is rolled back at the end (the module's database stays as it was)."""
    with db.connect(settings) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def served(conn, user: str, k: int = 10, genres: list[str] | None = None, *, live: bool = False):
    conn.execute("SELECT set_config('rec.cold_candidates', %s, true)", ("off" if live else "on",))
    return [(i, s, round(x, 9)) for i, s, x in conn.execute(RECOMMEND, (user, k, genres)).fetchall()]


def test_precomputed_votes_serve_the_live_lists(planted):
    """Every cold user, with and without a filter and at a k whose candidates exceed what is stored for small k;
    then the same users onboarding (two interactions, excluded from the list): the lists are the live vote's."""
    settings, dataset, cold = planted
    users = sorted(cold)
    with rolled_back(settings) as conn:
        for user in users:
            for k, genres in ((10, None), (10, ["Drama"]), (60, None)):
                got = served(conn, user, k, genres)
                assert got == served(conn, user, k, genres, live=True), (user, k, genres)
                assert len(got) == k and {s for _, s, _ in got} == {"demographic_neighbors"}
        picked = {u: [i for i, _, _ in served(conn, u)[2:4]] for u in users[:10]}
        for user, items in picked.items():
            for item in items:
                conn.execute("INSERT INTO rec.interactions (user_id, item_id, rating) VALUES (%s, %s, 5)", (user, item))
        for user, items in picked.items():
            got = served(conn, user)
            assert got == served(conn, user, live=True) and {s for _, s, _ in got} == {"onboarding"}
            assert not set(items) & {i for i, _, _ in got}


def _mark(conn, user: str, item: str) -> None:
    """Put an item the live vote would not rank first at the top of the user's stored votes."""
    conn.execute("UPDATE rec.cold_candidates c SET (item_ids, votes) = ("
                 "  SELECT ARRAY[%(i)s] || array_agg(u.i ORDER BY u.o), ARRAY[10.0::float8] || array_agg(u.v ORDER BY u.o)"
                 "  FROM unnest(c.item_ids, c.votes) WITH ORDINALITY AS u(i, v, o) WHERE u.i <> %(i)s) "
                 "WHERE c.user_id = %(u)s", {"i": item, "u": user})


@pytest.mark.parametrize("stale_by", [
    "UPDATE rec.cold_candidates SET computed_at = now() - interval '25 hours' WHERE user_id = %(u)s",
    "UPDATE rec.retrieval_defaults SET candidates_max_age = NULL WHERE user_type = 'cold'",
    "UPDATE rec.user_embeddings SET content_hash = 'other' WHERE user_id = %(u)s AND kind = 'demographic'",
    "UPDATE rec.retrieval_defaults SET neighbors = 50 WHERE user_type = 'cold'",
    "UPDATE rec.retrieval_defaults SET neighbor_min_interactions = 3 WHERE user_type = 'cold'",
    "SET LOCAL rec.cold_candidates = 'off'",
])
def test_a_row_serves_only_while_current(planted, stale_by):
    """A doctored row shows when serving reads it; once the row is out of date (too old, computed for another
    demographic vector, neighbourhood size or voter minimum, or switched off) the live vote serves."""
    settings, dataset, cold = planted
    user = sorted(cold)[0]
    with rolled_back(settings) as conn:
        last = served(conn, user, 50)[-1][0]
        _mark(conn, user, last)
        assert served(conn, user)[0][0] == last  # the stored row is what serves
        conn.execute(stale_by, {"u": user} if "%(u)s" in stale_by else None)
        got = [i for i, _, _ in conn.execute(RECOMMEND, (user, 10, None)).fetchall()]
        conn.execute("SET LOCAL rec.cold_candidates = 'off'")
        assert got == [i for i, _, _ in conn.execute(RECOMMEND, (user, 10, None)).fetchall()]
        assert got[0] != last


def test_a_short_row_after_filters_falls_back_to_the_live_vote(planted):
    """When seen items and filters leave fewer stored items than the request needs, serving votes live."""
    settings, dataset, cold = planted
    user = sorted(cold)[1]
    with rolled_back(settings) as conn:
        conn.execute("UPDATE rec.cold_candidates SET item_ids = item_ids[1:60], votes = votes[1:60], complete = false "
                     "WHERE user_id = %s", (user,))
        assert served(conn, user, 10) == served(conn, user, 10, live=True)
        assert served(conn, user, 20, ["Horror"]) == served(conn, user, 20, ["Horror"], live=True)


def test_refresh_keeps_rows_only_for_cold_and_onboarding_users_with_voters(planted):
    settings, dataset, cold = planted
    counts = dataset.interactions.drop_duplicates(["user_id", "item_id"]).user_id.value_counts()
    with db.connect(settings) as conn:
        switch = conn.execute("SELECT switch_after FROM rec.retrieval_defaults WHERE user_type = 'onboarding'"
                              ).fetchone()[0]
    warm = sorted(u for u in counts[counts >= switch].index if u not in cold)[0]  # served by its taste: no row
    cold_user = sorted(cold)[2]
    with rolled_back(settings) as conn:
        assert conn.execute("SELECT rec.refresh_cold_candidates(ARRAY[%s, %s, 'no-such-user'])",
                            (warm, cold_user)).fetchone()[0] == 1
        kept = {r[0] for r in conn.execute("SELECT user_id FROM rec.cold_candidates")}
        assert warm not in kept and cold_user in kept
        (n, complete, ordered), = conn.execute(
            "SELECT cardinality(item_ids), complete, votes = (SELECT array_agg(v ORDER BY v DESC) FROM unnest(votes) v) "
            "FROM rec.cold_candidates WHERE user_id = %s", (cold_user,)).fetchall()
        assert 0 < n <= 500 and complete == (n < 500) and ordered
        conn.execute("UPDATE rec.users SET age = NULL, gender = NULL, occupation = NULL, zip_code = NULL "
                     "WHERE user_id = %s", (cold_user,))
        assert conn.execute("SELECT rec.refresh_cold_candidates(ARRAY[%s])", (cold_user,)).fetchone()[0] == 0
        assert not conn.execute("SELECT 1 FROM rec.cold_candidates WHERE user_id = %s", (cold_user,)).fetchall()
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_size"):
            conn.execute("SELECT rec.refresh_cold_candidates(ARRAY[%s], 0)", (cold_user,))


def test_aging_rows_are_found_oldest_first_and_the_reader_cannot_refresh(planted):
    settings, dataset, cold = planted
    users = sorted(cold)
    with db.connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE rec.cold_candidates SET computed_at = now() - interval '13 hours' - "
                     "make_interval(mins => %s) WHERE user_id = %s", (5, users[3]))
        conn.execute("UPDATE rec.cold_candidates SET computed_at = now() - interval '13 hours' - "
                     "make_interval(mins => %s) WHERE user_id = %s", (9, users[4]))
    try:
        assert candidates.aging_users(settings) == [users[4], users[3]]  # past half of a day, oldest first
        one_per_run = settings.model_copy(update={"cold_candidates_per_reconcile": 1})
        assert candidates.aging_users(one_per_run) == [users[4]]
        assert re.fullmatch(r"precomputed votes ~\d+ users, 2 aging, 0 past 1 day", candidates.status_line(settings))
    finally:
        assert candidates.refresh(settings, users[3:5]) == 2
    assert candidates.aging_users(settings) == []
    with psycopg.connect(settings.reader_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        assert conn.execute("SELECT count(*) FROM rec.cold_candidates").fetchone()[0] == len(cold)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rec.refresh_cold_candidates(ARRAY['u1'])")


def test_reconcile_sends_the_aging_rows_to_the_worker(planted, services_settings):
    """Reconcile's step: the rows past half their age become refresh messages on the default queue; the task's
    refresh makes them current again."""
    from recplatform.workers import enqueue

    settings, dataset, cold = planted
    user = sorted(cold)[5]
    with db.connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE rec.cold_candidates SET computed_at = now() - interval '20 hours' WHERE user_id = %s",
                     (user,))
    broker = settings.model_copy(update={"broker_url": f"redis+socket://{services_settings.redis_socket}"
                                                      "?virtual_host=12"})
    assert enqueue.enqueue_aging_candidates(broker) == 1
    with enqueue.app_for(broker).connection_for_write() as conn:
        message = conn.SimpleQueue("default", no_ack=True).get(timeout=5)
    assert message.headers["task"] == "recplatform.refresh_cold_candidates" and message.payload[0] == [[user]]
    assert candidates.refresh(settings, message.payload[0][0]) == 1  # what the worker's task does with it
    assert candidates.aging_users(settings) == []
