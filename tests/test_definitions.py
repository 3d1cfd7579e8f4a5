"""The Dagster layer: definitions load, lineage, schedules, the sensor, and real materialisations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.attempt import attempt
from assets.features import features_topic_daily
from assets.kpi import weekly_kpi
from assets.source import exam_results_observer
from factories import insert_results, question, result, utc
from resources.warehouse import WarehouseResource
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.jobs import weekly_kpi_schedule


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_lineage_follows_what_each_asset_reads():
    graph = defs.resolve_asset_graph()
    parents = lambda key: {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}  # noqa: E731
    assert parents("attempt") == {"exam_results"}
    assert parents("features_topic_daily") == {"attempt"}
    assert parents("weekly_kpi") == {"attempt", "features_topic_daily", "mirt_ability"}
    for table in ("mirt_fit_meta", "mirt_item_params", "mirt_ability"):
        assert parents(table) == {"attempt"}


@pytest.mark.parametrize(
    ("now", "expected_week"),
    [
        (datetime(2026, 11, 23, 2, 10, tzinfo=timezone.utc), "2026-11-16"),  # Monday: the week just ended
        (datetime(2026, 11, 25, 2, 10, tzinfo=timezone.utc), "2026-11-23"),  # Wednesday: the running week
    ],
)
def test_kpi_schedule_refreshes_the_week_of_yesterday(now, expected_week):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=now)
        request = weekly_kpi_schedule(context)
    assert request.partition_key == expected_week


def test_features_schedule_runs_yesterday_at_0115():
    features_schedule = defs.resolve_schedule_def("features_daily_0115")
    assert features_schedule.cron_schedule == "15 1 * * *"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 23, 1, 15, tzinfo=timezone.utc)
        )
        (request,) = features_schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-22"


def test_observer_survives_any_timestamp_and_records_only_changes(engine, database_url):
    now = datetime.now(timezone.utc)
    insert_results(engine, [result("u-1", now - timedelta(hours=1), [question(1)])])
    with engine.begin() as connection:  # valid in PostgreSQL, not as a Python datetime
        connection.execute(sa.text(
            "INSERT INTO exam_results (session_id, user_id, result_json, created_at, updated_at) VALUES "
            "('s-inf', 'u-2', '{}', 'infinity', 'infinity'), ('s-12000', 'u-2', '{}', '12000-01-01', '12000-01-01')"))
    warehouse = WarehouseResource(database_url=database_url)
    with dg.instance_for_test() as instance:
        first = exam_results_observer(dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse}))
        (observation,) = first.asset_events
        assert observation.metadata["sessions_last_24h"].value == 1
        assert observation.metadata["sessions_dated_in_the_future"].value == 2
        assert observation.metadata["latest_completed_at"].value.startswith(f"{now - timedelta(hours=1):%Y-%m-%dT%H}")
        again = exam_results_observer(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"warehouse": warehouse})
        )
        assert isinstance(again, dg.SkipReason)
        insert_results(engine, [result("u-3", now, [question(2)])])
        changed = exam_results_observer(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"warehouse": warehouse})
        )
    assert changed.asset_events[0].metadata["sessions_last_24h"].value == 2


def test_the_observer_is_the_automation_of_exam_results():
    sensor = defs.resolve_sensor_def("exam_results_observer")
    assert sensor.asset_selection.resolve(defs.resolve_asset_graph()) == {dg.AssetKey("exam_results")}


def test_the_chain_materialises_with_checks(engine, database_url):
    base = utc(2026, 10, 5, 10)
    insert_results(engine, [
        result(f"u-{u}", base + timedelta(days=d, hours=u), [question(d + u, correct=(d + u) % 3 > 0), question(50 + d)])
        for u in range(4) for d in range(14)
    ] + [
        result("u-0", base, [{"question_id": "q-1"}], session_id="s-malformed-old"),  # outside the check window
        result("u-0", datetime.now(timezone.utc) - timedelta(days=1), [{"question_id": "q-2"}], session_id="s-malformed"),
        result("u-0", datetime.now(timezone.utc) - timedelta(days=2), [question(1)], session_id="s-recent"),
    ])
    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    with dg.instance_for_test() as instance:
        attempt_run = dg.materialize([attempt], resources=resources, instance=instance)
        checks = {e.check_name: e for e in attempt_run.get_asset_check_evaluations()}
        assert {name for name, e in checks.items() if e.passed} == {
            "v1_schema_locked", "student_id_deterministic", "required_columns_not_null", "one_user_id_per_student"}
        assert checks["malformed_input"].metadata["findings"].value == 1  # the last 7 days only
        assert "s-malformed |" in checks["malformed_input"].metadata["by_kind"].value
        (attempt_materialization,) = attempt_run.asset_materializations_for_node("attempt")
        assert attempt_materialization.metadata["attempts_in_check_window"].value == 1

        features_run = dg.materialize(
            [features_topic_daily], resources=resources, instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: "2026-10-05", ASSET_PARTITION_RANGE_END_TAG: "2026-10-18"},
        )
        materializations = features_run.asset_materializations_for_node("features_topic_daily")
        assert len(materializations) == 14  # one per partition of the single run
        materialization = materializations[0]
        assert materialization.metadata["days"].value == 14
        assert materialization.metadata["dagster/partition_row_count"].value == 4 * 14  # a row per user and day
        assert materialization.metadata["attempts"].value == 4 * 14 * 2
        assert len(instance.get_materialized_partitions(dg.AssetKey("features_topic_daily"))) == 14

        kpi_run = dg.materialize([weekly_kpi], resources=resources, instance=instance, partition_key="2026-10-12")
        (check,) = kpi_run.get_asset_check_evaluations()
        assert check.passed
        (materialization,) = kpi_run.asset_materializations_for_node("weekly_kpi")
        assert materialization.metadata["users"].value == 4

        missing = dg.materialize([weekly_kpi], resources=resources, instance=instance, partition_key="2026-10-19")
        (check,) = missing.get_asset_check_evaluations()
        assert not check.passed and "2026-10-19" in check.metadata["missing_days"].value

        # A features run that fails after the week's KPIs were computed: the check no longer passes.
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE features_topic_daily RENAME TO features_gone"))
        try:
            failed = dg.materialize([features_topic_daily], resources=resources, instance=instance,
                                    partition_key="2026-10-13", raise_on_error=False)
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text("ALTER TABLE features_gone RENAME TO features_topic_daily"))
        assert not failed.success
        again = dg.materialize([weekly_kpi], resources=resources, instance=instance, partition_key="2026-10-12")
        (check,) = again.get_asset_check_evaluations()
        assert not check.passed and check.metadata["failed_days"].value == "2026-10-13"

        # A session of a materialised day written after its features: that day is stale.
        insert_results(engine, [result("u-9", base + timedelta(days=9, hours=3), [question(7)])])
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE exam_results SET created_at = now(), updated_at = updated_at "
                                       "WHERE user_id = 'u-9'"))
        stale = dg.materialize([weekly_kpi], resources=resources, instance=instance, partition_key="2026-10-12")
        (check,) = stale.get_asset_check_evaluations()
        assert not check.passed and check.metadata["stale_days"].value == "2026-10-14"


def test_calibration_runs_daily_at_0300_with_its_own_work_tag():
    schedule = defs.resolve_schedule_def("irt_calibration_0300")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    job = defs.resolve_job_def("calibrate_irt")
    assert job.tags["seedtest/work"] == "irt_calibration"
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "mirt_fit_meta", "mirt_item_params", "mirt_ability"
    }


def test_the_ui_command_starts_this_interpreters_dagster_without_the_venv_on_path():
    import os
    import subprocess

    from seedtest_pipeline.cli import dagster_dev_command

    command = dagster_dev_command("127.0.0.1", 3000)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # as `make ui` runs it: the venv not activated
    done = subprocess.run([*command[:4], "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "workspace" in done.stdout


def test_every_schedule_and_sensor_runs_as_soon_as_the_code_location_loads():
    # The CronJobs they replace ran as soon as they were applied (docs/decisions.md).
    assert {s.name for s in defs.schedules} >= {"features_daily_0115", "weekly_kpi_0210", "irt_calibration_0300",
                                                "weekly_reports_0400"}
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in defs.schedules)
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
