"""The ONNX Runtime encoder backend: the model exported once to ONNX (transformer + pooling, fp32), cached under the
state directory, and run with ONNX Runtime's full graph optimisations.

The export is keyed by the model directory, its files (names, sizes, modification times), the SHA-256 of its
``config.json``, the pooling mode and the torch / transformers versions, so a different or updated model never
reuses a stale graph. It is written to a temporary file and renamed into place under a file lock (prefork workers
that start together export once), with a manifest holding the graph's SHA-256; a missing, partial or corrupt graph
fails that check, or fails to load, and is exported again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recplatform.embedding.loader import LoadedModel, ModelSpec
from recplatform.embedding.pooling import pool

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the exported graph changes (inputs, outputs, pooling code)
OPSET = 17
MODEL_FILE, MANIFEST_FILE = "model.onnx", "manifest.json"


@dataclass
class OnnxModel:
    """An ONNX Runtime session over the exported graph: ``run(ids, mask)`` → pooled rows (not yet normalised)."""

    session: Any
    path: Path
    exported: bool  # True when this load exported the graph (False: reused the cache)
    threads: int

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def cache_key(spec: ModelSpec) -> str:
    """What identifies one export: model directory, its files, its config, pooling and the exporting libraries."""
    import torch  # deferred: torch
    import transformers  # deferred: transformers

    digest = hashlib.sha256()
    parts = [f"export={EXPORT_VERSION}", f"opset={OPSET}", f"path={spec.path}", f"pooling={spec.pooling}",
             f"torch={torch.__version__}", f"transformers={transformers.__version__}"]
    for file in sorted(p for p in spec.path.rglob("*") if p.is_file()):
        stat = file.stat()
        parts.append(f"{file.relative_to(spec.path)}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(hashlib.sha256((spec.path / "config.json").read_bytes()).hexdigest())
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()


def cache_dir(spec: ModelSpec, state_dir: Path) -> Path:
    """``state_dir/onnx/<model dir name>-<key prefix>``: one folder per export key."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec.path.parent.name}-{spec.path.name}")[:60] or "model"
    return Path(state_dir) / "onnx" / f"{slug}-{cache_key(spec)[:20]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_ok(folder: Path) -> bool:
    """The graph is there, complete (its manifest's size and SHA-256 match)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        graph = folder / MODEL_FILE
        return graph.stat().st_size == manifest["bytes"] and _sha256(graph) == manifest["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _pooled_module(model: Any, pooling: str):
    """The module that is exported: the transformer followed by the model's pooling."""
    import torch  # deferred: torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool(hidden, attention_mask, pooling)

    return Pooled().eval()


def export(loaded: LoadedModel, folder: Path) -> None:
    """Export transformer + pooling to ``folder/model.onnx`` atomically (temporary file, then rename + manifest)."""
    import torch  # deferred: torch

    module = _pooled_module(loaded.model, loaded.spec.pooling)
    sample = torch.ones((2, 8), dtype=torch.int64)
    tmp = folder / f".{MODEL_FILE}.{os.getpid()}.tmp"
    started = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches, expected here
            torch.onnx.export(
                module, (sample, sample), str(tmp), input_names=["input_ids", "attention_mask"],
                output_names=["pooled"], opset_version=OPSET, dynamo=False,
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "pooled": {0: "batch"}},
            )  # fmt: skip
        (folder / MANIFEST_FILE).unlink(missing_ok=True)  # no manifest while the graph is being replaced
        os.replace(tmp, folder / MODEL_FILE)
        manifest = {"bytes": (folder / MODEL_FILE).stat().st_size, "sha256": _sha256(folder / MODEL_FILE),
                    "model": str(loaded.spec.path), "pooling": loaded.spec.pooling, "key": cache_key(loaded.spec),
                    "export_version": EXPORT_VERSION, "opset": OPSET}  # fmt: skip
        manifest_tmp = folder / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
        manifest_tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(manifest_tmp, folder / MANIFEST_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s to ONNX at %s in %.1fs", loaded.spec.path, folder, time.perf_counter() - started)


def _session(path: Path, threads: int):
    import onnxruntime as ort  # deferred: onnxruntime, only for this backend

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def load_onnx(loaded: LoadedModel, state_dir: Path, threads: int) -> OnnxModel:
    """The cached graph for ``loaded``'s model (exported first when missing, partial or corrupt) in a session."""
    try:
        import onnxruntime  # noqa: F401  # deferred: onnxruntime, only for this backend
    except ImportError as exc:
        raise ValueError("embed_backend 'onnx' needs onnxruntime: pip install 'recplatform[onnx]'") from exc
    folder = cache_dir(loaded.spec, state_dir)
    with _locked(folder):
        exported = False
        if not _cached_ok(folder):
            log.info("no valid ONNX export of %s in %s; exporting", loaded.spec.path, folder)
            export(loaded, folder)
            exported = True
        try:
            session = _session(folder / MODEL_FILE, threads)
        except Exception as exc:  # noqa: BLE001 - a graph ORT cannot load is rebuilt once, then the error stands
            if exported:
                raise
            log.warning("cached ONNX graph %s did not load (%s); exporting again", folder / MODEL_FILE, exc)
            export(loaded, folder)
            exported = True
            session = _session(folder / MODEL_FILE, threads)
    return OnnxModel(session=session, path=folder / MODEL_FILE, exported=exported, threads=threads)
