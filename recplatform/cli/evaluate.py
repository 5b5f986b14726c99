"""The ``recplatform evaluate`` command: parse the dataset spec, run the protocols with a progress bar, write
results.json / report.md / plots and print one table per protocol."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from recplatform import services
from recplatform.progress import count, elapsed, progress_bar
from recplatform.cli.output import cli_settings, console, print_table


def load_dataset(spec: str, seed: int):
    """``movielens:PATH`` or ``synthetic`` (optionally ``synthetic:USERSxITEMS``) → a recplatform Dataset."""
    from recplatform.datasets import (  # deferred: pandas
        generate_synthetic,
        load_movielens,
    )

    if spec.startswith("movielens:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise typer.BadParameter("movielens:PATH needs a directory", param_hint="--dataset")
        return load_movielens(Path(path))
    if spec == "synthetic" or spec.startswith("synthetic:"):
        size = spec.split(":", 1)[1] if ":" in spec else "600x400"
        try:
            n_users, n_items = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"synthetic size must be USERSxITEMS, got {size!r}", param_hint="--dataset") from None
        return generate_synthetic(n_users, n_items, seed=seed)
    raise typer.BadParameter(f"expected movielens:PATH or synthetic[:USERSxITEMS], got {spec!r}",
                             param_hint="--dataset")


def evaluate_command(
    dataset: str = typer.Option(..., "--dataset", help="movielens:PATH or synthetic[:USERSxITEMS]"),
    protocol: str = typer.Option("all", "--protocol", help="cold-user, warm, new-item, onboarding, a comma-separated list, or all"),
    folds: int = typer.Option(5, "--folds", min=2, help="cold-user and onboarding folds (user-disjoint)"),
    onboarding_users: Optional[int] = typer.Option(None, "--onboarding-users", min=1,
                                                   help="onboarding: at most this many test users per fold "
                                                        "(a seeded sample; default all with enough history)"),
    seed: int = typer.Option(0, "--seed", help="seed of splits, random baseline and bootstrap"),
    out: Path = typer.Option(Path("evaluation-results"), "--out", help="directory for results.json, report.md, PNGs"),
    threshold: float = typer.Option(4.0, "--threshold", help="rating >= threshold counts as relevant"),
    platform: bool = typer.Option(True, "--platform/--no-platform",
                                  help="also evaluate the platform's strategies through rec.recommend"),
    model: Optional[str] = typer.Option(None, "--model", help="encoder (default: settings.model)"),
    variants: str = typer.Option("all", "--variants", help="platform variants: all, or defaults (only what "
                                                           "rec.recommend serves by default; quicker)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="bootstrap resamples for the 95% CIs"),
) -> None:
    """Evaluate baselines and platform strategies offline (cold-user, warm, new-item, onboarding) and write a report."""
    from recplatform.evaluation.protocols import PROTOCOLS  # deferred: pandas
    from recplatform.evaluation.report import (  # deferred: pandas
        onboarding_checks,
        onboarding_table,
        write_report,
    )
    from recplatform.evaluation.runner import (  # deferred: pandas
        COLD_USER_SKIPPED,
        EvalConfig,
        has_demographics,
        run_evaluation,
    )

    settings = cli_settings()
    protocols = PROTOCOLS if protocol == "all" else tuple(p.strip() for p in protocol.split(",") if p.strip())
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise typer.BadParameter(f"must be one of {', '.join(PROTOCOLS)}, a comma-separated list of them, or all; "
                                 f"got {protocol!r}", param_hint="--protocol")
    config = EvalConfig(protocols=tuple(protocols), folds=folds, seed=seed, threshold=threshold, platform=platform,
                        model=model, n_boot=bootstrap, onboarding_users=onboarding_users,
                        variants=variants)
    started = time.perf_counter()
    with console.status(f"loading {dataset}"):
        data = load_dataset(dataset, seed)
    if not has_demographics(data.users):
        if protocols == ("cold-user",):
            raise typer.BadParameter(f"{dataset} has no user demographics ({COLD_USER_SKIPPED.split(': ', 1)[1]}); "
                                     "run warm, new-item or onboarding", param_hint="--protocol")
        if "cold-user" in protocols:
            console.print(f"[yellow]note[/yellow]: {COLD_USER_SKIPPED}")
    if platform and settings.uses_embedded_postgres:
        services.up(settings)
    with progress_bar(count(), elapsed(), description_width=48, console=console) as bar:
        task = bar.add_task("evaluating", total=None)
        result = run_evaluation(data, config, settings,
                                progress=lambda desc, done: bar.update(task, description=desc, completed=done),
                                on_total=lambda total: bar.update(task, total=total))
    paths = write_report(result, out)
    for name, rows in result.results.items():
        if name == "onboarding":
            # Markdown lines, printed whole (the terminal wraps them; rich would break them at 80 columns)
            console.print(onboarding_table(rows), soft_wrap=True, markup=False, highlight=False)
            console.print(onboarding_checks(rows, n_boot=bootstrap, seed=seed), soft_wrap=True, markup=False,
                          highlight=False)
            continue
        ordered = sorted(rows, key=lambda r: -(r.report.values.get("ndcg@10") or 0))
        print_table(f"{result.dataset} — {name} ({rows[0].report.n_users if rows else 0} users)",
                        ["strategy", "served by", "ndcg@10", "95% CI", "recall@10", "hit@10", "coverage@10"],
                        [[r.strategy + (" (default)" if r.default else ""),
                          "in-process" if r.kind == "baseline" else "rec.recommend",
                          f"{r.report.values['ndcg@10']:.4f}",
                          f"{r.report.ci95['ndcg@10'][0]:.3f}–{r.report.ci95['ndcg@10'][1]:.3f}",
                          f"{r.report.values['recall@10']:.4f}", f"{r.report.values['hit@10']:.3f}",
                          f"{r.report.values['coverage@10']:.3f}"]
                         for r in ordered],
                        whole=["ndcg@10", "95% CI", "recall@10", "hit@10", "coverage@10"])
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())} in {time.perf_counter() - started:.0f}s")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the app."""
    app.command("evaluate")(evaluate_command)
