"""Benchmark: embedding throughput of the project's encoder against plain sentence-transformers, on the same texts.

All variants embed the same 2,000+ item cards (``item_card`` of the synthetic catalogue from
``recplatform.datasets.generate_synthetic``; ML-100K's ``u.item`` or generated titles when that is unavailable):

- ``a``  plain ``SentenceTransformer(model_dir).encode(texts, normalize_embeddings=True)`` with its default
  batch size 32 — the baseline every ratio divides by;
- ``a'`` the same with a tuned batch size (the fastest of ``--st-batch-sizes`` on a 512-text sample);
- ``b``  the project's encoder, ``load_encoder(model, device).encode(texts)``, as configured (token-budget batches,
  ``settings.embed_precision`` = auto: bf16 autocast on CUDA and on CPUs with AMX, on AVX-512 BF16 CPUs where the
  load-time measurement finds it faster, fp32 elsewhere; the JSON's ``machine.precision_source`` says what it
  measured);
- ``b32`` the project's encoder forced to fp32 (the like-for-like comparison with ``a`` where ``b`` runs bf16);
- ``bx``  the project's encoder on ONNX Runtime (``backend="onnx"``, fp32, graph exported once under the state
  directory; ``--no-onnx`` leaves it out);
- ``c``  end to end, ingestion → queue → worker → pgvector (``--e2e``; see :func:`e2e_arm`), in the same
  round-robin, its CPU seconds those of this process plus the worker's process tree.

Every variant is warmed up once, then the variants run round-robin ``--repeats`` times (so a noisy neighbour on a
shared machine hits them alike) and the table quotes medians: items/s of wall time, and items per CPU-second of
this process (less sensitive to other processes on the machine). JSON goes to
``benchmarks/results/embedding_throughput.json`` (``--out``).

Usage: ``python benchmarks/embedding_throughput.py [--items 2000] [--repeats 3] [--device cpu] [--e2e]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recplatform.config import get_settings  # noqa: E402
from recplatform.embedding import load_encoder  # noqa: E402
from recplatform.embedding.loader import available_cpus, resolve_model_dir  # noqa: E402
from recplatform.text import item_card  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "embedding_throughput.json"
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


# ----- the corpus --------------------------------------------------------------------------------------------------


def build_texts(n_items: int, seed: int = 0) -> tuple[list[str], str]:
    """``n_items`` item cards and where they came from."""
    try:
        from recplatform.datasets import generate_synthetic

        dataset = generate_synthetic(n_users=20, n_items=n_items, seed=seed)
        return [item_card(row) for row in dataset.items.to_dict("records")], f"generate_synthetic(seed={seed})"
    except ImportError:
        pass
    if (ML100K / "u.item").is_file():
        genres = [line.split("|")[0] for line in (ML100K / "u.genre").read_text().splitlines() if line]
        texts = []
        for line in (ML100K / "u.item").read_text(encoding="latin-1").splitlines():
            fields = line.split("|")
            flags = fields[5:]
            texts.append(item_card({"title": fields[1], "genres": [g for g, f in zip(genres, flags) if f == "1"]}))
        texts = (texts * (n_items // len(texts) + 1))[:n_items]
        return texts, f"{ML100K}/u.item (repeated to {n_items})"
    rng = np.random.default_rng(seed)
    words = "silent crimson hidden river kingdom promise garden horizon echo harbor mirror empire road storm".split()
    texts = [
        item_card({"title": " ".join(rng.choice(words, size=rng.integers(1, 5))).title(), "year": int(rng.integers(1930, 2024)),
                   "genres": ["Drama"]})  # fmt: skip
        for _ in range(n_items)
    ]
    return texts, "generated titles"


# ----- measuring ---------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One way of embedding the corpus: ``run(texts)`` returns the vectors."""

    key: str
    what: str
    group: str  # a (baseline), b (project encoder), c (end to end)
    run: Callable[[list[str]], np.ndarray | None]
    params: dict = field(default_factory=dict)
    cpu: Callable[[], float] = time.process_time  # CPU seconds so far of what the arm runs on (c: + the worker)


