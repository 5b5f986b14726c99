"""Feast access for the platform, in one place: the store and ``apply`` (:mod:`.store`), online writes
(:mod:`.online_write`) and online reads (:mod:`.online_read`). Postgres is the source of truth; Feast serves it.
Nothing here imports Feast at module level (it costs seconds): importing this package is cheap.
"""

from recplatform.features.online_read import online_item_features, online_user_features
from recplatform.features.online_write import OnlineWriteResult, materialize, write_online
from recplatform.features.store import (
                                        FEAST_SCHEMAS,
                                        ApplyResult,
                                        apply,
                                        close_stores,
                                        ensure_schemas,
                                        get_store,
                                        repo_config,
)

__all__ = ["FEAST_SCHEMAS", "ApplyResult", "OnlineWriteResult", "apply", "close_stores", "ensure_schemas",
           "get_store", "materialize", "online_item_features", "online_user_features", "repo_config",
           "write_online"]
