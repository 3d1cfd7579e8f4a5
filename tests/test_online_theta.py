"""Online θ: the session_completed sensor (its cursor) and the online update it launches, against a
real PostgreSQL and a real Dagster instance (the local dagster.yaml's queue, storage in PostgreSQL)."""

from __future__ import annotations

import importlib
import json
import logging
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import SensorInstigatorData, TickStatus
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.sensor import execute_sensor_iteration

import assets.online_theta
from assets.online_theta import online_theta_job, session_completed
from factories import insert_results, question, result
from resources.warehouse import WarehouseResource
from seedtest_pipeline import irt, online_theta, settings
from seedtest_pipeline.online_theta import SessionCursor, poll_completed_sessions, update_online_theta
from test_run_safety import instance_config

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def instance(database_url, tmp_path_factory):
    """The local instance's configuration (queue, pools, launcher) on a PostgreSQL storage."""
    with dg.DagsterInstance.from_config(str(_home(database_url, tmp_path_factory))) as instance:
        yield instance


def _home(database_url, tmp_path_factory) -> Path:
    import yaml

    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(database_url)))
    return home


def tick(instance, database_url, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"warehouse": WarehouseResource(database_url=database_url)})
    return session_completed(context)


def now_db(engine) -> datetime:
    with engine.connect() as connection:
        return connection.scalar(sa.text("SELECT now()"))


def requested_users(result) -> list[str]:
    (request,) = result.run_requests
    return request.run_config["ops"]["update_online_theta"]["config"]["user_ids"]


# --- the sensor -------------------------------------------------------------------------------


def test_new_sessions_give_one_run_request_then_nothing_new_is_a_skip(engine, instance, database_url):
    now = now_db(engine)
    insert_results(engine, [result(f"u-{n}", now - timedelta(seconds=20 + n), [question(1001)]) for n in range(3)]
                   + [result("u-0", now - timedelta(seconds=5), [question(1002)])])
    first = tick(instance, database_url)
    (request,) = first.run_requests
    assert requested_users(first) == ["u-0", "u-1", "u-2"]  # one run for the batch, each student once
    assert request.tags["seedtest/sessions"] == "4"
    config = request.run_config["ops"]["update_online_theta"]["config"]
    assert config["as_of"] == f"{now - timedelta(seconds=5):%Y-%m-%dT%H:%M:%S.%fZ}"  # the latest completion
    cursor = json.loads(first.cursor)
    assert sum(len(ids) for ids in cursor["seen"].values()) == 4  # in the last minutes: kept against late commits

    again = tick(instance, database_url, first.cursor)
    assert not again.run_requests and "no session completed" in again.skip_reason.skip_message
    # The same tick evaluated twice asks for the same run: Dagster launches a run key once.
    assert tick(instance, database_url).run_requests[0].run_key == request.run_key


