"""SPEC §9: the platform operators' verification queries, verbatim, against generated data.

The chain runs on recent synthetic data (the queries look at the last days relative to now), then
every query must run and return figures wherever the data exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from factories import insert_results, question, result
from seedtest_pipeline import synthetic
from seedtest_pipeline.calibration import calibrate
from seedtest_pipeline.features import write_features
from seedtest_pipeline.kpi import write_weekly_kpi
from seedtest_pipeline.online_theta import update_online_theta
from seedtest_pipeline.reports.store import LocalStore
from seedtest_pipeline.reports.week import render_week
from seedtest_pipeline.windows import DayRange, iso_monday

SQL_LINES = (Path(__file__).parent / "sql" / "operator_queries.sql").read_text().splitlines()
QUERIES = [
    statement.strip()
    for statement in "\n".join(line for line in SQL_LINES if not line.startswith("--")).split(";")
    if statement.strip()
]
KPI, FEATURES, ITEMS, ABILITY, ONLINE_LAST_HOUR, ONLINE_PER_DAY, REPORTS, REPORTS_PER_WEEK = QUERIES


@pytest.fixture(scope="module")
def chain(schema_engine):
    """35 days of data ending yesterday, with features, calibrations and this and last week's KPIs (module scope: the queries only read)."""
    engine = schema_engine
    today = datetime.now(timezone.utc).date()
    with engine.begin() as connection:
        connection.execute(sa.text(
            "TRUNCATE report_artifacts, mirt_ability, mirt_item_params, mirt_fit_meta, weekly_kpi, "
            "features_topic_daily, exam_results RESTART IDENTITY CASCADE"
        ))
        config = synthetic.SyntheticConfig(students=400, days=35, end_date=today - timedelta(days=1))
        synthetic.seed_exam_results(connection.connection.driver_connection, config)
    write_features(engine, DayRange(today - timedelta(days=35), today))
    # As the daily 03:00 schedule leaves them: a calibration as of the end of yesterday (the
    # KPIs' P reads it) and one as of now.
    for window_end in (datetime.combine(today, datetime.min.time(), timezone.utc), datetime.now(timezone.utc)):
        with engine.begin() as connection:
            calibrate(connection, window_end)
    for week in (iso_monday(today) - timedelta(days=7), iso_monday(today)):
        if week < today:  # the running week has KPIs once a day of it has ended
            with engine.begin() as connection:
                write_weekly_kpi(connection, week, today)
    # Sessions of the last hour and the online θ of their students, as the session_completed
    # sensor's runs leave them.
    with engine.connect() as connection:
        users = list(connection.scalars(sa.text("SELECT DISTINCT user_id FROM mirt_ability ORDER BY 1 LIMIT 5")))
    now = datetime.now(timezone.utc)
    insert_results(engine, [result(user_id, now - timedelta(minutes=10 + n), [question(1001 + n), question(1100 + n)])
                            for n, user_id in enumerate(users)])
    with engine.begin() as connection:
        assert update_online_theta(connection, users).rows_written == len(users)
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE weekly_kpi, features_topic_daily, exam_results"))


def run(engine, query: str) -> list[dict]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.text(query))]


@pytest.mark.parametrize(
    ("query", "expected_rows"),
    [(KPI, 10), (FEATURES, 20), (ITEMS, 20), (ABILITY, 20)],
    ids=["weekly_kpi", "features_topic_daily", "mirt_item_params", "mirt_ability"],
)
def test_each_stage_query_returns_full_rows_of_figures(chain, query, expected_rows):
    rows = run(chain, query)
    assert len(rows) == expected_rows
    # Every column carries a figure in the rows returned (a KPI may be undefined for one user,
    # never for all of the most recently updated ones).
    empty_columns = [column for column in rows[0] if all(row[column] is None for row in rows)]
    assert not empty_columns


def test_the_kpi_query_reads_the_six_kpis_the_pipeline_writes(chain):
    with chain.connect() as connection:
        keys = connection.scalar(sa.text(
            "SELECT array_agg(DISTINCT key ORDER BY key) FROM weekly_kpi, jsonb_object_keys(kpis) AS key"
        ))
    assert {"I_t", "E_t", "R_t", "A_t", "P", "S"} <= set(keys)
    assert not {"improvement", "efficiency", "recovery", "engagement", "goal_probability", "churn_risk"} & set(keys)


def test_the_recent_theta_queries_see_the_calibration_of_now(chain):
    last_hour = run(chain, ONLINE_LAST_HOUR)
    per_day = run(chain, ONLINE_PER_DAY)
    assert last_hour and all(row["theta"] is not None and row["se"] > 0 for row in last_hour)
    today = datetime.now(timezone.utc).date()
    assert per_day[0]["date"] == today and per_day[0]["updates"] >= len(last_hour)
    assert per_day[0]["unique_users"] >= len({row["user_id"] for row in last_hour})


def test_the_recent_theta_queries_return_the_online_updates(chain):
    with chain.connect() as connection:
        online = connection.execute(sa.text(
            "SELECT user_id, theta, se, version, fitted_at FROM mirt_ability WHERE source = 'online'")).all()
    assert len(online) == 5
    last_hour = {(row["user_id"], row["version"]): row for row in run(chain, ONLINE_LAST_HOUR)}
    for row in online:  # each update among the last hour's, with its figures; its version says "online"
        shown = last_hour[(row.user_id, row.version)]
        assert row.version.startswith("online:") and (shown["theta"], shown["se"], shown["fitted_at"]) == (
            row.theta, row.se, row.fitted_at)
        assert shown["se"] > 0
    per_day = {row["date"]: row for row in run(chain, ONLINE_PER_DAY)}
    for day in {row.fitted_at.astimezone(timezone.utc).date() for row in online}:  # UTC sessions
        on_day = [row for row in online if row.fitted_at.astimezone(timezone.utc).date() == day]
        assert per_day[day]["updates"] >= len(on_day) and per_day[day]["unique_users"] >= len(on_day)


@pytest.fixture(scope="module")
def reports(chain, tmp_path_factory):
    """Last full week's reports of a handful of students (one chunk of 40), in a local store."""
    week = iso_monday(datetime.now(timezone.utc).date()) - timedelta(days=7)
    store = LocalStore(tmp_path_factory.mktemp("object-store"))
    result = render_week(chain, store, week, datetime.now(timezone.utc).date(), chunk_count=40, chunks=[0],
                         thumbnail=False)
    assert result.reports_written >= 5 and not result.failures
    return week, result


def test_the_report_queries_return_the_weeks_reports(chain, reports):
    week, result = reports
    rows = run(chain, REPORTS)
    assert len(rows) == 10
    assert all(row["week_start"] == week and row["format"] in ("pdf", "html") for row in rows)
    assert all(value is not None for row in rows for value in row.values())
    assert all(row["url"].startswith("file://") and row["file_size_bytes"] > 1000 for row in rows)
    (per_week,) = run(chain, REPORTS_PER_WEEK)
    assert per_week == {"week_start": week, "users_with_report": result.reports_written,
                        "total_reports": 2 * result.reports_written}
