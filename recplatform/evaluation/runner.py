"""Runs baselines and platform strategies over the evaluation protocols and collects their metrics.

For each protocol the runner builds the seeded splits, and for each split:

- computes the baselines in-process (:mod:`recplatform.evaluation.baselines`) on the training interactions;
- when platform strategies are on, loads the training data into a fresh database and asks the platform's own
  SQL functions for the test users' rankings (:mod:`recplatform.evaluation.serving`), so the numbers are what
  production serves.

Rankings of all folds are pooled (cold-user folds are user-disjoint, so every user is scored once) and the
metrics of :mod:`recplatform.evaluation.metrics` are computed once per strategy, with bootstrap CIs over users.
Novelty uses each item's share of all the dataset's interactions; diversity uses the items' content
embeddings (the platform's encoder over the item cards).
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from recplatform.config import PROJECT_ROOT, Settings
from recplatform.embedding.encoder import load_encoder
from recplatform.evaluation import baselines, metrics, serving
from recplatform.evaluation.protocols import ONBOARDING_STEPS, PROTOCOLS, Split, known_items, splits
from recplatform.text.templates import item_card

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("random", "popularity", "segment_popularity", "cf")
# Which baselines make sense where: EASE needs history, so it is left out of cold-user.
BASELINES_BY_PROTOCOL: dict[str, tuple[str, ...]] = {
    "cold-user": ("random", "popularity", "segment_popularity"),
    "warm": BASELINES,
    "new-item": BASELINES,
    "onboarding": ("popularity", "segment_popularity", "cf"),
}


@dataclass
class EvalConfig:
    """What to run: protocols, folds, seed, relevance threshold, cut-offs, and whether to run the platform."""

    protocols: tuple[str, ...] = PROTOCOLS
    folds: int = 5
    seed: int = 0
    threshold: float = 4.0
    warm_fraction: float = 0.2
    new_item_fraction: float = 0.1
    ks: tuple[int, ...] = metrics.DEFAULT_KS
    n_boot: int = 1000
    platform: bool = True
    model: str | None = None  # encoder for the platform's content space and for diversity; None = settings.model
    onboarding_steps: tuple[int, ...] = ONBOARDING_STEPS
    onboarding_users: int | None = None  # test users per onboarding fold (seeded sample); None = all that qualify
    variants: str = "all"  # platform variants: "all", or "defaults" (what is served, for a quicker run)

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} (or all), got {bad[0]!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.variants not in ("all", "defaults"):
            raise ValueError(f"variants must be all or defaults, got {self.variants!r}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")

    @property
    def max_k(self) -> int:
        return max(self.ks)


@dataclass
class StrategyResult:
    """One strategy's metrics on one protocol."""

    protocol: str
    strategy: str
    kind: str  # "baseline" or "platform"
    default: bool
    report: metrics.MetricReport
    seconds: float
    params: dict = field(default_factory=dict)
    step: int | None = None  # onboarding: how many of the user's first interactions the platform knew

    def row(self) -> dict:
        """The results.json row: strategy, default, every metric, ci95 per ranking metric, counts."""
        out: dict = {"strategy": self.strategy, "default": self.default, "kind": self.kind}
        if self.step is not None:
            out["known_interactions"] = self.step
        out.update({k: _clean(v) for k, v in self.report.values.items()})
        out["ci95"] = {k: [_clean(lo), _clean(hi)] for k, (lo, hi) in self.report.ci95.items()}
        out["n_users"] = self.report.n_users
        out["users_without_relevant"] = self.report.users_without_relevant
        out["seconds"] = round(self.seconds, 3)
        out["params"] = self.params
        return out


