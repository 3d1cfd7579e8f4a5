"""Alembic environment: always run with a connection handed in by seedtest_pipeline.migrations."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
