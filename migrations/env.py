"""Alembic environment. The engine comes from `fervideo.store.engine` (same pragmas as the tools):
either passed in by code (config.attributes["engine"]) or built from `-x db=URL` / FERVIDEO_DB."""

from logging.config import fileConfig

from alembic import context

from fervideo.store.engine import make_engine
from fervideo.store.models import Base

config = context.config
if config.config_file_name is not None and "engine" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata
MIGRATION_LOCK_ID = 0x66657276  # "ferv": any constant every fervideo process agrees on


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(context.get_x_argument(as_dictionary=True).get("db"))
    with engine.connect() as connection:
        # Batch mode lets SQLite alter tables by copy-and-move, which it needs for most changes.
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Machines of a study starting together must not migrate one database twice: the second
                # waits here, then finds it at head (PostgreSQL's DDL is transactional, the lock too).
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
