"""Online reads and writes through the Feast feature server over HTTP (stdlib urllib; no ``import feast``).

Reads are ``POST /get-online-features`` with a feature service; writes are ``POST /write-to-online-store`` with one
feature view's rows as columns (Feast 0.67's ``WriteToFeatureStoreRequest``). Values are converted to what the
in-process path returns (UnixTimestamp as an aware ``datetime``, numbers as ``int``/``float``). Any failure is a
:class:`FeatureServerError`, on which callers fall back to the in-process path (:func:`fall_back`).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from recplatform.features.views import RepoSpec, ViewSpec

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 120.0
_warned: set[str] = set()


class FeatureServerError(RuntimeError):
    """The feature server did not answer, or refused a request."""


def fall_back(reason: str) -> None:
    """Say once per process (a warning; later ones at debug) that Feast runs in-process because of ``reason``."""
    message = f"Feast feature server unavailable ({reason}); using the in-process Feast path (slow: imports Feast)"
    if reason in _warned:
        log.debug(message)
        return
    _warned.add(reason)
    log.warning(message)


def _post(url: str, path: str, body: dict, timeout: float) -> Any:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body, default=_json_value).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise FeatureServerError(f"{path} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FeatureServerError(f"{url}{path}: {exc}") from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _from_json(value: Any, dtype: str | None) -> Any:
    if value is None:
        return None
    if dtype == "UnixTimestamp":
        return datetime.fromtimestamp(value, tz=UTC)
    if dtype in ("Int64", "Int32"):
        return int(value)
    if dtype in ("Float64", "Float32"):
        return float(value)
    return value


def read(url: str, spec: RepoSpec, service: str, key: str, ids: list[str]) -> list[dict]:
    """Rows of ``service`` for ``ids`` in order: the key, then the service's features (None where not found)."""
    if service not in spec.services:
        raise FeatureServerError(f"feature service {service!r} is not in the repository description")
    answer = _post(url, "/get-online-features", {"feature_service": service, "entities": {key: ids}}, READ_TIMEOUT)
    try:
        names = answer["metadata"]["feature_names"]
        columns = {name: result for name, result in zip(names, answer["results"])}
    except (KeyError, TypeError) as exc:
        raise FeatureServerError(f"/get-online-features answered an unexpected body: {str(answer)[:300]}") from exc
    dtypes = spec.dtypes(service)
    ordered = [name for _, features in spec.services[service] for name in features]
    rows = []
    for n, entity in enumerate(ids):
        row: dict[str, Any] = {key: entity}
        for name in ordered:
            column = columns.get(name)
            if column is None:
                raise FeatureServerError(f"/get-online-features did not return feature {name!r}")
            found = column["statuses"][n] == "PRESENT"
            row[name] = _from_json(column["values"][n], dtypes.get(name)) if found else None
        rows.append(row)
    return rows


def write(url: str, view: ViewSpec, rows: list[tuple]) -> None:
    """Write rows (in :attr:`ViewSpec.columns` order) of one feature view to the online store."""
    dtypes = dict(view.features)
    frame: dict[str, list] = {}
    for i, name in enumerate(view.columns):
        values = [row[i] for row in rows]
        if dtypes.get(name) == "UnixTimestamp":  # Feast takes epoch seconds for a timestamp feature
            values = [None if v is None else int(v.timestamp()) for v in values]
        frame[name] = values
    _post(url, "/write-to-online-store", {"feature_view_name": view.name, "df": frame,
                                          "allow_registry_cache": True}, WRITE_TIMEOUT)