def test_a_session_whose_updated_at_moved_is_taken_again(engine, instance, database_url):
    now = now_db(engine)
    session = result("u-moved", now - timedelta(seconds=30), [question(1001)])
    insert_results(engine, [session])
    first = tick(instance, database_url)
    assert requested_users(first) == ["u-moved"]
    with engine.begin() as connection:  # re-graded: the platform sets updated_at again
        connection.execute(sa.text("UPDATE exam_results SET updated_at = now() WHERE id = CAST(:id AS uuid)"),
                           {"id": session["id"]})
        connection.execute(sa.text("UPDATE exam_results SET status = 'graded' WHERE id <> CAST(:id AS uuid)"),
                           {"id": session["id"]})  # rewritten without moving updated_at: nothing new
    second = tick(instance, database_url, first.cursor)
    assert requested_users(second) == ["u-moved"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_row_that_commits_late_with_an_earlier_completion_time_is_still_taken(engine, instance, database_url):
    """`updated_at DEFAULT now()` is the start of the writer's transaction: a slow transaction
    commits its row after later rows were committed and seen."""
    slow = engine.connect()
    try:
        transaction = slow.begin()
        slow.execute(sa.text("INSERT INTO exam_results (session_id, user_id, result_json) "
                             "VALUES ('s-slow', 'u-slow', CAST(:q AS jsonb))"),
                     {"q": json.dumps({"questions": [question(1001)]})})
        insert_results(engine, [result("u-fast", now_db(engine), [question(1001)])])  # later, committed first
        first = tick(instance, database_url)
        assert requested_users(first) == ["u-fast"]
        transaction.commit()  # completed_at is earlier than u-fast's
    finally:
        slow.close()
    second = tick(instance, database_url, first.cursor)
    assert requested_users(second) == ["u-slow"]
    assert isinstance(tick(instance, database_url, second.cursor).skip_reason, dg.SkipReason)


def test_hostile_rows_never_break_a_tick(engine, instance, database_url):
    now = now_db(engine)
    insert_results(engine, [result("x" * 3000, now - timedelta(seconds=3), [question(1001)]),
                            result("   ", now - timedelta(seconds=2), [question(1001)])])
    with engine.begin() as connection:  # valid in PostgreSQL, not as Python datetimes
        connection.execute(sa.text(
            "INSERT INTO exam_results (session_id, user_id, result_json, created_at, updated_at) VALUES "
            "('s-inf', 'u-inf', '{}', 'infinity', 'infinity'), ('s-12000', 'u-inf', '{}', '12000-01-01', '12000-01-01'),"
            "('s-minus-inf', 'u-inf', '{}', '-infinity', '-infinity')"))
    first = tick(instance, database_url)
    assert not first.run_requests and "none with a user id that can be credited" in first.skip_reason.skip_message
    assert "2 sessions" in first.skip_reason.skip_message  # never the ones dated infinity or year 12000


def test_a_cut_batch_delivers_every_session_exactly_once(engine):
    now = now_db(engine)
    # Four sessions share one completion time (one transaction), then a burst of distinct ones.
    insert_results(engine, [result(f"u-same-{n}", now - timedelta(seconds=40), [question(1001)]) for n in range(4)]
                   + [result(f"u-{n}", now - timedelta(seconds=30 - n), [question(1001)]) for n in range(7)])
    taken, cursor = [], None
    for _ in range(10):
        with engine.begin() as connection:
            poll = poll_completed_sessions(connection, cursor, max_sessions=3)
        taken += [s.result_id for s in poll.sessions]
        cursor = SessionCursor.from_text(poll.cursor.to_text())  # through text, as Dagster stores it
    assert len(taken) == len(set(taken)) == 11


def test_a_replayed_tick_launches_no_second_run(engine, database_url, tmp_path_factory, monkeypatch):
    """Through the sensor daemon's own code path: the tick's run is queued once; the same tick
    evaluated again (a daemon that died before it saved the cursor) finds the run of its key."""
    insert_results(engine, [result("u-replay", now_db(engine) - timedelta(seconds=10), [question(1001)])])
    monkeypatch.setenv("DATABASE_URL", database_url)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(HERE / "online_theta_location.py"), attribute="defs",
                             working_directory=str(HERE.parent)), location_name="online_theta_test")
    logger = logging.getLogger("test")
    with dg.DagsterInstance.from_config(str(_home(database_url, tmp_path_factory))) as instance, \
            create_test_daemon_workspace_context(InProcessTestWorkspaceLoadTarget(origin), instance) as workspace:
        list(execute_sensor_iteration(workspace, logger, None, None))
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.QUEUED and run.tags["seedtest/work"] == "online_theta"
        (state,) = [s for s in instance.all_instigator_state() if s.name == "session_completed"]
        assert state.instigator_data.cursor
        instance.update_instigator_state(state.with_data(SensorInstigatorData(
            last_tick_timestamp=None, min_interval=state.instigator_data.min_interval, cursor=None,
            sensor_type=state.instigator_data.sensor_type)))
        list(execute_sensor_iteration(workspace, logger, None, None))
        assert [r.run_id for r in instance.get_runs()] == [run.run_id]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        assert [t.status for t in ticks] == [TickStatus.SKIPPED, TickStatus.SUCCESS]
        assert ticks[0].run_keys == [run.tags[RUN_KEY_TAG]]


