"""The project's SQL, kept in seedtest_pipeline/sql/*.sql and loaded by name."""

from functools import cache
from pathlib import Path

from sqlalchemy import Connection, TextClause, text

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql_text(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


@cache
def statement(name: str) -> TextClause:
    """A single statement with :named bind parameters."""
    return text(sql_text(name))


def run_script(connection: Connection, name: str) -> None:
    """Run a multi-statement DDL script (no bind parameters) on the connection's transaction."""
    connection.connection.driver_connection.execute(sql_text(name))
