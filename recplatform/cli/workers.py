"""``recplatform worker`` and ``recplatform embed``: run a Celery worker; backfill embeddings with progress."""

from __future__ import annotations

import time
from typing import Optional

import typer

from recplatform import progress
from recplatform.cli.output import cli_settings, console, print_table
from recplatform.config import redact_url
from recplatform.embedding import pipeline, spaces
from recplatform.embedding.encoder import load_encoder
from recplatform.workers import process
from recplatform.workers.enqueue import reconcile_spaces


def register(app: typer.Typer) -> None:
    """Add ``worker`` and ``embed`` to the ``recplatform`` Typer app."""
    app.command("worker")(worker)
    app.command("embed")(embed)


def worker(
    queues: str = typer.Option("embed,default", "--queues", "-Q", help="Queues to consume: embed (model work), default (light work)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", help="Processes/threads; default from the cores (1 on a GPU)."),
    pool: Optional[str] = typer.Option(None, "--pool", "-P", help="solo | threads | prefork; default solo on a GPU, prefork on CPU."),
    beat: bool = typer.Option(False, "--beat", "-B", help="Also run the beat scheduler (periodic reconcile) in this worker."),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
) -> None:
    """Run a Celery worker in the foreground (Ctrl-C: finish the current task and stop)."""
    settings = cli_settings()
    try:
        p = process.plan(settings, queues=queues, concurrency=concurrency, pool=pool, beat=beat)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"worker: queues {','.join(p.queues)}, pool {p.pool} x{p.concurrency}, device {p.device}, "
                  f"broker {redact_url(settings.celery_broker_url)}")
    from recplatform.workers.app import celery_app  # deferred: celery

    celery_app.worker_main(argv=process.worker_argv(p, loglevel=loglevel,
                                                    schedule=str(settings.state_dir / "celerybeat-schedule")))


def embed(
    space: Optional[str] = typer.Option(None, "--space", help="Space name or id (default: the configured model's content space)."),
    wait: bool = typer.Option(False, "--wait", help="Show progress until the space is full (then switch to it if it was being built)."),
    local: bool = typer.Option(False, "--local", help="Embed in this process, without a broker or worker."),
    batch_size: int = typer.Option(256, "--batch-size", help="Ids per batch / message."),
) -> None:
    """Embed every user and item whose current content has no vector in the content space (backfill)."""
    settings = cli_settings()
    if space is not None:
        try:
            target = spaces.get_space(settings, space)
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0]), param_hint="--space") from exc
        if target.kind != spaces.CONTENT:
            raise typer.BadParameter(f"{target.name} is a {target.kind} space; it is trained "
                                     "(`recplatform train`), not embedded", param_hint="--space")
    else:
        target = spaces.ensure_content_space(settings, load_encoder(settings.model))
    before = spaces.completeness(settings, target.space_id)
    console.print(f"space [bold]{target.name}[/] (id {target.space_id}, {target.status}): "
                  f"{before.done}/{before.total} embedded, {before.missing} missing")
    started = time.perf_counter()
    if local:
        embed_local(settings, target, batch_size)
    else:
        try:
            result = reconcile_spaces(settings, force=True, space_name=space if space is not None else None,
                                      register=False)
        except Exception as exc:  # noqa: BLE001 - broker down: say what to do
            console.print(f"[red]could not enqueue[/red] ({type(exc).__name__}: {exc}); is the broker up "
                          f"({redact_url(settings.celery_broker_url)})? Use --local to embed without one.")
            raise typer.Exit(1) from exc
        rows = [[name, c["items"], c["users"], c["batches"]] for name, c in result.spaces.items()]
        print_table("enqueued", ["space", "items", "users", "messages"], rows)
        if result.activated:
            console.print(f"activated: {', '.join(result.activated)}")
        if wait:
            wait_until_full(settings, target)
    after = spaces.completeness(settings, target.space_id)
    if after.complete and spaces.activate_if_complete(settings, spaces.get_space(settings, target.space_id)):
        if not target.is_active:
            console.print(f"[green]switched[/green]: {target.name} is now the active content space")
    if local or wait:
        console.print(f"{after.done}/{after.total} embedded in {time.perf_counter() - started:.1f}s")


def _progress():
    return progress.progress_bar(progress.count(), progress.text("{task.fields[rate]:,.1f} items/s"),
                                 progress.remaining(), description="[bold]embedding[/] {task.description}",
                                 console=console)


def embed_local(settings, target, batch_size) -> None:
    """Embed what the space lacks in this process, with a progress bar (items/s)."""
    todo = spaces.completeness(settings, target.space_id).missing
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(target.name, total=todo, rate=0.0)
        done = 0

        def advance(stats) -> None:
            nonlocal done
            done += stats.requested
            bar.update(task, completed=done, rate=done / max(time.perf_counter() - started, 1e-9))

        pipeline.embed_missing_local(settings, target, batch_size=batch_size, on_batch=advance)


def wait_until_full(settings, target, poll: float = 0.5) -> None:
    """Poll the space's completeness until it is full. When nothing was embedded for
    ``RECPLATFORM_EMBED_WAIT_SECONDS``, ping the workers: if none answers, say how to start one and exit 1;
    if one answers (loading its model, or on a long batch), keep waiting."""
    bound = settings.embed_wait_seconds
    first = spaces.completeness(settings, target.space_id)
    started = last_move = time.perf_counter()
    last_done = first.done
    with _progress() as bar:
        task = bar.add_task(target.name, total=first.total, completed=first.done, rate=0.0)
        while True:
            c = spaces.completeness(settings, target.space_id)
            now = time.perf_counter()
            if c.done != last_done:
                last_done, last_move = c.done, now
            bar.update(task, total=c.total, completed=c.done, rate=(c.done - first.done) / max(now - started, 1e-9))
            if c.complete:
                break
            if now - last_move > bound:
                answering = process.workers_answering(settings)
                if not answering:
                    bar.stop()
                    console.print(f"[red]no worker answered[/red] and nothing was embedded for {bound:g}s "
                                  f"({c.done}/{c.total} done): start one with `recplatform up` (it runs a worker "
                                  "unless --no-worker) or `recplatform worker`; `recplatform embed --local` embeds "
                                  "without one")
                    raise typer.Exit(1)
                bar.console.print(f"[yellow]nothing embedded for {bound:g}s[/yellow], but {', '.join(answering)} "
                                  "answers (loading its model or on a long batch); still waiting")
                last_move = now
            time.sleep(poll)
