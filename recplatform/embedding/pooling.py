"""Token states → one vector per text, as the model's sentence-transformers pooling says (torch tensors).

Shared by the torch backend and the module the ONNX backend exports, so both pool the same way.
"""

from __future__ import annotations

from typing import Any


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """``hidden`` (batch, tokens, dim) and ``mask`` (batch, tokens) → (batch, dim): mean, cls, max or lasttoken."""
    import torch  # deferred: torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
