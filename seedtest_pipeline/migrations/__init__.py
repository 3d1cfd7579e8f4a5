"""Versioned schema migrations (Alembic). Upgrading is the deploy step, downgrading the rollback plan."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
import sqlalchemy as sa
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


class MigrationRefused(RuntimeError):
    """A migration stopped on purpose (it would lose data); nothing was changed."""


def downgrade(engine: Engine, revision: str) -> None:
    try:
        with engine.begin() as connection:
            command.downgrade(_config(connection), revision)
    except sa.exc.DBAPIError as error:
        # RAISE EXCEPTION in a migration (SQLSTATE P0001): its message says why; the transaction
        # rolled back, so the schema is as it was.
        if getattr(error.orig, "sqlstate", None) == "P0001":
            raise MigrationRefused(str(error.orig).splitlines()[0]) from None
        raise


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(_config(None)).get_current_head()
