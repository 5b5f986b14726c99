"""``recplatform train``, ``recommend``, ``similar`` and ``explain``: training and the retrieval SQL functions.

They call :mod:`recplatform.retrieval.training` and :class:`recplatform.client.RecClient`; ranking stays in the
SQL functions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Optional

import typer

from recplatform.cli.output import cli_settings, console, fail, print_recs, print_table
from recplatform.client import RecClient, RecClientError
from recplatform.retrieval import training, tuning
from recplatform.retrieval.als import CollaborativeParams

_DEFAULTS = CollaborativeParams()


def _client() -> RecClient:
    return RecClient(cli_settings())


def _years(min_year: Optional[int], max_year: Optional[int]):
    return None if min_year is None and max_year is None else (min_year, max_year)


def train(
    factors: int = typer.Option(_DEFAULTS.factors, "--factors", min=2, max=512, help="Latent factors (space dimension = factors + 1)."),
    iterations: int = typer.Option(_DEFAULTS.iterations, "--iterations", min=1, max=200, help="ALS iterations."),
    reg: float = typer.Option(_DEFAULTS.reg, "--reg", min=0.0, help="L2 regularisation lambda."),
    alpha: float = typer.Option(_DEFAULTS.alpha, "--alpha", min=0.0, help="Confidence slope: c = 1 + alpha * strength."),
    half_life_days: float = typer.Option(_DEFAULTS.half_life_days, "--half-life-days", min=0.01,
                                         help="Recency half-life within a user's history."),
    wait: bool = typer.Option(False, "--wait", help="If another training is running, wait for it, then train."),
    tune_first: bool = typer.Option(False, "--tune", help="First choose factors/reg/alpha and the warm prior and "
                                                          "item-to-item weights on a validation split of the "
                                                          "interactions (recplatform tune)."),
    budget: float = typer.Option(300.0, "--tune-budget", min=1.0, help="Seconds the tuning may take."),
) -> None:
    """Train the collaborative space (ALS on all interactions), map new items, fit the cold-start map, activate.

    Without --tune, the hyper-parameters of the last ``recplatform tune`` are used when there was one (options
    given on the command line win)."""
    settings = cli_settings()
    params = CollaborativeParams(factors=factors, iterations=iterations, reg=reg, alpha=alpha,
                                               half_life_days=half_life_days)
    if tune_first:
        _run_tune(settings, budget)
    tuned = tuning.tuned_params(settings)
    if tuned is not None and (factors, reg, alpha) == (_DEFAULTS.factors, _DEFAULTS.reg, _DEFAULTS.alpha):
        params = replace(params, factors=tuned.factors, reg=tuned.reg, alpha=tuned.alpha)
        console.print(f"using tuned hyper-parameters: factors {params.factors}, reg {params.reg:g}, "
                      f"alpha {params.alpha:g}")
    started = time.perf_counter()
    try:
        space = training.train_collaborative_space(settings, params, progress=True, wait=wait)
    except training.TrainingInProgressError as exc:
        fail(f"{exc} (`recplatform train --wait` waits for it)")
    except ValueError as exc:
        fail(exc)
    p = space.params or {}
    print_table("collaborative space", ["field", "value"], [
        ["space", f"{space.name} (id {space.space_id})"], ["dimension", space.dimension],
        ["users with a taste vector", p.get("n_users")], ["items with interactions", p.get("n_items")],
        ["final loss", f"{p.get('final_loss', 0):.1f}"], ["seconds", f"{time.perf_counter() - started:.2f}"],
    ])
    console.print("[green]active[/green]: rec.recommend now serves warm users from this space")


def _run_tune(settings, budget: float) -> None:
    try:
        result = tuning.tune(settings, budget_s=budget, progress=True)
    except ValueError as exc:
        fail(exc)
    tuning.store(settings, result)
    print_table("tuning (validation split of this deployment's interactions)",
                ["factors", "reg", "alpha", "prior", "item-item", "NDCG@10", "s"],
                [[c["factors"], f"{c['reg']:g}", f"{c['alpha']:g}", f"{c['popularity_weight']:g}",
                  f"{c['item_item_weight']:g}", f"{c['ndcg@10']:.4f}", c["seconds"]] for c in result.candidates])
    console.print(f"chosen: factors {result.params.factors}, reg {result.params.reg:g}, alpha "
                  f"{result.params.alpha:g}, warm prior {result.popularity_weight:g}, item-to-item weight "
                  f"{result.item_item_weight:g} (validation NDCG@10 "
                  f"{result.score:.4f}, {result.n_users} users, {result.seconds:.0f} s"
                  + (", stopped by the budget" if result.stopped_by_budget else "") + "); stored in "
                  "rec.retrieval_defaults")


def tune(
    budget: float = typer.Option(300.0, "--budget", min=1.0, help="Seconds the tuning may take."),
) -> None:
    """Choose ALS hyper-parameters and the warm prior and item-to-item weights on a validation split of the
    interactions; the weights serve at once, the next `recplatform train` uses the hyper-parameters."""
    _run_tune(cli_settings(), budget)


def recommend(
    user_id: Optional[str] = typer.Argument(None, help="A stored user id (or give --age/--gender/--occupation/--zip "
                                                       "for a person who is not stored)."),
    k: int = typer.Option(10, "-k", "--k", help="How many items (1..1000)."),
    genre: Optional[list[str]] = typer.Option(None, "--genre", help="Only items with any of these genres (repeatable)."),
    min_year: Optional[int] = typer.Option(None, "--min-year"),
    max_year: Optional[int] = typer.Option(None, "--max-year"),
    strategy: Optional[str] = typer.Option(None, "--strategy",
                                           help="taste, onboarding, neighbors_vote, neighbors_taste, learned_map, prompt, "
                                                "popularity (default: rec.retrieval_defaults)."),
    exploration: Optional[float] = typer.Option(None, "--exploration", min=0.0, max=1.0,
                                                help="Share of the k slots for fresh items (0 = off; default: "
                                                     "rec.retrieval_defaults)."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Do not exclude items the user has seen."),
    age: Optional[int] = typer.Option(None, "--age", help="A person who is not stored: their age."),
    gender: Optional[str] = typer.Option(None, "--gender", help="A person who is not stored: M or F."),
    occupation: Optional[str] = typer.Option(None, "--occupation", help="A person who is not stored: occupation."),
    zip_code: Optional[str] = typer.Option(None, "--zip", help="A person who is not stored: ZIP or postal code."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table (errors too)."),
) -> None:
    """Top k items for a stored user (rec.recommend), or for a person who is not stored, from the demographics
    given (rec.recommend_for_demographic_vector; the same as RecClient.recommend_for_profile)."""
    profile = {"age": age, "gender": gender, "occupation": occupation, "zip_code": zip_code}
    given = [f"--{'zip' if name == 'zip_code' else name}" for name, value in profile.items() if value is not None]
    if user_id is not None and given:
        fail(f"give a USER_ID or {', '.join(given)} (a person who is not stored), not both", as_json)
    if user_id is None and not given:
        fail("give a USER_ID, or --age/--gender/--occupation/--zip for a person who is not stored", as_json)
    with _client() as client:
        try:
            if user_id is None:
                if include_seen or exploration is not None:
                    fail("--include-seen and --exploration apply to stored users only", as_json)
                recs = client.recommend_for_profile(**profile, k=k, genres=genre or None,
                                                    years=_years(min_year, max_year), strategy=strategy)
            else:
                recs = client.recommend(user_id, k, exclude_seen=not include_seen, genres=genre or None,
                                        years=_years(min_year, max_year), strategy=strategy,
                                        exploration_share=exploration)
        except RecClientError as exc:
            fail(exc, as_json)
    who = f"user {user_id}" if user_id is not None else "a person who is not stored: " + ", ".join(
        f"{name}={value}" for name, value in profile.items() if value is not None)
    print_recs(f"recommendations for {who}", recs, as_json)


def new_for_you(
    user_id: str = typer.Argument(..., help="A stored user id."),
    k: int = typer.Option(10, "-k", "--k", help="How many items (1..1000)."),
    genre: Optional[list[str]] = typer.Option(None, "--genre", help="Only items with any of these genres (repeatable)."),
    min_year: Optional[int] = typer.Option(None, "--min-year"),
    max_year: Optional[int] = typer.Option(None, "--max-year"),
    include_seen: bool = typer.Option(False, "--include-seen", help="Do not exclude items the user has seen."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Fresh items only (few interactions or recently added), ranked for a user (rec.new_for_you)."""
    with _client() as client:
        try:
            recs = client.new_for_you(user_id, k, genres=genre or None, years=_years(min_year, max_year),
                                      exclude_seen=not include_seen)
        except RecClientError as exc:
            fail(exc, as_json)
    print_recs(f"new for user {user_id}", recs, as_json)