def test_the_sensors_default_status_is_the_enable_setting(monkeypatch):
    assert settings.online_update_enabled({}) is True
    assert settings.online_update_enabled({"ENABLE_IRT_ONLINE_UPDATE": " Off "}) is False
    with pytest.raises(settings.SettingsError, match="ENABLE_IRT_ONLINE_UPDATE: 'maybe'"):
        settings.online_update_enabled({"ENABLE_IRT_ONLINE_UPDATE": "maybe"})
    monkeypatch.setenv("ENABLE_IRT_ONLINE_UPDATE", "false")
    try:
        assert importlib.reload(assets.online_theta).session_completed.default_status == dg.DefaultSensorStatus.STOPPED
    finally:
        monkeypatch.delenv("ENABLE_IRT_ONLINE_UPDATE")
        importlib.reload(assets.online_theta)
    assert session_completed.default_status == dg.DefaultSensorStatus.RUNNING


# --- the update -------------------------------------------------------------------------------

ITEMS = {"1001": (1.2, -0.5, 0.0), "1002": (0.8, 0.3, 0.0), "1003": (1.5, 1.0, 0.0), "1004": (1.0, 0.0, 0.0)}
STUDENT = "3f2b8c1e-7d4a-4e6b-9c0d-1a2b3c4d5e6f"


def calibrate_by_hand(engine, fitted_at: datetime, adequate=True) -> str:
    """A stored calibration with known items, as the calibration writes it."""
    calibration_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO mirt_fit_meta (calibration_id, model, spec, metrics, linking, fitted_at) VALUES "
            "(CAST(:id AS uuid), '2PL', '{}', CAST(:metrics AS jsonb), '{}', :at)"),
            {"id": calibration_id, "at": fitted_at,
             "metrics": json.dumps({"run_at": fitted_at.isoformat(), "gate": {"adequate": adequate, "reasons": []}})})
        connection.execute(sa.text(
            "INSERT INTO mirt_item_params (calibration_id, item_id, model, params, version, fitted_at) VALUES "
            "(CAST(:id AS uuid), :item, '2PL', CAST(:params AS jsonb), 'v-test', :at)"),
            [{"id": calibration_id, "item": item, "at": fitted_at,
              "params": json.dumps({"a": a, "b": b, "c": c})} for item, (a, b, c) in ITEMS.items()])
    return calibration_id


def known_batch(engine, now: datetime) -> dict:
    """A student answering calibrated items, an item without parameters and an item twice, in
    sessions inside the 30-day window (one under an upper-case spelling of the uuid) and one
    outside it; a student whose only answers are to an item without parameters; one whose only
    session is older than the window."""
    insert_results(engine, [
        result(STUDENT, now - timedelta(days=40), [question(1004, correct=False)]),  # outside the window
        result(STUDENT, now - timedelta(days=10), [question(1001), question(1002, correct=False), question(9999)]),
        result(STUDENT.upper(), now - timedelta(days=3), [question(1003, correct=False), question(1001, correct=False)]),
        result(STUDENT, now - timedelta(hours=2), [question(1004), question(1002)]),
        result("u-uncalibrated", now - timedelta(hours=1), [question(9999), question(9998, correct=False)]),
        result("u-gone", now - timedelta(days=31), [question(1001)]),
    ])
    # The engine on the same data: first answer per item in the window, items with parameters.
    responses = irt.Responses.from_arrays([STUDENT] * 4, ["1001", "1002", "1003", "1004"], [1, 0, 0, 1])
    items = irt.ItemParams(np.array(list(ITEMS), dtype=object), *(np.array([v[k] for v in ITEMS.values()]) for k in range(3)),
                           "2PL")
    return {"expected": irt.eap(responses, items), "latest": now - timedelta(hours=2)}


