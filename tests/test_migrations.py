"""Migrations upgrade, downgrade (the rollback plan) and upgrade again."""

from __future__ import annotations

import json
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


def kpis_by_user(engine) -> dict:
    with engine.connect() as connection:
        return dict(connection.execute(sa.text("SELECT user_id, kpis FROM weekly_kpi")).all())


def test_0009_moves_kpis_to_the_platforms_keys_and_back(fresh_engine):
    migrations.upgrade(fresh_engine, "0008")
    long_keys = {"as_of": "2026-11-22", "improvement": 0.1, "efficiency": None, "recovery": 0.5,
                 "engagement": 0.7, "goal_probability": 0.4, "churn_risk": 0.2, "week_attempts": 9}
    rows = {
        "ours": long_keys,
        "ours_and_theirs": {**long_keys, "P": 0.99, "note": "theirs"},  # P set by another writer
        "theirs": {"improvement": "their own meaning", "note": "no as_of: not the KPI writer's row"},
    }
    with fresh_engine.begin() as connection:
        for user_id, kpis in rows.items():
            connection.execute(
                sa.text("INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES (:u, '2026-11-16', CAST(:k AS jsonb))"),
                {"u": user_id, "k": json.dumps(kpis)},
            )
    migrations.upgrade(fresh_engine, "0009")
    moved = kpis_by_user(fresh_engine)
    assert moved["ours"] == {"as_of": "2026-11-22", "I_t": 0.1, "E_t": None, "R_t": 0.5, "A_t": 0.7, "P": 0.4,
                             "S": 0.2, "week_attempts": 9}
    assert moved["ours_and_theirs"]["P"] == 0.99 and moved["ours_and_theirs"]["goal_probability"] == 0.4
    assert moved["ours_and_theirs"]["I_t"] == 0.1 and moved["ours_and_theirs"]["note"] == "theirs"
    assert moved["theirs"] == rows["theirs"]

    migrations.downgrade(fresh_engine, "0008")
    assert kpis_by_user(fresh_engine)["ours"] == long_keys
    assert kpis_by_user(fresh_engine)["theirs"] == rows["theirs"]


def test_downgrade_to_base_keeps_a_local_exam_results_that_holds_rows_and_says_why(fresh_engine):
    migrations.upgrade(fresh_engine)
    with fresh_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO exam_results (session_id, result_json) VALUES ('s1', '{}')"))
    with pytest.raises(migrations.MigrationRefused, match="exam_results holds 1 rows"):
        migrations.downgrade(fresh_engine, "base")
    # Refused as a whole: the schema and the rows are as they were.
    assert migrations.current_revision(fresh_engine) == migrations.head_revision()
    with fresh_engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM exam_results")) == 1


def test_downgrade_to_base_leaves_no_table_of_the_pipeline_behind(fresh_engine):
    migrations.upgrade(fresh_engine)
    with fresh_engine.begin() as connection:  # what a killed features run leaves behind
        connection.execute(sa.text("CREATE UNLOGGED TABLE features_topic_daily_part_1700000000_ab12cd34_0 (x int)"))
    migrations.downgrade(fresh_engine, "base")
    assert tables(fresh_engine) == {"alembic_version"} or tables(fresh_engine) == set()


def test_0011_adds_user_inactivity_and_the_per_student_index_and_takes_them_back(fresh_engine):
    migrations.upgrade(fresh_engine, "0011")
    with fresh_engine.connect() as connection:
        index = connection.scalar(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'exam_results_student_completed_idx'"))
        # A platform row with a 3,000-character user_id is not refused: the index leaves it out.
        connection.execute(sa.text("INSERT INTO exam_results (session_id, user_id, result_json) "
                                   "VALUES ('s-long', repeat('x', 3000), '{}')"))
        connection.rollback()
    assert "seedtest_student_id(user_id)" in index and "length(user_id) <= 256" in index
    assert "user_inactivity" in tables(fresh_engine)
    migrations.downgrade(fresh_engine, "0010")
    assert "user_inactivity" not in tables(fresh_engine)
    with fresh_engine.connect() as connection:
        assert connection.scalar(sa.text(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'exam_results_student_completed_idx'")) == 0