@dataclass
class EvalResult:
    """Everything one ``recplatform evaluate`` run measured."""

    dataset: str
    config: EvalConfig
    results: dict[str, list[StrategyResult]]
    seconds: float
    commit: str
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # protocol -> platform setup step -> s

    def best(self, protocol: str, metric: str = "ndcg@10", kind: str | None = None) -> StrategyResult | None:
        rows = [r for r in self.results.get(protocol, []) if kind is None or r.kind == kind]
        rows = [r for r in rows if np.isfinite(r.report.values.get(metric, np.nan))]
        return max(rows, key=lambda r: r.report.values[metric]) if rows else None

    def as_json(self) -> dict:
        """results.json: for each protocol, the list of strategy rows."""
        return {p: [r.row() for r in rows] for p, rows in self.results.items()}

    def run_info(self) -> dict:
        """run.json: what was run, on what, at which commit, how long it took."""
        return {"dataset": self.dataset, "commit": self.commit, "seconds": round(self.seconds, 1),
                "config": asdict(self.config), "counts": self.counts, "notes": self.notes,
                "platform_setup_seconds": self.timings}


def _clean(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "recplatform"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def item_content_vectors(items: pd.DataFrame, model: str | None) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Items' content embeddings (encoder over item cards) for diversity; (None, reason) when unavailable."""
    encoder = load_encoder(model)
    vectors = encoder.encode([item_card(r) for r in items.to_dict("records")])
    return dict(zip(items["item_id"].astype(str), np.asarray(vectors))), None


Progress = Callable[[str, int], None]  # (description, steps done) callback


def _baseline_recs(name: str, split: Split, view: baselines.TrainView, k: int, seed: int,
                   threshold: float, params: dict,
                   note: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    users = split.test_users
    if name == "random":
        return baselines.random_recs(view, users, split.exclude, k, seed=seed * 1000 + split.fold)
    if name == "popularity":
        return baselines.popularity_recs(view, users, split.exclude, k)
    if name == "segment_popularity":
        m = baselines.tune_segment_min_users(view, split.train, seed=seed + split.fold, threshold=threshold)
        params.setdefault("min_users_by_fold", []).append(m)
        return baselines.segment_popularity_recs(view, users, split.exclude, k, min_users=m)
    if name == "cf":
        recs, lam = baselines.ease_recs(view, split.train, users, split.exclude, k, threshold=threshold,
                                        progress=note)
        params.setdefault("ease_lambda_by_fold", []).append(lam)
        return recs
    raise ValueError(f"unknown baseline {name!r}")


COLD_USER_SKIPPED = ("cold-user protocol skipped: no user has demographics (age, gender, occupation or ZIP; "
                     "GroupLens' CSV releases carry none), so a held-out user is known by nothing; the platform "
                     "serves such users by popularity")


def has_demographics(users: pd.DataFrame) -> bool:
    """Whether any user has one demographic field (the cold-user protocol predicts from them alone)."""
    fields = [c for c in ("age", "gender", "occupation", "zip_code") if c in users.columns]
    return bool(len(users) and fields and users[fields].notna().any(axis=None))


def _step_note(progress: Progress | None, prefix: str, done: int) -> Callable[[str], None]:
    """A callback that shows what a long step is doing now (the bar's description), without advancing it."""
    if progress is None:
        return lambda _text: None
    return lambda text: progress(prefix + text, done)


def run_evaluation(dataset, config: EvalConfig, settings: Settings | None = None, *,
                   progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> EvalResult:
    """Evaluate every strategy on every protocol of ``config`` over ``dataset`` (a recplatform Dataset)."""
    started = time.perf_counter()
    commit = git_commit()  # the code that runs, read before anything else can change
    notes: list[str] = []
    interactions = dataset.interactions
    items = dataset.items
    item_ids = [str(i) for i in items["item_id"]]
    item_counts = interactions["item_id"].value_counts().to_dict()
    if progress:
        progress(f"embedding {len(items):,} item cards (for diversity)", 0)
    vectors, why = item_content_vectors(items, config.model)
    if why:
        notes.append(why)

    platform_available = False
    if config.platform:
        platform_available, why = serving.available(settings)
        if not platform_available:
            notes.append(f"platform strategies not run: {why}")

    protocols = config.protocols
    if "cold-user" in protocols and not has_demographics(dataset.users):
        protocols = tuple(p for p in protocols if p != "cold-user")
        notes.append(COLD_USER_SKIPPED)
    plan = {p: splits(p, interactions, folds=config.folds, seed=config.seed, threshold=config.threshold,
                      warm_fraction=config.warm_fraction, new_item_fraction=config.new_item_fraction,
                      onboarding_users=config.onboarding_users, onboarding_steps=config.onboarding_steps)
            for p in protocols}
    if on_total:
        on_total(sum(len(s) for s in plan.values()) * (2 if platform_available else 1))
    done = 0
    results: dict[str, list[StrategyResult]] = {}
    timings: dict[str, dict[str, float]] = {}
    for protocol, split_list in plan.items():
        if protocol == "onboarding":
            results[protocol], done = _run_onboarding(dataset, split_list, config, settings, platform_available,
                                                      item_ids, item_counts, vectors, notes, timings, progress, done)
            continue
        names = BASELINES_BY_PROTOCOL[protocol]
        recs: dict[str, dict[str, list[str]]] = {}
        seconds: dict[str, float] = {}
        params: dict[str, dict] = {}
        kinds: dict[str, str] = {}
        defaults: dict[str, bool] = {}
        relevant: dict[str, set[str]] = {}
        # new-item: deep rankings so the AUC can say where held-out items land beyond the top 20
        deep = protocol == "new-item"
        depth = len(item_ids) if deep else config.max_k
        candidates: dict[str, int] | None = {} if deep else None
        for split in split_list:
            relevant.update(split.relevant)
            if candidates is not None:
                catalogue = set(item_ids)
                candidates.update({u: len(item_ids) - len(split.exclude.get(u, set()) & catalogue)
                                   for u in split.relevant})
            view = baselines.TrainView.build(split.train, item_ids, dataset.users, config.seed)
            for name in names:
                t0 = time.perf_counter()
                params.setdefault(name, {})
                note = _step_note(progress, f"{protocol} fold {split.fold + 1}/{len(split_list)}: ", done)
                note(f"baseline {name}")
                recs.setdefault(name, {}).update(
                    _baseline_recs(name, split, view, depth, config.seed, config.threshold, params[name], note))
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                kinds[name] = "baseline"
                defaults[name] = False
            done += 1
            if progress:
                progress(f"{protocol} fold {split.fold + 1}/{len(split_list)}: baselines", done)
            if platform_available:
                served = serving.serve_split(dataset, split, config, settings, depth=depth)
                for strat in served.strategies:
                    recs.setdefault(strat.name, {}).update(strat.recommendations)
                    seconds[strat.name] = seconds.get(strat.name, 0.0) + strat.seconds
                    kinds[strat.name] = "platform"
                    defaults[strat.name] = strat.default
                    params[strat.name] = strat.params
                notes.extend(n for n in served.notes if n not in notes)
                for step, secs in served.setup_seconds.items():
                    timings.setdefault(protocol, {})[step] = round(timings.get(protocol, {}).get(step, 0.0) + secs, 2)
                done += 1
                if progress:
                    progress(f"{protocol} fold {split.fold + 1}/{len(split_list)}: platform", done)
        if protocol == "new-item":
            results.update(_new_item_views(recs, split_list[0], kinds, defaults, seconds, params, item_ids,
                                           item_counts, vectors, config))
            continue
        results[protocol] = [
            StrategyResult(protocol, name, kinds[name], defaults[name],
                           metrics.evaluate(recs[name], relevant, catalogue_size=len(item_ids), item_counts=item_counts,
                                            item_vectors=vectors, ks=config.ks, n_boot=config.n_boot, seed=config.seed,
                                            candidates=candidates),
                           seconds[name], params.get(name, {}))
            for name in recs
        ]
    counts = {"users": len(dataset.users), "items": len(items), "interactions": len(interactions)}
    return EvalResult(dataset=getattr(dataset, "name", "dataset"), config=config, results=results,
                      seconds=time.perf_counter() - started, commit=commit, notes=notes, counts=counts,
                      timings=timings)


def _run_onboarding(dataset, split_list: list[Split], config: EvalConfig, settings, platform_available: bool,
                    item_ids: list[str], item_counts: dict, vectors, notes: list[str],
                    timings: dict[str, dict[str, float]], progress: Progress | None,
                    done: int) -> tuple[list[StrategyResult], int]:
    """The onboarding curve: every baseline and platform variant at every step N, pooled over the folds.

    Baselines see what the platform sees at step N: popularity and segment popularity exclude the N known items,
    EASE (lambda tuned on the training users) scores from them. Returns the rows (one per strategy and step).
    """
    recs: dict[tuple[str, int], dict[str, list[str]]] = {}
    seconds: dict[tuple[str, int], float] = {}
    kinds: dict[str, str] = {}
    defaults: dict[str, bool] = {}
    params: dict[str, dict] = {}
    relevant: dict[str, set[str]] = {}
    k = config.max_k
    for split in split_list:
        relevant.update(split.relevant)
        view = baselines.TrainView.build(split.train, item_ids, dataset.users, config.seed)
        users = split.test_users
        t0 = time.perf_counter()
        m = baselines.tune_segment_min_users(view, split.train, seed=config.seed + split.fold, threshold=config.threshold)
        segment = baselines.segment_scores(view, m)
        note = _step_note(progress, f"onboarding fold {split.fold + 1}/{len(split_list)}: ", done)
        lam, _ = baselines.tune_ease_lambda(split.train, item_ids, dataset.users, threshold=config.threshold,
                                            progress=note)
        note(f"EASE: fitting lambda {lam:g} on the training users")
        weights = baselines.ease_weights(view.matrix, lam)
        params.setdefault("segment_popularity", {}).setdefault("min_users_by_fold", []).append(m)
        params.setdefault("cf", {}).setdefault("ease_lambda_by_fold", []).append(lam)
        setup = time.perf_counter() - t0
        for step in split.steps:
            known = known_items(split, step)
            seen = {u: set(v) for u, v in known.items()}
            t0 = time.perf_counter()
            recs.setdefault(("popularity", step), {}).update(baselines.popularity_recs(view, users, seen, k))
            out = {}
            for u in users:
                record = view.users.loc[u].to_dict() if u in view.users.index else {}
                out[u] = baselines.top_k(segment.scores(record)[0], seen[u], view, k)
            recs.setdefault(("segment_popularity", step), {}).update(out)
            if step > 0:
                recs.setdefault(("cf", step), {}).update(baselines.ease_recs_from_items(weights, view, known, seen, k))
            elapsed = time.perf_counter() - t0 + (setup if step == split.steps[0] else 0.0)
            for name in ("popularity", "segment_popularity", "cf"):
                seconds[(name, step)] = seconds.get((name, step), 0.0) + elapsed / 3
                kinds[name], defaults[name] = "baseline", False
        done += 1
        if progress:
            progress(f"onboarding fold {split.fold + 1}/{len(split_list)}: baselines", done)
        if platform_available:
            served = serving.serve_onboarding(dataset, split, config, settings)
            for step, result in served.items():
                for strat in result.strategies:
                    recs.setdefault((strat.name, step), {}).update(strat.recommendations)
                    seconds[(strat.name, step)] = seconds.get((strat.name, step), 0.0) + strat.seconds
                    kinds[strat.name], defaults[strat.name] = "platform", strat.default
                    params[strat.name] = strat.params
                notes.extend(n for n in result.notes if n not in notes)
                for part, secs in result.setup_seconds.items():
                    timings.setdefault("onboarding", {})[part] = round(
                        timings.get("onboarding", {}).get(part, 0.0) + secs, 2)
            done += 1
            if progress:
                progress(f"onboarding fold {split.fold + 1}/{len(split_list)}: platform", done)
    rows = []
    for (name, step), by_user in recs.items():
        rows.append(StrategyResult("onboarding", name, kinds[name], defaults[name],
                                   metrics.evaluate(by_user, relevant, catalogue_size=len(item_ids),
                                                    item_counts=item_counts, item_vectors=vectors, ks=config.ks,
                                                    n_boot=config.n_boot, seed=config.seed),
                                   seconds[(name, step)], params.get(name, {}), step=step))
    rows.sort(key=lambda r: (r.kind, r.strategy, r.step))
    return rows, done


NEW_ITEM_VIEWS: tuple[str, ...] = ("new-item:cold-only", "new-item:warm-only", "new-item:hybrid")


def _new_item_views(recs: dict[str, dict[str, list[str]]], split: Split, kinds: dict[str, str],
                    defaults: dict[str, bool], seconds: dict[str, float], params: dict[str, dict],
                    item_ids: list[str], item_counts: dict, vectors, config: EvalConfig) -> dict[str, list[StrategyResult]]:
    """The new-item protocol three ways (ALDI / ColdRec): cold-only (each ranking kept to the new items, relevant
    = the new items the user rated well, AUC among the new items), warm-only (kept to the old items, relevant =
    the user's held-out later old items) and hybrid (the whole list, both relevant; plus ``new_item_hit@10``, the
    share of users with a relevant new item in their top 10, and ``warm_ndcg@10``, NDCG@10 of the same lists
    against the old relevant items only). Exploration variants (asked for 10 items) are in the
    hybrid view alone; the default's row there is the one with the default exploration share."""
    held = split.held_out_items
    catalogue = set(item_ids)
    cold_rel, warm_rel = split.views["cold-only"], split.views["warm-only"]
    n_held = len(held & catalogue)
    out: dict[str, list[StrategyResult]] = {view: [] for view in NEW_ITEM_VIEWS}
    for name, by_user in recs.items():
        shallow = "+explore" in name
        common = dict(catalogue_size=len(item_ids), item_counts=item_counts, item_vectors=vectors, ks=config.ks,
                      n_boot=config.n_boot, seed=config.seed)
        if not shallow:
            cold_lists = {u: [i for i in items if i in held] for u, items in by_user.items()}
            warm_lists = {u: [i for i in items if i not in held] for u, items in by_user.items()}
            cold_candidates = {u: n_held for u in cold_rel}
            warm_candidates = {u: len(item_ids) - n_held - len(split.exclude.get(u, set()) & catalogue)
                               for u in warm_rel}
            out["new-item:cold-only"].append(StrategyResult(
                "new-item:cold-only", name, kinds[name], defaults[name] and name == "default",
                metrics.evaluate(cold_lists, cold_rel, candidates=cold_candidates, **common), seconds[name],
                params.get(name, {})))
            out["new-item:warm-only"].append(StrategyResult(
                "new-item:warm-only", name, kinds[name], defaults[name] and name == "default",
                metrics.evaluate(warm_lists, warm_rel, candidates=warm_candidates, **common), seconds[name],
                params.get(name, {})))
        top = {u: items[: config.max_k] for u, items in by_user.items()}
        report = metrics.evaluate(top, split.relevant, **common)
        hit = [metrics.hit_at_k(top.get(u, ()), cold_rel[u], 10) for u in cold_rel if cold_rel[u]]
        warm = [metrics.ndcg_at_k(top.get(u, ()), warm_rel[u], 10) for u in warm_rel if warm_rel[u]]
        report.values["new_item_hit@10"] = float(np.mean(hit)) if hit else float("nan")
        report.values["warm_ndcg@10"] = float(np.mean(warm)) if warm else float("nan")
        report.ci95["new_item_hit@10"] = metrics.bootstrap_ci(np.array(hit), n_boot=config.n_boot, seed=config.seed)
        report.ci95["warm_ndcg@10"] = metrics.bootstrap_ci(np.array(warm), n_boot=config.n_boot, seed=config.seed)
        is_default = defaults[name] and (shallow or not any("+explore(default)" in n for n in recs))
        out["new-item:hybrid"].append(StrategyResult("new-item:hybrid", name, kinds[name], is_default, report,
                                                     seconds[name], params.get(name, {})))
    return out
