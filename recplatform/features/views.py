"""The feature repository's views and services as plain data (JSON), so that the HTTP path needs no ``import feast``.

``feature_repo/definitions.py`` stays the one place that maps tables to features: whoever has Feast imported anyway
(the feature server at start, ``apply``, the in-process write) describes its objects here, in a cache file keyed
by a digest of the repository's files; an interactive command then reads that file instead of importing Feast.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recplatform.config import Settings

#: Join keys of the user and item entities (``feature_repo/definitions.py``).
USER_KEY, ITEM_KEY = "user_id", "item_id"


@dataclass(frozen=True)
class ViewSpec:
    """One feature view: its source table, join key, features (name, Feast dtype) and timestamp column."""

    name: str
    key: str
    table: str
    features: list[tuple[str, str]]
    timestamp_field: str

    @property
    def columns(self) -> list[str]:
        """The source columns in the order :func:`recplatform.features.online_write` selects them."""
        return [self.key, *(name for name, _ in self.features), self.timestamp_field]


@dataclass(frozen=True)
class RepoSpec:
    """Every view, and each feature service's features in order (view, feature names)."""

    views: list[ViewSpec]
    services: dict[str, list[tuple[str, list[str]]]]

    def dtypes(self, service: str) -> dict[str, str]:
        """Feature name -> Feast dtype for the features of one service."""
        by_view = {v.name: dict(v.features) for v in self.views}
        return {name: by_view[view][name] for view, names in self.services.get(service, []) for name in names}


def _digest(repo: Path) -> str:
    h = hashlib.sha256()
    for path in sorted([*repo.glob("*.py"), *repo.glob("*.yaml")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(settings: Settings) -> Path:
    return settings.state_dir / "cache" / f"feature-repo-{_digest(settings.feature_repo)}.json"


def load_spec(settings: Settings) -> RepoSpec | None:
    """The cached description of the repository as it is now, or None when nobody has written it yet."""
    try:
        raw = json.loads(_cache_file(settings).read_text())
    except (FileNotFoundError, ValueError, OSError):
        return None
    views = [ViewSpec(v["name"], v["key"], v["table"], [tuple(f) for f in v["features"]], v["timestamp_field"])
             for v in raw["views"]]
    services = {name: [(view, list(names)) for view, names in parts] for name, parts in raw["services"].items()}
    return RepoSpec(views, services)


def describe(objects: list[Any]) -> RepoSpec:
    """A :class:`RepoSpec` from Feast objects (entities, feature views, feature services of the repository)."""
    from feast import Entity, FeatureService, FeatureView  # deferred: feast

    join_keys = {o.name: o.join_key for o in objects if isinstance(o, Entity)}
    views = [ViewSpec(o.name, join_keys[o.entities[0]], o.batch_source.get_table_query_string(),
                      [(f.name, str(f.dtype)) for f in o.features], o.batch_source.timestamp_field)
             for o in sorted((o for o in objects if isinstance(o, FeatureView)), key=lambda v: v.name)]
    services = {o.name: [(p.name, [f.name for f in p.features]) for p in o.feature_view_projections]
                for o in objects if isinstance(o, FeatureService)}
    return RepoSpec(views, services)


def save_spec(settings: Settings, spec: RepoSpec) -> None:
    """Write the cache file atomically (several processes may write the same content)."""
    path = _cache_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"views": [asdict(v) for v in spec.views], "services": spec.services}, indent=1))
    os.replace(tmp, path)


def ensure_spec(settings: Settings) -> RepoSpec:
    """The cached description, written first from the repository's definitions if needed (imports Feast then)."""
    spec = load_spec(settings)
    if spec is None:
        from recplatform.features.store import repo_objects  # deferred: psycopg, yaml (only when uncached)

        spec = describe(repo_objects(settings.feature_repo))
        save_spec(settings, spec)
    return spec
