"""user_inactivity (SPEC §7): who is inactive on a day, at the edges of the threshold and of the
90-day horizon, through the row rules and the one user key; idempotent; as a Dagster asset."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pydantic
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.inactivity import user_inactivity
from factories import insert_results, question, result, utc
from resources.warehouse import WarehouseResource
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.inactivity import summarise_day, write_inactivity
from seedtest_pipeline.windows import DayRange

DAY = date(2026, 10, 31)  # D
UUID = "5d3c0f2e-8a41-4b7e-9f06-2c1d3e4f5a6b"


def at(days_before: int, hour: int = 12, minute: int = 0):
    day = DAY - timedelta(days=days_before)
    return utc(day.year, day.month, day.day, hour, minute)


def rows(engine, day=DAY) -> dict[str, dict]:
    with engine.connect() as connection:
        return {row.user_id: dict(row._mapping) for row in connection.execute(
            sa.text("SELECT * FROM user_inactivity WHERE day = :day"), {"day": day})}


def write(engine, days=DayRange(DAY, DAY + timedelta(days=1)), threshold=7):
    with engine.begin() as connection:
        return write_inactivity(connection, days, threshold)


@pytest.fixture
def edges(engine):
    """One user per distance of the last activity from D, plus the cases the row rules decide."""
    insert_results(engine, [
        *(result(f"u-{k}", at(k), [question(1)]) for k in (0, 6, 7, 8, 89, 90, 91)),
        # Late on D - 8 and early on D - 7 (UTC days, not 24-hour spans).
        result("u-late-8", at(8, 23, 59), [question(1)]),
        result("u-early-7", at(7, 0, 1), [question(1)]),
        # Last activity on D - 20 at 09:00 and 16:30; an unreadable session on D - 3 is no activity.
        result("u-rules", at(20, 9), [question(1)]),
        result("u-rules", at(20, 16, 30), [question(2), question(3)]),
        result("u-rules", at(3), [{"question_id": "not-a-number", "is_correct": True}]),
        result("u-rules", at(55), [question(1)]),  # inside the 56 days: counted
        result("u-rules", at(56), [question(1)]),  # the 57th day before: not counted
        # One student under two spellings of a uuid: the upper-case one is the latest.
        result(UUID, at(30), [question(1)]),
        result(UUID.upper(), at(12), [question(1)]),
        # Active after D: D itself is what counts, so inactive on D.
        result("u-came-back", at(10), [question(1)]),
        result("u-came-back", at(-1), [question(1)]),
        # Nobody can be credited with these; they must not break the day either.
        result("x" * 3000, at(9), [question(1)]),
        result("  ", at(9), [question(1)]),
    ])
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO exam_results (session_id, user_id, result_json, created_at, updated_at) VALUES "
            "('s-inf', 'u-inf', '{\"questions\": [{\"question_id\": 1}]}', 'infinity', 'infinity')"))
    return engine


def test_the_threshold_and_the_horizon_edges_land_where_spec_7_says(edges):
    write(edges)
    found = rows(edges)
    # more than N = 7 days before D, and within the 90 days ending at D (at most 89 days before).
    assert {u: r["days_inactive"] for u, r in found.items() if u.startswith("u-") and u[2:].isdigit()} == {
        "u-8": 8, "u-89": 89}
    assert "u-late-8" in found and "u-early-7" not in found
    assert found["u-8"]["last_activity_at"] == at(8) and found["u-8"]["threshold_days"] == 7


def test_activity_goes_through_the_row_rules_and_the_one_user_key(edges):
    write(edges)
    found = rows(edges)
    rules = found["u-rules"]
    assert (rules["days_inactive"], rules["last_activity_at"], rules["sessions_56d"]) == (20, at(20, 16, 30), 3)
    assert found[UUID]["days_inactive"] == 12 and UUID.upper() not in found
    assert found["u-came-back"]["days_inactive"] == 10
    assert not [user for user in found if not user.startswith("u-") and user != UUID]  # no blank or over-long ids


def test_a_day_is_replaced_idempotently_and_follows_the_threshold(edges):
    first = write(edges)
    again = write(edges)
    assert (again.rows_written, again.rows_deleted, again.rows_unchanged) == (0, 0, first.rows_written)
    strict = write(edges, threshold=10)
    assert "u-8" not in rows(edges) and rows(edges)["u-rules"]["threshold_days"] == 10
    assert strict.rows_unchanged == 0 and strict.rows_deleted == first.rows_written
    with edges.connect() as connection:
        summary = summarise_day(connection, DAY, 10)
    # days_inactive 11 is the day's newly inactive user (the upper-case uuid was 12, u-came-back 10).
    assert summary.inactive == len(rows(edges)) and summary.newly_inactive == 0
    assert sum(n for _, n in summary.histogram) == summary.inactive and summary.histogram[0][0] == "11-14"


def test_a_backfill_is_one_run_and_each_day_stands_alone(engine, database_url):
    insert_results(engine, [result("u-a", at(10), [question(1)]), result("u-b", at(8), [question(1)])])
    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    with dg.instance_for_test() as instance:
        run = dg.materialize([user_inactivity], resources=resources, instance=instance, tags={
            ASSET_PARTITION_RANGE_START_TAG: str(DAY - timedelta(days=2)), ASSET_PARTITION_RANGE_END_TAG: str(DAY)})
        materializations = run.asset_materializations_for_node("user_inactivity")
        assert len(materializations) == 3  # one run, one materialisation per day
        metadata = materializations[-1].metadata
        assert metadata["users_inactive"].value == 2 and metadata["users_newly_inactive"].value == 1  # u-b, 8 days
        assert metadata["dagster/partition_row_count"].value == 1 + 1 + 2  # D-1: u-b 7 days, not more
        assert "| u-b | 8 |" in metadata["preview"].value and "| 8-14 | 2 |" in metadata["days_inactive_histogram"].value
        with pytest.raises(pydantic.ValidationError, match="threshold_days"):  # no one could ever be inactive
            dg.materialize([user_inactivity], resources=resources, instance=instance, partition_key=str(DAY),
                           run_config={"ops": {"user_inactivity": {"config": {"threshold_days": 95}}}})
    assert set(rows(engine, DAY - timedelta(days=2))) == {"u-a"}


def test_inactivity_runs_daily_at_0500_for_the_day_that_ended():
    schedule = defs.resolve_schedule_def("user_inactivity_0500")
    assert schedule.cron_schedule == "0 5 * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=utc(2026, 11, 23, 5))
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-22"
    job = defs.resolve_job_def("user_inactivity_daily")
    assert job.tags["seedtest/work"] == "user_inactivity" and job.owners == ["team:data-platform"]
    (spec,) = user_inactivity.specs_by_key.values()
    assert spec.owners == ["team:data-platform"] and spec.tags["stage"] == "inactivity"
    assert user_inactivity.op.pool == "user_inactivity"
    assert spec.metadata["dagster/table_name"] == "user_inactivity"
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get(dg.AssetKey("user_inactivity")).parent_keys} == {
        "attempt"}
