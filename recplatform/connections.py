"""Connection strings for scripts and analytics tools: the owner's and ``rec_reader``'s, over the socket and TCP.

Without ``show_secrets`` no string carries a password: the embedded server's strings name the libpq password file
instead (``passfile=``, readable by this OS user only, so they still work as they are), and an external URL's
password is redacted. With ``show_secrets`` the passwords are inline, as a desktop tool (DBeaver, Metabase,
Superset) that cannot read the password file needs them.
"""

from __future__ import annotations

from urllib.parse import quote

from recplatform.config import Settings, redact_url

OWNER = "postgres"


def _embedded(settings: Settings, user: str, password: str | None, *, tcp: bool) -> str:
    userinfo = f"{user}:{quote(password, safe='')}" if password else user
    if tcp:
        where, query = f"127.0.0.1:{settings.pg_port}", ["sslmode=disable"]
    else:
        where, query = "", [f"host={quote(str(settings.pg_socket_dir), safe='')}"]
        if settings.pg_port:
            query.append(f"port={settings.pg_port}")
    if not password:
        query.append(f"passfile={quote(str(settings.pgpass_file), safe='')}")
    return f"postgresql://{userinfo}@{where}/{settings.database_name}" + (f"?{'&'.join(query)}" if query else "")


def connection_strings(settings: Settings, *, show_secrets: bool = False) -> dict[str, str]:
    """``owner`` and ``reader`` (socket, or the configured URL), plus ``owner_tcp`` and ``reader_tcp`` when the
    embedded server also listens on 127.0.0.1 (``RECPLATFORM_PG_PORT``)."""
    if not settings.uses_embedded_postgres:
        owner, reader = settings.postgres_url, settings.reader_url
        return {"owner": owner if show_secrets else redact_url(owner),
                "reader": reader if show_secrets else redact_url(reader)}
    owner_pw = settings.postgres_password if show_secrets else None
    reader_pw = settings.reader_password if show_secrets else None
    found = {"owner": _embedded(settings, OWNER, owner_pw, tcp=False),
             "reader": _embedded(settings, "rec_reader", reader_pw, tcp=False)}
    if settings.pg_port:
        found["owner_tcp"] = _embedded(settings, OWNER, owner_pw, tcp=True)
        found["reader_tcp"] = _embedded(settings, "rec_reader", reader_pw, tcp=True)
    return found


def reader_psql(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URL of ``rec_reader`` for ``psql`` and the environment that goes with it: the password travels
    in ``PGPASSWORD`` or the password file, never on a command line; every transaction is read-only."""
    env = {"PGOPTIONS": "-c default_transaction_read_only=on"}
    if settings.uses_embedded_postgres:
        return _embedded(settings, "rec_reader", None, tcp=False), env
    parts = settings.postgres_parts()
    if settings.reader_password:
        env["PGPASSWORD"] = settings.reader_password
    host = parts["host"]
    where = "" if host.startswith("/") else f"{host}:{parts['port']}"
    query = [f"sslmode={parts['sslmode']}"] + ([f"host={quote(host, safe='')}", f"port={parts['port']}"]
                                                if host.startswith("/") else [])
    return f"postgresql://rec_reader@{where}/{parts['database']}?{'&'.join(query)}", env
