"""The weekly reports as steps: one step per chunk of students, values handed on through the object
store (a real S3 API server), and two runs of the same week that never overlap although the chunk
pool admits several steps at once."""

import json
import threading
import time
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from factories import start_s3_server
from assets.reports import weekly_reports
from resources.object_store import ObjectStoreResource
from resources.step_outputs import StepOutputsIOManager
from resources.warehouse import WarehouseResource
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.pools import earlier_running_runs

WEEK = date(2026, 6, 8)
STUDENTS = [f"u-{n}" for n in range(6)]


@pytest.fixture
def week_students(engine):
    with engine.begin() as connection:
        for user_id in STUDENTS:
            connection.execute(sa.text("INSERT INTO weekly_kpi (user_id, week_start, kpis) "
                                       "VALUES (:u, :w, CAST(:k AS jsonb))"),
                               {"u": user_id, "w": WEEK, "k": json.dumps({"I_t": 0.1, "S": 0.2})})
    return engine


@pytest.fixture
def s3(monkeypatch):
    server = start_s3_server(monkeypatch)
    yield server.endpoint, server.client
    server.stop()


def config(chunk_count: int, **more) -> dict:
    return {"ops": {"weekly_reports": {"config": {"chunk_count": chunk_count, "thumbnail": False, **more}}}}


def test_each_chunk_is_a_step_and_steps_hand_values_on_through_s3(week_students, database_url, s3):
    endpoint, client = s3
    store = ObjectStoreResource(bucket="reports", endpoint_url=endpoint, max_attempts=2)
    resources = {"warehouse": WarehouseResource(database_url=database_url), "object_store": store,
                 "io_manager": StepOutputsIOManager(object_store=store)}
    with dg.instance_for_test() as instance:
        run = dg.materialize([weekly_reports], resources=resources, instance=instance, partition_key=str(WEEK),
                             run_config=config(3))
    assert run.success
    started = [e.step_key for e in run.all_events if e.event_type_value == "STEP_START"]
    assert sorted(started) == ["weekly_reports.plan_report_chunks", "weekly_reports.record_weekly_reports",
                               *[f"weekly_reports.render_report_chunk[chunk_{n}]" for n in range(3)]]
    (materialization,) = run.asset_materializations_for_node("weekly_reports")
    assert materialization.metadata["reports_written"].value == len(STUDENTS)
    assert materialization.metadata["chunks"].value == "0, 1, 2 of 3"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="reports")["Contents"]}
    steps = {key for key in keys if key.startswith(f"dagster-steps/{run.run_id}/")}
    assert {key.split("/")[2] for key in steps} == {"weekly_reports.plan_report_chunks",
                                                    *[f"weekly_reports.render_report_chunk[chunk_{n}]" for n in range(3)]}
    assert len(keys - steps) == 2 * len(STUDENTS)  # and the reports themselves


def report_run_event(instance: dg.DagsterInstance, run: dg.DagsterRun, event_type: dg.DagsterEventType) -> None:
    instance.report_dagster_event(dg.DagsterEvent(event_type.value, job_name=run.job_name), run.run_id)


def test_a_second_run_of_the_same_week_waits_for_the_first(week_students, database_url, tmp_path):
    resources = {"warehouse": WarehouseResource(database_url=database_url),
                 "object_store": ObjectStoreResource(local_dir=str(tmp_path / "store"))}
    job = defs.resolve_job_def("render_weekly_reports")
    with dg.instance_for_test() as instance:
        # A run of the same week that started first and is still rendering (launched elsewhere).
        first = instance.create_run_for_job(job, run_config=config(2), tags={"dagster/partition": str(WEEK)})
        report_run_event(instance, first, dg.DagsterEventType.RUN_START)
        other_week = instance.create_run_for_job(job, run_config=config(2), tags={"dagster/partition": "2026-06-15"})
        report_run_event(instance, other_week, dg.DagsterEventType.RUN_START)
        second: dict = {}

        def launch_second():
            second["result"] = dg.materialize([weekly_reports], resources=resources, instance=instance,
                                              partition_key=str(WEEK), run_config=config(2, wait_poll_seconds=0.05))

        thread = threading.Thread(target=launch_second)
        thread.start()
        time.sleep(2.0)
        assert thread.is_alive(), "the second run did not wait"
        (waiting,) = [r for r in instance.get_runs() if r.run_id not in (first.run_id, other_week.run_id)]
        assert [r.run_id for r in earlier_running_runs(instance, waiting, "weekly_reports.", str(WEEK))] == [
            first.run_id]  # not the other week's run
        chunk_starts = [e for e in instance.all_logs(waiting.run_id)
                        if e.step_key and "render_report_chunk" in e.step_key]
        assert chunk_starts == []
        report_run_event(instance, first, dg.DagsterEventType.RUN_SUCCESS)
        finished = time.time()
        thread.join(timeout=120)
        result = second["result"]
        assert result.success
        logs = instance.all_logs(result.run_id)
        assert f"waiting for 1 earlier run(s) of {WEEK} to finish: {first.run_id}" in [e.user_message for e in logs]
        first_chunk = min(e.timestamp for e in logs if e.step_key and "render_report_chunk" in e.step_key)
        assert first_chunk >= finished - 0.5  # nothing rendered before the first run ended
