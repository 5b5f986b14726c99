"""Reading from Feast's online store: the features it serves for users and items, as plain Python values.

Through the feature server over HTTP when ``recplatform up`` runs one for this database; otherwise (or when it
does not answer) in this process, which imports Feast, and a warning says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from recplatform.config import Settings, get_settings
from recplatform.features import http_client, server, views
from recplatform.features.views import ITEM_KEY, USER_KEY

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
    settings = settings or get_settings()
    url, spec = server.served_url(settings), views.load_spec(settings)
    if url and spec:
        try:
            return http_client.read(url, spec, service, key, ids)
        except http_client.FeatureServerError as exc:
            http_client.fall_back(str(exc))
    else:
        http_client.fall_back("no feature server runs for this database: `recplatform up` starts one")
    return _online_in_process(service, key, ids, settings)


def _online_in_process(service: str, key: str, ids: list[str], settings: Settings) -> list[dict]:
    from recplatform.features.store import get_store  # deferred: psycopg, yaml (the HTTP path needs neither)

    store = get_store(settings)
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
