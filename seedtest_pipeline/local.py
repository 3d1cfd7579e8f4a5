"""The local environment: embedded PostgreSQL, the Dagster instance in this folder, and their variables."""

from __future__ import annotations

import os
from pathlib import Path

from seedtest_pipeline import warehouse


def project_dir() -> Path:
    """The folder holding dagster.yaml (the local instance); commands run from it."""
    here = Path.cwd()
    if not (here / "dagster.yaml").exists():
        raise SystemExit(f"dagster.yaml not found in {here}: run seedtest-pipeline from the project folder")
    return here


def prepare_environment() -> warehouse.EmbeddedServer | None:
    """Set the variables the local instance and the warehouse resource read, in os.environ.

    Without DATABASE_URL the embedded server is started (and kept running while this process
    lives); with it, Dagster's storage goes to database "dagster" on the same server unless
    SEEDTEST_DAGSTER_PG_URL names another.
    """
    home = warehouse.seedtest_home()
    embedded = None
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if database_url:
        dagster_url = os.environ.get("SEEDTEST_DAGSTER_PG_URL") or warehouse.with_database(
            database_url, warehouse.DAGSTER_DATABASE
        )
        warehouse.create_database_if_missing(database_url, warehouse.DAGSTER_DATABASE)
    else:
        embedded = warehouse.start_embedded(home)
        database_url = embedded.database_url(warehouse.WAREHOUSE_DATABASE)
        dagster_url = embedded.database_url(warehouse.DAGSTER_DATABASE)
    os.environ.update(
        {
            "SEEDTEST_HOME": str(home),
            "DATABASE_URL": database_url,
            # dagster-postgres needs psycopg2 (SQLAlchemy maps a bare URL to psycopg 3).
            "SEEDTEST_DAGSTER_PG_URL": warehouse.with_driver(dagster_url, "psycopg2"),
            "SEEDTEST_DAGSTER_STORAGE": str(home / "dagster" / "storage"),
            "SEEDTEST_DAGSTER_LOGS": str(home / "dagster" / "logs"),
            "DAGSTER_HOME": str(project_dir()),
        }
    )
    return embedded
