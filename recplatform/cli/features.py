"""``recplatform features user|item|serve``: what Feast's online store serves, read through the feature server.

Kept apart from the loading commands so that ``features user`` imports only the HTTP read path (no psycopg,
numpy, pandas or Feast) when the feature server answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import typer

from recplatform.cli.output import HELP_SETTINGS, cli_settings, fail, print_table
from recplatform.features import online_read
from recplatform.features.server import served_url


features_app = typer.Typer(help="Show what Feast's online store serves for users or items.", no_args_is_help=True,
                           **HELP_SETTINGS)


class NotInOnlineStoreError(LookupError):
    """Ids the online store serves nothing for (unknown, or not written yet)."""

    def __init__(self, kind: str, ids: list[str]):
        super().__init__(f"not in the online store: {kind}_id {', '.join(map(repr, ids))} "
                         "(unknown id, or not written yet: `recplatform materialize`)")
        self.ids = ids


def _show_features(kind: str, ids: list[str], as_json: bool) -> None:
    settings = cli_settings()
    try:
        rows = (online_read.online_user_features if kind == "user" else online_read.online_item_features)(ids, settings)
    except RuntimeError as exc:  # repository not applied yet
        fail(exc, as_json)
    key = f"{kind}_id"
    unknown = [str(r[key]) for r in rows if all(v is None for k, v in r.items() if k != key)]
    if unknown:  # exit 1 (and a JSON error with --json): nulls with exit 0 read as a user with no features
        fail(NotInOnlineStoreError(kind, unknown), as_json)
    if as_json:
        payload = rows[0] if len(rows) == 1 else rows
        typer.echo(json.dumps(payload, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
        return
    names = list(rows[0]) if rows else []
    cells = [[name, *(", ".join(r[name]) if isinstance(r[name], list) else r[name] for r in rows)]
             for name in names[1:]]
    print_table(f"Feast online features: {kind}", ["feature", *[str(r[names[0]]) for r in rows]], cells)


@features_app.command("user")
def features_user(
    user_ids: list[str] = typer.Argument(..., metavar="ID", help="One or more user ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (an object for one id, a list for several)."),
) -> None:
    """Demographics and activity of users as served by Feast's online store."""
    _show_features("user", user_ids, as_json)


@features_app.command("item")
def features_item(
    item_ids: list[str] = typer.Argument(..., metavar="ID", help="One or more item ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (an object for one id, a list for several)."),
) -> None:
    """Metadata and popularity of items as served by Feast's online store."""
    _show_features("item", item_ids, as_json)


def _port_taken(host: str, port: int) -> bool:
    """Whether something already listens on (host, port): binding it here fails."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@features_app.command("serve")
def features_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1 unless you mean it)."),
    port: int = typer.Option(6566, "--port", help="HTTP port (the default is also the port of the server that "
                                                  "`recplatform up` starts; give another one while it runs)."),
) -> None:
    """Run Feast's HTTP feature server on this repository, connected to the configured database, in the
    foreground (`recplatform up` already starts one in the background)."""
    settings = cli_settings()  # exports the RECPLATFORM_FEAST_PG_* values that feature_store.yaml expands
    if _port_taken(host, port):
        running = served_url(settings)
        why = (f"the feature server `recplatform up` started already serves this repository at {running}"
               if running and port == settings.feature_server_port else "something else listens there")
        fail(f"port {port} on {host} is in use: {why}; give another one with --port")
    beside = Path(sys.executable).parent / "feast"  # the feast of this environment, even when not on PATH
    feast = str(beside) if beside.exists() else shutil.which("feast")
    if feast is None:
        fail("the feast command is not installed (pip install 'feast[postgres]')")
    os.execv(feast, [feast, "-c", str(settings.feature_repo), "serve", "--host", host, "--port", str(port)])


def register(app: typer.Typer) -> None:
    """Add the ``features`` group to the app."""
    app.add_typer(features_app, name="features")