@dataclass
class Result:
    key: str
    what: str
    group: str
    params: dict
    items: int
    wall_s: list[float]
    cpu_s: list[float]
    median_wall_s: float = 0.0
    items_per_s: float = 0.0
    items_per_cpu_s: float = 0.0
    ratio_vs_a: float | None = None
    min_cosine_vs_a: float | None = None
    status: str = "ok"


def _time(variant: Variant, texts: list[str]) -> tuple[float, float, np.ndarray | None]:
    wall, cpu = time.perf_counter(), variant.cpu()
    vectors = variant.run(texts)
    return time.perf_counter() - wall, variant.cpu() - cpu, vectors


def measure(variants: list[Variant], texts: list[str], repeats: int) -> tuple[list[Result], dict[str, np.ndarray]]:
    """Warm every variant up, then run them round-robin ``repeats`` times; medians per variant."""
    for variant in variants:
        variant.run(texts[:64])
    results = {v.key: Result(v.key, v.what, v.group, v.params, len(texts), [], []) for v in variants}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(repeats):
        for variant in variants:
            wall, cpu, out = _time(variant, texts)
            results[variant.key].wall_s.append(round(wall, 4))
            results[variant.key].cpu_s.append(round(cpu, 4))
            if out is not None:
                vectors[variant.key] = out
            print(f"  repeat {repeat + 1}/{repeats} {variant.key:>6}: {len(texts) / wall:8.1f} items/s", flush=True)
    for result in results.values():
        result.median_wall_s = statistics.median(result.wall_s)
        result.items_per_s = len(texts) / result.median_wall_s
        result.items_per_cpu_s = len(texts) / statistics.median(result.cpu_s)
    return list(results.values()), vectors


def tune_st_batch_size(model, texts: list[str], sizes: list[int]) -> int:
    """The fastest sentence-transformers batch size on a sample (one timed pass each, after a warm-up)."""
    sample = texts[:512]
    model.encode(sample[:64], batch_size=32, show_progress_bar=False)
    timings = {}
    for size in sizes:
        started = time.perf_counter()
        model.encode(sample, batch_size=size, show_progress_bar=False, normalize_embeddings=True)
        timings[size] = time.perf_counter() - started
    return min(timings, key=timings.get)


# ----- (c) end to end ----------------------------------------------------------------------------------------------


def e2e_arm(texts: list[str], args: argparse.Namespace):
    """PART (c) — ingestion → Celery queue → worker → pgvector, timed until every item has its vector, as an
    arm interleaved with the others (``benchmarks/e2e_pipeline.py``): a context manager yielding (run, cpu, params)."""
    from e2e_pipeline import e2e_arm as arm

    return arm(texts, args)


# ----- report ------------------------------------------------------------------------------------------------------


