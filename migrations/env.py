"""Alembic environment for the `rec` schema; Feast's schemas (feast_online, feast_registry) are never touched."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from recplatform.config import get_settings
from recplatform.schema import metadata

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)
if not config.get_main_option("sqlalchemy.url"):
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))

OWNED_SCHEMAS = {"rec"}


def include_name(name, type_, parent_names):
    """Autogenerate compares only the schemas we own; Feast's generic tables live elsewhere."""
    if type_ == "schema":
        return name in OWNED_SCHEMAS
    return True


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, include_schemas=True, include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # Serialise concurrent `recplatform init` runs (tests, several workers starting at once).
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7302281)")
        context.configure(connection=connection, target_metadata=metadata, include_schemas=True,
                          include_name=include_name, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()  # the advisory lock opened the transaction, so Alembic leaves the commit to us


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
