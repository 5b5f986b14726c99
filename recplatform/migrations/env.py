"""Alembic environment for the `rec` schema; Feast's schemas (feast_online, feast_registry) are never touched.

Autogenerate compares three things with the database: the tables of ``recplatform.schema``, and the SQL
functions of ``recplatform/sql/rec.<name>.sql`` (alembic-utils ``PGFunction`` entities: a changed body is a
``replace_entity``, a changed signature a ``drop_entity`` + ``create_entity``). It ignores every schema but
``rec`` and the per-space HNSW indexes that ``rec.ensure_space_indexes`` creates when a space is registered.
"""

import re
from logging.config import fileConfig

from alembic import context
from alembic_utils.pg_function import PGFunction
from alembic_utils.replaceable_entity import register_entities
from sqlalchemy import engine_from_config, pool

from recplatform.config import get_settings
from recplatform.db import sql_functions
from recplatform.schema import metadata

config = context.config
if (config.config_file_name and config.attributes.get("configure_logger", True)
        and config.file_config.has_section("loggers")):
    fileConfig(config.config_file_name)
if not config.get_main_option("sqlalchemy.url"):
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))

OWNED_SCHEMAS = {"rec"}
# rec.ensure_space_indexes: item_embeddings_hnsw_<space>, user_embeddings_hnsw_<space>_<kind>
PER_SPACE_INDEX = re.compile(r"^(item|user)_embeddings_hnsw_\d+(_\w+)?$")

# Functions only: the views, the trigger and the grants stay in the revisions that made them.
register_entities(sql_functions(), entity_types=[PGFunction])


def include_name(name, type_, parent_names):
    """Autogenerate compares only the schemas we own; Feast's generic tables live elsewhere."""
    if type_ == "schema":
        return name in OWNED_SCHEMAS
    if type_ == "index" and name and PER_SPACE_INDEX.match(name):
        return False  # created per embedding space at run time, not by a revision
    if type_ == "function":  # alembic-utils: functions found in the database, name "schema.signature"
        return parent_names.get("schema_name") in OWNED_SCHEMAS
    return True


def include_object(object_, name, type_, reflected, compare_to):
    if type_ == "function":
        return object_.schema in OWNED_SCHEMAS
    return True


def _configure(**kw) -> None:
    context.configure(target_metadata=metadata, include_schemas=True, include_name=include_name,
                      include_object=include_object, version_table_schema="public", **kw)


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # Serialise concurrent `recplatform init` runs (tests, several workers starting at once).
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7302281)")
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()  # the advisory lock opened the transaction, so Alembic leaves the commit to us


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
