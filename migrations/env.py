"""Alembic's environment: the one MetaData of schema.py, on the connection dbsetup.py hands over
(schema.upgrade), or on DATABASE_URL / the project's SQLite file for the alembic command line."""

from alembic import context

from riskmonitor.store import schema

target_metadata = schema.metadata


def run_migrations(connection) -> None:
    # Batch mode: SQLite alters a table by copying it, the only way it can drop or change a column.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:  # db.upgrade: already in a locked transaction
    run_migrations(connection)
else:
    from riskmonitor.config import load_config

    engine = schema.migration_engine(load_config().database_url)
    with engine.begin() as connection:
        schema.lock_migrations(connection)
        run_migrations(connection)
    engine.dispose()