def defaults() -> None:
    """The serving defaults in rec.retrieval_defaults (per user type), with what chose them."""
    with _client() as client:
        try:
            rows = client.retrieval_defaults()
        except RecClientError as exc:
            fail(exc)
    print_table("rec.retrieval_defaults", ["user type", "strategy", "prior", "neighbours", "voters ≥", "content",
                                           "item-item", "evidence", "n0", "overlap", "from", "switch", "exploration", "bar",
                                           "fresh <", "votes kept",
                                           "tuning / note"],
                [[r["user_type"], r["strategy"], f"{r['popularity_weight']:g}", r["neighbors"],
                  r["neighbor_min_interactions"], f"{r['content_weight']:g}",
                  f"{r['item_item_weight']:g}" if r["user_type"] != "cold" else "", f"{r['evidence_weight']:g}",
                  f"{r['evidence_n0']:g}", f"{r['overlap_weight']:g}", r["evidence_from"], r["switch_after"],
                  f"{r['exploration_share']:g}", f"{r['exploration_min_ratio']:g}", r["fresh_max_interactions"],
                  (r["candidates_max_age"] or "off") if r["user_type"] == "cold" else "",
                  json.dumps(r["tuning"], sort_keys=True) if r["tuning"] else r["note"]] for r in rows])