def machine_info(encoder) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "backend": getattr(encoder, "backend", "torch"),
        "device": encoder.device,
        "precision": encoder.precision,
        "precision_source": getattr(encoder, "precision_source", ""),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def print_report(results: list[Result], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("", "variant", "batching", "median s", "items/s", "items/CPU-s", "ratio vs a", "min cos vs a"):
        table.add_column(column, justify="right" if column not in ("", "variant", "batching") else "left")
    notes = []
    for r in results:
        if r.status != "ok":
            table.add_row(r.key, r.what, "", "", "", "", "", "")
            notes.append(f"{r.key}: {r.status}")
            continue
        batching = ", ".join(f"{k}={v}" for k, v in r.params.items())
        table.add_row(
            r.key, r.what, batching, f"{r.median_wall_s:.2f}", f"{r.items_per_s:,.0f}", f"{r.items_per_cpu_s:,.0f}",
            f"{r.ratio_vs_a:.2f}" if r.ratio_vs_a is not None else "",
            f"{r.min_cosine_vs_a:.6f}" if r.min_cosine_vs_a is not None else "",
        )  # fmt: skip
    console = Console(width=max(Console().width, 150))
    console.print(table)
    for note in notes:
        console.print(note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="number of item texts (>= 2000 for the record)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="model ref (default: settings.model)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when present)")
    parser.add_argument("--st-batch-sizes", default="64,128,256,512", help="candidates for the tuned ST batch size")
    parser.add_argument("--no-onnx", action="store_true", help="leave out the ONNX Runtime arm (bx)")
    parser.add_argument("--e2e", action="store_true", help="also measure (c) ingestion → queue → worker → pgvector")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from recplatform.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    load_before = os.getloadavg()
    texts, source = build_texts(args.items)
    model_ref = args.model or settings.model
    encoder = load_encoder(model_ref, args.device)  # sets torch threads for CPU; ST below runs with the same
    encoder_fp32 = load_encoder(model_ref, args.device, precision="fp32")

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(resolve_model_dir(model_ref)), device=encoder.device)
    tuned = tune_st_batch_size(st, texts, [int(s) for s in args.st_batch_sizes.split(",") if s])

    def st_encode(batch_size: int) -> Callable[[list[str]], np.ndarray]:
        return lambda batch: st.encode(batch, batch_size=batch_size, show_progress_bar=False, normalize_embeddings=True)

    variants = [
        Variant("a", "sentence-transformers encode", "a", st_encode(32), {"batch_size": 32}),
        Variant("a'", "sentence-transformers encode, tuned", "a", st_encode(tuned), {"batch_size": tuned}),
        Variant("b", f"project encoder ({encoder.precision})", "b", encoder.encode,
                {"batch_tokens": encoder.batch_tokens}),
    ]  # fmt: skip
    if encoder.precision != "fp32":
        variants.append(
            Variant("b32", "project encoder (fp32)", "b", encoder_fp32.encode, {"batch_tokens": encoder.batch_tokens})
        )
    if not args.no_onnx and encoder.device == "cpu":
        encoder_onnx = load_encoder(model_ref, "cpu", backend="onnx")
        variants.append(Variant("bx", "project encoder (ONNX Runtime fp32)", "b", encoder_onnx.encode,
                                {"batch_tokens": encoder_onnx.batch_tokens}))
    print(f"{len(texts)} texts from {source}; model {model_ref} on {encoder.device}; ST tuned batch size {tuned}")
    with contextlib.ExitStack() as stack:
        if args.e2e:  # c runs in the same round-robin as a, a', b, bx: load on the machine hits every arm alike
            run, cpu, params = stack.enter_context(e2e_arm(texts, args))
            variants.append(Variant("c", "end to end: ingest → queue → worker → pgvector", "c", run, params, cpu))
        results, vectors = measure(variants, texts, args.repeats)

    base = next(r for r in results if r.key == "a")
    for r in results:
        if r.status == "ok":
            r.ratio_vs_a = r.items_per_s / base.items_per_s
            if r.key in vectors:
                r.min_cosine_vs_a = float((vectors[r.key] * vectors["a"]).sum(axis=1).min())
    ratios = {f"{r.key}/a": round(r.ratio_vs_a, 3) for r in results if r.ratio_vs_a is not None and r.key != "a"}
    tuned_result = next(r for r in results if r.key == "a'")
    ratios.update({f"{r.key}/a'": round(r.items_per_s / tuned_result.items_per_s, 3)
                   for r in results if r.group != "a" and r.status == "ok"})  # fmt: skip

    title = f"Embedding throughput — {len(texts)} item cards, {model_ref} on {encoder.device}, medians of {args.repeats}"
    print_report(results, title)
    print("ratios:", ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
    report = {
        "benchmark": "embedding_throughput",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "corpus": {"items": len(texts), "source": source, "mean_chars": float(np.mean([len(t) for t in texts]))},
        "model": model_ref,
        "machine": {**machine_info(encoder), "load_average_before": load_before},
        "st_tuned_batch_size": tuned,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
