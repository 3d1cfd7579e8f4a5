"""Fixtures: a real PostgreSQL for every test that touches data.

By default an embedded PostgreSQL 16 (pgserver) in a temporary folder; with DATABASE_URL set,
a fresh database on that server (created for the session and dropped after it).
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from seedtest_pipeline import warehouse
from seedtest_pipeline.attempts import apply_schema

PIPELINE_TABLES = (
    "report_artifacts", "mirt_ability", "mirt_item_params", "mirt_fit_meta",
    "weekly_kpi", "features_topic_daily", "user_inactivity", "exam_results",
)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        name = f"seedtest_test_{uuid.uuid4().hex[:12]}"
        warehouse.create_database_if_missing(external, name)
        yield warehouse.with_database(external, name)
        admin = warehouse.make_engine(external, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        embedded = warehouse.start_embedded(tmp_path_factory.mktemp("seedtest"))
        yield embedded.database_url(warehouse.WAREHOUSE_DATABASE)


@pytest.fixture(scope="session")
def schema_engine(database_url):
    """An engine on a database migrated to head."""
    engine = warehouse.make_engine(database_url)
    apply_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(schema_engine):
    """The migrated database, emptied before each test."""
    with schema_engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(PIPELINE_TABLES)} RESTART IDENTITY CASCADE"))
    return schema_engine
