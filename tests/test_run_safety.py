"""Runs on a real instance (PostgreSQL storage, the local dagster.yaml's queue, pools and
launcher): two runs of the same work never overlap whatever launched them, and a killed run worker
is noticed, failed and its slots freed."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from factories import insert_results, question, result, utc
from seedtest_pipeline import warehouse
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.local import project_dir
from seedtest_pipeline.local_launcher import LocalRunLauncher
from seedtest_pipeline.pools import POOL_LIMITS, initialize_pools, project_pools


def instance_config(database_url: str) -> dict:
    """The local instance's configuration (dagster.yaml: queue, pools, launcher, run monitoring),
    with its storage in a PostgreSQL database of its own."""
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    warehouse.create_database_if_missing(database_url, name)
    config = yaml.safe_load((project_dir() / "dagster.yaml").read_text())
    config["storage"] = {"postgres": {"postgres_url": warehouse.with_driver(
        warehouse.with_database(database_url, name), "psycopg2")}}
    for key in ("local_artifact_storage", "compute_logs"):
        config.pop(key, None)
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    return config


@pytest.fixture
def instance_home(database_url, tmp_path):
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_config(database_url)))
    return tmp_path


@pytest.fixture
def instance(instance_home):
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        yield instance


# Each launch path in a process of its own, as run workers are (two runs in one process would share
# its logging setup).
LAUNCH = """
import sys
import dagster as dg
from assets.features import features_topic_daily
from resources.warehouse import WarehouseResource
from seedtest_pipeline.jobs import features_daily_job

path, database_url, day = sys.argv[1:]
resources = {"warehouse": WarehouseResource(database_url=database_url)}
instance = dg.DagsterInstance.get()
if path == "named_job":
    job = dg.Definitions(assets=[features_topic_daily], jobs=[features_daily_job], resources=resources).resolve_job_def(
        "features_daily")
    outcome = job.execute_in_process(instance=instance, partition_key=day)
else:  # what Materialize in the asset graph and backfills run: the implicit asset job
    outcome = dg.materialize([features_topic_daily], instance=instance, partition_key=day, resources=resources)
print(outcome.run_id)
"""


def step_intervals(instance, run_ids) -> list[tuple[float, float]]:
    intervals = []
    for run_id in run_ids:
        events = instance.all_logs(run_id)
        start = min(e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START)
        end = max(e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS)
        intervals.append((start, end))
    return sorted(intervals)


def test_the_local_instance_limits_every_pool_to_one_step_at_a_time(instance):
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    pools = project_pools(defs)
    assert {"features_topic_daily", "weekly_kpi", "attempt_view", "irt_calibration", "weekly_reports"} <= pools
    assert set(initialize_pools(instance, pools)) == pools and initialize_pools(instance, pools) == []
    # One step at a time, except the pools of POOL_LIMITS (the reports' chunk steps).
    expected = {**dict.fromkeys(pools, 1), **POOL_LIMITS}
    assert {limit.name: limit.limit for limit in instance.event_log_storage.get_pool_limits()} == expected


def test_the_same_partition_through_two_launch_paths_never_overlaps(instance, instance_home, engine, database_url):
    """The named job and the asset graph's implicit job (what Materialize and backfills run),
    started at the same moment for the same day: the second step waits for the first's pool slot."""
    insert_results(engine, [result(f"u-{u}", utc(2026, 10, 5, 9 + u % 10), [question(i) for i in range(12)])
                            for u in range(600)])
    assert "features_topic_daily" in initialize_pools(instance, project_pools(defs))  # as `ui` and `demo` do
    env = {**os.environ, "DAGSTER_HOME": str(instance_home)}
    launches = [
        subprocess.Popen([sys.executable, "-c", LAUNCH, path, database_url, "2026-10-05"], cwd=project_dir(),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in ("named_job", "asset_graph")
    ]
    run_ids = []
    for launch in launches:
        out, err = launch.communicate(timeout=300)
        assert launch.returncode == 0, err[-3000:]
        run_ids.append(out.strip().splitlines()[-1])
    (first_start, first_end), (second_start, second_end) = step_intervals(instance, run_ids)
    assert second_start >= first_end, "the two steps of the same work overlapped"
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT sum(attempts) FROM features_topic_daily")) == 600 * 12


def test_a_killed_run_worker_fails_its_run_and_frees_its_slot(instance):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        run = create_run_for_test(instance, job_name="features_daily", status=DagsterRunStatus.STARTED,
                                  tags={"seedtest/work": "features_daily"})
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run,
                                     EngineEventData.in_process(worker.pid))
        instance.event_log_storage.claim_concurrency_slot("features_topic_daily", run.run_id, "features_topic_daily")
        logger = logging.getLogger("test")
        record = instance.get_run_record_by_id(run.run_id)

        monitor_started_run(instance, None, record, logger)  # alive: left alone
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

        worker.send_signal(signal.SIGKILL)
        worker.wait()
        monitor_started_run(instance, None, instance.get_run_record_by_id(run.run_id), logger)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE

        time.sleep(2.1)  # free_slots_after_run_end_seconds = 1
        list(execute_concurrency_slots_iteration(SimpleNamespace(instance=instance), logger))
        assert instance.event_log_storage.get_concurrency_info("features_topic_daily").claimed_slots == []
    finally:
        worker.kill()


def test_a_pid_taken_by_a_process_younger_than_the_run_is_not_its_worker(instance):
    run = create_run_for_test(instance, job_name="features_daily", status=DagsterRunStatus.STARTED)
    time.sleep(1.5)  # the kernel's boot-time clock counts whole seconds
    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tagged = create_run_for_test(instance, job_name="features_daily", status=DagsterRunStatus.STARTED,
                                     tags={"seedtest/pid": str(younger.pid)})
        # Tagged by the process that executes it, which existed when the run was created.
        assert instance.run_launcher.check_run_worker_health(tagged).status.value == "RUNNING"
        # The same pid on a run created before that process started: the pid was reused.
        instance.add_run_tags(run.run_id, {"seedtest/pid": str(younger.pid)})
        health = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
        assert health.status.value == "FAILED" and "gone" in health.msg
    finally:
        younger.kill()
        younger.wait()
