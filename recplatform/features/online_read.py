"""Reading from Feast's online store: the features it serves for users and items, as plain Python values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from recplatform.config import Settings, get_settings
from recplatform.features.online_write import ITEM_KEY, USER_KEY
from recplatform.features.store import get_store

USER_SERVICE, ITEM_SERVICE = "user_features", "item_features"


def _python_value(value: Any) -> Any:
    if isinstance(value, datetime) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_python_value(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _online(service: str, key: str, ids: Iterable[Any], settings: Settings | None) -> list[dict]:
    ids = [str(i) for i in ids]
    if not ids:
        return []
    store = get_store(settings or get_settings())
    try:
        features = store.get_feature_service(service)
    except Exception as exc:  # FeatureServiceNotFoundException and friends
        raise RuntimeError(f"Feast feature service {service!r} not found: run `recplatform init` first") from exc
    served = store.get_online_features(features=features, entity_rows=[{key: i} for i in ids]).to_dict()
    names = [key] + [f.name for projection in features.feature_view_projections for f in projection.features]
    return [{name: (ids[n] if name == key else _python_value(served[name][n])) for name in names} for n in range(len(ids))]


def online_user_features(user_ids: Iterable[Any], settings: Settings | None = None) -> list[dict]:
    """What Feast's online store serves for these users, in order: user_id, age, gender, occupation,
    zip_code, n_interactions, mean_rating, last_interaction_at (values None for an unknown id)."""
    return _online(USER_SERVICE, USER_KEY, user_ids, settings)


def online_item_features(item_ids: Iterable[Any], settings: Settings | None = None) -> list[dict]:
    """What Feast's online store serves for these items, in order: item_id, title, year, genres (list),
    description, n_interactions, n_users, mean_rating, last_interaction_at (None for an unknown id)."""
    return _online(ITEM_SERVICE, ITEM_KEY, item_ids, settings)