def test_a_known_batch_writes_exactly_the_expected_rows_with_the_engines_theta(engine):
    now = now_db(engine)
    calibration_id = calibrate_by_hand(engine, now - timedelta(days=1))
    batch = known_batch(engine, now)
    requested = [STUDENT, STUDENT.upper(), "u-uncalibrated", "u-gone", "x" * 3000, "u-never-seen"]
    with engine.begin() as connection:
        outcome = update_online_theta(connection, requested)
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT user_id, theta, se, model, version, source, calibration_id::text, fitted_at FROM mirt_ability")).all()
    (row,) = rows  # one student, one row, however their id was spelled
    expected = batch["expected"]
    assert row.user_id == STUDENT and row.source == "online" and row.model == "2PL"
    # The engine sums in float32: the same answers in another order agree to ~1e-7.
    assert row.theta == pytest.approx(expected.theta[0], abs=1e-6) and row.se == pytest.approx(expected.se[0], abs=1e-6)
    assert row.se > 0 and row.version == "online:v-test" and row.calibration_id == calibration_id
    assert row.fitted_at == batch["latest"]  # the latest session included

    by_request = {u.requested[:40]: u for u in outcome.users}
    assert by_request[STUDENT].answers == 5 and by_request[STUDENT].skipped == 1  # 9999 has no parameters
    assert by_request[STUDENT.upper()].user_id == STUDENT and by_request[STUDENT.upper()].theta == row.theta
    assert by_request["u-uncalibrated"].theta is None and "no answer to an item" in by_request["u-uncalibrated"].reason
    assert by_request["u-gone"].reason == online_theta.NO_ATTEMPTS
    assert by_request["x" * 40].reason == online_theta.NOT_CREDITABLE
    assert (outcome.rows_written, outcome.without_usable_attempt, outcome.answers_skipped) == (1, 3, 3)
    assert outcome.items_skipped == ("9998", "9999")


def test_before_any_calibration_the_run_finishes_cleanly_and_says_why(engine, instance, database_url):
    insert_results(engine, [result("u-1", now_db(engine) - timedelta(hours=1), [question(1001)])])
    run = online_theta_job.execute_in_process(
        run_config={"ops": {"update_online_theta": {"config": {"user_ids": ["u-1"]}}}}, instance=instance,
        resources={"warehouse": WarehouseResource(database_url=database_url)})
    assert run.success
    (output,) = [e for e in run.all_node_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    assert "no 2PL calibration yet" in output.event_specific_data.metadata["outcome"].value
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM mirt_ability")) == 0


def test_a_run_by_hand_shows_each_requested_users_theta_or_why_not(engine, instance, database_url):
    now = now_db(engine)
    calibrate_by_hand(engine, now - timedelta(days=1), adequate=False)
    known_batch(engine, now)
    run = online_theta_job.execute_in_process(
        run_config={"ops": {"update_online_theta": {"config": {"user_ids": [STUDENT.upper(), "u-gone"],
                                                                "lookback_days": 30, "model": "2PL"}}}},
        instance=instance, resources={"warehouse": WarehouseResource(database_url=database_url)})
    (output,) = [e for e in run.all_node_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    metadata = output.event_specific_data.metadata
    table = metadata["users"].value
    assert f"| {STUDENT.upper()} | {STUDENT} |" in table and "| u-gone |" in table and "no attempt in the window" in table
    assert metadata["rows_written"].value == 1 and "below the quality gate" in metadata["calibration"].value
    (observation,) = [e for e in run.all_node_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    assert observation.asset_key == dg.AssetKey("mirt_ability")
    with pytest.raises(dg.DagsterInvalidConfigError):  # the Launchpad asks for the user ids
        online_theta_job.execute_in_process(instance=instance,
                                            resources={"warehouse": WarehouseResource(database_url=database_url)})


def test_the_online_job_is_one_work_in_its_own_pool():
    from seedtest_pipeline.definitions import defs

    job = defs.resolve_job_def("online_theta_update")
    assert job.tags["seedtest/work"] == "online_theta" and job.owners == ["team:psychometrics"]
    assert {node.pool for node in job.graph.node_defs} == {"online_theta"}
    sensor = defs.resolve_sensor_def("session_completed")
    assert sensor.job_name == "online_theta_update" and sensor.minimum_interval_seconds <= 15