def similar(
    item_id: str = typer.Argument(..., help="A stored item id."),
    k: int = typer.Option(10, "-k", "--k", help="How many items (1..1000)."),
    space: Optional[str] = typer.Option(None, "--space", help="collaborative or content (default: collaborative "
                                                              "when the item has a vector there)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Items most similar to an item (rec.similar_items)."""
    with _client() as client:
        try:
            recs = client.similar_items(item_id, k, space=space)
        except RecClientError as exc:
            fail(exc, as_json)
    print_recs(f"items similar to {item_id}", recs, as_json)


def explain(
    user_id: str = typer.Argument(..., help="A stored user id."),
    item_id: str = typer.Argument(..., help="A stored item id."),
    k: int = typer.Option(5, "-k", "--k", help="How many reasons."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Why an item ranks for a user: history items (warm) or demographic neighbours (cold) that pulled it up."""
    with _client() as client:
        try:
            result = client.explain(user_id, item_id, k)
        except RecClientError as exc:
            fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    print_table(f"why {item_id} for user {user_id} (source: {result.source})",
                ["reason", "id", "label", "similarity", "weight"],
                [[r.reason, r.ref_id, r.label, "" if r.similarity is None else f"{r.similarity:.4f}",
                  "" if r.weight is None else f"{r.weight:g}"] for r in result.reasons])


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("tune")(tune)
    app.command("recommend")(recommend)
    app.command("new-for-you")(new_for_you)
    app.command("defaults")(defaults)
    app.command("similar")(similar)
    app.command("explain")(explain)
