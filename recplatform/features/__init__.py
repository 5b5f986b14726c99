"""Feast access for the platform, in one place: the store and ``apply`` (:mod:`.store`), online writes
(:mod:`.online_write`) and online reads (:mod:`.online_read`). Postgres is the source of truth; Feast serves it.
Nothing here imports Feast at module level (it costs seconds), and the names below are resolved on first use
(PEP 562), so that a read through the feature server (``recplatform features user``) loads neither psycopg nor
the write path.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "online_item_features": "online_read", "online_user_features": "online_read",
    "OnlineWriteResult": "online_write", "materialize": "online_write", "write_online": "online_write",
    "FEAST_SCHEMAS": "store", "ApplyResult": "store", "apply": "store", "close_stores": "store",
    "ensure_schemas": "store", "get_store": "store", "repo_config": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``features.<name>``: imported from its submodule the first time it is asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
