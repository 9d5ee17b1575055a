"""Alembic environment: always runs on the connection loopml hands it (see migrate.py)."""

from alembic import context

from loopml.backends.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
