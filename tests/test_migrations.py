"""Migrations upgrade, downgrade (the rollback plan) and upgrade again."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from seedtest_pipeline import migrations, warehouse
from seedtest_pipeline.attempts import V1_COLUMNS, view_columns


@pytest.fixture
def fresh_engine(database_url):
    admin_url = warehouse.with_database(database_url, "postgres")
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    warehouse.create_database_if_missing(admin_url, name)
    engine = warehouse.make_engine(warehouse.with_database(database_url, name))
    yield engine
    engine.dispose()
    admin = warehouse.make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def tables(engine) -> set[str]:
    with engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def test_upgrade_downgrade_upgrade(fresh_engine):
    migrations.upgrade(fresh_engine)
    assert migrations.current_revision(fresh_engine) == migrations.head_revision()
    written = {"features_topic_daily", "weekly_kpi", "mirt_item_params", "mirt_ability", "mirt_fit_meta", "report_artifacts"}
    assert written | {"exam_results"} <= tables(fresh_engine)

    migrations.downgrade(fresh_engine, "0001")
    assert not written & tables(fresh_engine)
    migrations.downgrade(fresh_engine, "base")
    assert migrations.current_revision(fresh_engine) is None
    assert "exam_results" not in tables(fresh_engine)  # created by us, so ours to drop

    migrations.upgrade(fresh_engine)
    with fresh_engine.connect() as connection:
        assert view_columns(connection) == list(V1_COLUMNS)


def test_downgrade_never_drops_the_platforms_exam_results(fresh_engine):
    with fresh_engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE TABLE exam_results (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), session_id text NOT NULL UNIQUE, "
            "user_id text, exam_id int, org_id int, status text NOT NULL DEFAULT 'ready', result_json jsonb NOT NULL, "
            "score_raw numeric, score_scaled numeric, standard_error numeric, percentile numeric, "
            "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
        ))
        connection.execute(sa.text("INSERT INTO exam_results (session_id, result_json) VALUES ('s1', '{\"questions\": []}')"))
    migrations.upgrade(fresh_engine)
    migrations.downgrade(fresh_engine, "base")
    with fresh_engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM exam_results")) == 1
