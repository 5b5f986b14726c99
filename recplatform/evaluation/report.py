"""Writes an evaluation's results: ``results.json``, ``run.json``, a readable ``report.md`` and PNG plots (Agg).

``results.json`` holds, for each protocol, a list of rows ``{"strategy", "default", "kind", "ndcg@10", ...,
"ci95": {"ndcg@10": [lo, hi], ...}, "n_users", "users_without_relevant"}``; ``run.json`` the dataset, commit,
configuration, runtime and notes. ``report.md`` has one table per
protocol with the best value of each column in bold, and the plots are ``ndcg_at_k_<protocol>.png`` (NDCG@k
by strategy) and ``ndcg_vs_coverage_<protocol>.png`` (NDCG@10 against catalogue coverage@10).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recplatform.evaluation import metrics
from recplatform.evaluation.runner import EvalResult, StrategyResult

TABLE_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "precision@10", "map@10", "hit@10", "ndcg@5", "ndcg@20",
                                  "recall@20", "coverage@10", "novelty@10", "diversity@10")


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def protocol_table(rows: list[StrategyResult], columns: tuple[str, ...] = TABLE_METRICS) -> str:
    """A markdown table: one row per strategy, best per column in bold, CI for NDCG@10, default marked."""
    for extra in ("auc", "new_item_hit@10", "warm_ndcg@10"):
        if rows and any(extra in r.report.values for r in rows):
            columns = columns + (extra,)
    best = {}
    for col in columns:
        values = [r.report.values.get(col, np.nan) for r in rows]
        finite = [v for v in values if np.isfinite(v)]
        best[col] = max(finite) if finite else None
    head = ["strategy", "kind"] + [c + (" (95% CI)" if c in ("ndcg@10", "auc", "new_item_hit@10", "warm_ndcg@10")
                                        else "") for c in columns] + ["users"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---", "---"] + ["---:"] * (len(columns) + 1)) + " |"]
    ordered = sorted(rows, key=lambda r: (r.kind != "baseline", -np.nan_to_num(r.report.values.get("ndcg@10", 0))))
    for r in ordered:
        name = r.strategy + (" **(default)**" if r.default else "")
        cells = [name, r.kind]
        for col in columns:
            v = r.report.values.get(col, np.nan)
            text = _fmt(v, 2 if col.startswith("novelty") else 4)
            if col in ("ndcg@10", "auc", "new_item_hit@10", "warm_ndcg@10") and col in r.report.ci95:
                lo, hi = r.report.ci95[col]
                text += f" ({_fmt(lo)}–{_fmt(hi)})"
            if best[col] is not None and np.isfinite(v) and np.isclose(v, best[col], rtol=0, atol=5e-7):
                text = f"**{text}**"
            cells.append(text)
        cells.append(str(r.report.n_users))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(result: EvalResult) -> str:
    cfg = result.config
    parts = [
        f"# Evaluation report: {result.dataset}",
        "",
        f"- commit `{result.commit}`, seed {cfg.seed}, folds {cfg.folds} (cold-user), relevant = rating >= "
        f"{cfg.threshold:g}, warm holdout = last {cfg.warm_fraction:.0%} per user by time, new items = "
        f"{cfg.new_item_fraction:.0%} of the catalogue",
        f"- dataset: {result.counts.get('users', '?')} users, {result.counts.get('items', '?')} items, "
        f"{result.counts.get('interactions', '?')} interactions; runtime {result.seconds:.0f} s",
        "- full ranking over the whole catalogue; 95% CI = percentile bootstrap over users "
        f"({cfg.n_boot} resamples); best value per column in **bold**; `(default)` = what the platform serves",
        "- novelty = mean -log2 of the items' (add-one) share of all interactions; diversity = mean pairwise cosine "
        "distance of the recommended items' content embeddings; coverage = share of the catalogue recommended",
        "- auc (new-item only): share of each user's candidate items ranked below their relevant held-out items "
        "(0.5 = random; baselines rank the whole catalogue, platform strategies return their top 1000 and an "
        "item beyond that is placed in the middle of the rest)",
    ]
    for note in result.notes:
        parts.append(f"- note: {note}")
    for protocol, rows in result.results.items():
        parts += ["", f"## {protocol}", ""]
        if protocol == "onboarding":
            parts.append(onboarding_table(rows))
            parts.append("")
            parts.append(onboarding_checks(rows, n_boot=cfg.n_boot, seed=cfg.seed))
            continue
        if rows:
            excluded = rows[0].report.users_without_relevant
            parts.append(f"{rows[0].report.n_users} test users with at least one relevant item "
                         f"({excluded} without any were excluded).")
            parts.append("")
        parts.append(protocol_table(rows))
        for r in rows:
            if r.params and r.kind == "baseline":
                parts.append(f"\n- `{r.strategy}` parameters: " + json.dumps(r.params, sort_keys=True, default=str))
        paired = paired_difference(rows, cfg)
        if paired:
            parts += ["", paired]
    return "\n".join(parts) + "\n"


def onboarding_table(rows: list[StrategyResult], metric: str = "ndcg@10") -> str:
    """The onboarding curve: one row per strategy, one column per number of known interactions."""
    steps = sorted({r.step for r in rows if r.step is not None})
    by: dict[str, dict[int, StrategyResult]] = {}
    for r in rows:
        by.setdefault(r.strategy, {})[r.step] = r
    lines = ["| strategy | kind | " + " | ".join(f"N={n}" for n in steps) + " | users |",
             "| --- | --- | " + " | ".join("---:" for _ in steps) + " | ---: |"]
    order = sorted(by, key=lambda name: (next(iter(by[name].values())).kind != "baseline", name))
    for name in order:
        first = next(iter(by[name].values()))
        label = name + (" **(default)**" if first.default else "")
        cells = [_fmt(by[name][n].report.values.get(metric)) if n in by[name] else "–" for n in steps]
        lines.append(f"| {label} | {first.kind} | " + " | ".join(cells) + f" | {first.report.n_users} |")
    return f"{metric} by number of known interactions N (the same relevant items at every N):\n\n" + "\n".join(lines)


def onboarding_checks(rows: list[StrategyResult], metric: str = "ndcg@10", n_boot: int = 1000, seed: int = 0) -> str:
    """The default against its bars at every N: best baseline (with the paired per-user difference and its
    bootstrap CI), the N=0 default, the previous N."""
    steps = sorted({r.step for r in rows if r.step is not None})
    value = {(r.strategy, r.step): r.report.values.get(metric, np.nan) for r in rows}
    per_user = {(r.strategy, r.step): r.report.per_user.get(metric) for r in rows}
    default = next((r.strategy for r in rows if r.default), None)
    if default is None:
        return "(no platform default in this run)"
    lines = ["| N | default | best baseline | ratio | default − best (paired 95% CI) | ≥ N=0 default | never drops |",
             "| ---: | ---: | --- | ---: | --- | --- | --- |"]
    base0 = value.get((default, steps[0]), np.nan)
    previous = None
    for n in steps:
        mine = value.get((default, n), np.nan)
        baseline = {name: v for (name, step), v in value.items() if step == n and name in ("popularity", "segment_popularity", "cf")}
        best = max(baseline, key=baseline.get) if baseline else None
        ratio = mine / baseline[best] if best and baseline[best] else np.nan
        a, b = per_user.get((default, n)), per_user.get((best, n))
        paired = "–"
        if a is not None and b is not None and len(a) == len(b) and len(a):
            lo, hi = metrics.bootstrap_ci(np.asarray(a) - np.asarray(b), n_boot=n_boot, seed=seed)
            paired = f"{float(np.mean(np.asarray(a) - np.asarray(b))):+.4f} ({lo:+.4f} to {hi:+.4f})"
        lines.append(f"| {n} | {_fmt(mine)} | {best} {_fmt(baseline.get(best))} | {ratio:.3f} | {paired} | "
                     f"{'yes' if mine >= base0 - 1e-12 else 'NO'} | "
                     f"{'yes' if previous is None or mine >= previous - 1e-12 else 'NO'} |")
        previous = mine
    return "\n".join(lines)


def paired_difference(rows: list[StrategyResult], cfg, against: str = "segment_popularity",
                      metric: str = "ndcg@10") -> str:
    """Default minus a baseline, per user over the same users, with a percentile bootstrap CI."""
    default = next((r for r in rows if r.default and metric in r.report.per_user), None)
    other = next((r for r in rows if r.strategy == against and metric in r.report.per_user), None)
    if default is None or other is None or len(default.report.per_user[metric]) != len(other.report.per_user[metric]):
        return ""
    diff = default.report.per_user[metric] - other.report.per_user[metric]
    lo, hi = metrics.bootstrap_ci(diff, n_boot=cfg.n_boot, seed=cfg.seed)
    return (f"Paired difference, default `{default.strategy}` minus `{against}`, {metric} per user over the same "
            f"{len(diff)} users: {diff.mean():+.4f} (95% bootstrap CI {lo:+.4f} to {hi:+.4f}).")


def plot_onboarding(result: EvalResult, out: Path) -> list[Path]:
    """NDCG@10 against the number of known interactions, one line per strategy."""
    import matplotlib  # deferred: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib

    rows = result.results.get("onboarding") or []
    if not rows:
        return []
    by: dict[str, list[StrategyResult]] = {}
    for r in rows:
        by.setdefault(r.strategy, []).append(r)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rs in sorted(by.items()):
        rs = sorted(rs, key=lambda r: r.step)
        ax.plot([r.step for r in rs], [r.report.values.get("ndcg@10", np.nan) for r in rs], marker="o",
                linestyle="--" if rs[0].kind == "baseline" else "-",
                label=name + (" (default)" if rs[0].default else ""), linewidth=2.5 if rs[0].default else 1.2)
    ax.set_xscale("symlog", linthresh=1)
    steps = sorted({r.step for r in rows})
    ax.set_xticks(steps)
    ax.set_xticklabels([str(n) for n in steps])
    ax.set_xlabel("known interactions N (first N by time)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"{result.dataset} — onboarding curve")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    path = out / "onboarding_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_exploration(result: EvalResult, out: Path) -> list[Path]:
    """Hybrid new-item view: warm NDCG@10 against new-item hit rate@10, one point per strategy."""
    import matplotlib  # deferred: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib

    rows = result.results.get("new-item:hybrid") or []
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        x, y = r.report.values.get("new_item_hit@10", np.nan), r.report.values.get("warm_ndcg@10", np.nan)
        ax.scatter([x], [y], marker="s" if r.kind == "baseline" else "o")
        ax.annotate(r.strategy + (" (default)" if r.default else ""), (x, y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("new-item hit rate@10 (a relevant new item in the top 10)")
    ax.set_ylabel("warm NDCG@10 (old relevant items, same lists)")
    ax.set_title(f"{result.dataset} — exploration trade-off (hybrid view)")
    fig.tight_layout()
    path = out / "exploration_tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot(result: EvalResult, out: Path) -> list[Path]:
    """NDCG@k by strategy and NDCG@10 against coverage@10, one PNG each per protocol."""
    import matplotlib  # deferred: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib

    written: list[Path] = []
    ks = list(result.config.ks)
    written += plot_onboarding(result, out) + plot_exploration(result, out)
    for protocol, rows in result.results.items():
        if not rows or protocol == "onboarding":
            continue
        slug = protocol.replace("-", "_").replace(":", "_")
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for r in rows:
            ax.plot(ks, [r.report.values.get(f"ndcg@{k}", np.nan) for k in ks], marker="o",
                    linestyle="--" if r.kind == "baseline" else "-", label=r.strategy)
        ax.set_xlabel("k")
        ax.set_ylabel("NDCG@k")
        ax.set_xticks(ks)
        ax.set_title(f"{result.dataset} — {protocol}: NDCG@k by strategy")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        path = out / f"ndcg_at_k_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            x, y = r.report.values.get("coverage@10", np.nan), r.report.values.get("ndcg@10", np.nan)
            ax.scatter([x], [y], marker="s" if r.kind == "baseline" else "o")
            ax.annotate(r.strategy, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("catalogue coverage@10 (log)")
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{result.dataset} — {protocol}: accuracy vs coverage")
        fig.tight_layout()
        path = out / f"ndcg_vs_coverage_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(result: EvalResult, out: Path | str) -> dict[str, Path]:
    """Write results.json, report.md and the plots under ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(result.as_json(), indent=2, default=str) + "\n")
    run_path = out / "run.json"
    run_path.write_text(json.dumps(result.run_info(), indent=2, default=str) + "\n")
    md_path = out / "report.md"
    md_path.write_text(markdown(result))
    paths = {"results.json": json_path, "run.json": run_path, "report.md": md_path}
    for p in plot(result, out):
        paths[p.name] = p
    return paths
