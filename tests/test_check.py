"""`seedtest-pipeline check`, the post-deploy smoke test: every check passes on a healthy local
setup, and each kind of failure that can be produced offline gives its one line and exit 1."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from factories import free_port, start_s3_server
from seedtest_pipeline import warehouse
from seedtest_pipeline.check import check_database, check_object_store, check_pools, check_webhook, run_checks
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.pools import POOL_LIMITS, initialize_pools, missing_pool_limits, project_pools
from seedtest_pipeline.reports.store import LocalStore, S3Store
from seedtest_pipeline.settings import load_settings

PROJECT = Path(__file__).resolve().parent.parent
COMMAND = str(Path(sys.executable).parent / "seedtest-pipeline")
PASSWORD = "Pw-s3cret-42"
DEPLOYED = {"SEEDTEST_ENV": "prod", "DATABASE_URL": "postgresql://u@h/seedtest",
            "SEEDTEST_DAGSTER_PG_URL": "postgresql+psycopg2://u@h/dagster", "SEEDTEST_REPORTS_BUCKET": "b",
            "SEEDTEST_UI_BASE_URL": "https://dagster.example"}


def with_password(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{PASSWORD}@{host}"


def statuses(outcomes) -> dict[str, str]:
    return {o.check: o.status for o in outcomes}


def test_the_command_passes_on_a_healthy_local_setup_and_fails_on_a_missing_pool_limit(schema_engine, database_url,
                                                                                      tmp_path):
    """The command as an operator runs it (a fresh Dagster storage database beside the warehouse)."""
    dagster_db = f"dagster_check_{uuid.uuid4().hex[:8]}"
    warehouse.create_database_if_missing(database_url, dagster_db)
    env = {**os.environ, "DATABASE_URL": with_password(database_url), "SEEDTEST_HOME": str(tmp_path),
           "SEEDTEST_DAGSTER_PG_URL": warehouse.with_driver(warehouse.with_database(database_url, dagster_db),
                                                            "psycopg2"),
           "SEEDTEST_ALERT_WEBHOOK_URL": "https://hooks.example/services/T0/B0/t0k3n"}

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([COMMAND, "check"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)

    before = check()  # no pool has its limit in a fresh instance
    assert before.returncode == 1, before.stderr[-2000:]
    lines = before.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok", "ok", "ok", "ok", "ok", "FAIL"]
    assert lines[-2].startswith("FAIL pools: ") and "weekly_reports (no limit)" in lines[-2]
    assert lines[-1] == "check: 1 of 6 failed (pools)"
    pools = subprocess.run([COMMAND, "pools"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert pools.returncode == 0, pools.stderr[-2000:]
    after = check()
    assert after.returncode == 0 and after.stdout.splitlines()[-1] == "check: all 6 passed", after.stdout
    assert ":***@" in after.stdout
    assert PASSWORD not in before.stdout + before.stderr + after.stdout + after.stderr + pools.stdout + pools.stderr



def test_an_unreachable_database_is_one_line_with_the_password_masked():
    url = f"postgresql://reader:{PASSWORD}@127.0.0.1:{free_port()}/seedtest"
    database, migrations, lock = check_database(url)
    assert database.status == "FAIL" and "cannot reach postgresql://reader:***@127.0.0.1" in database.detail
    assert "Connection refused" in database.detail and PASSWORD not in database.line()
    assert (migrations.status, lock.status) == ("FAIL", "FAIL") and "unreachable" in migrations.detail
    assert "\n" not in database.line()


def test_a_schema_behind_head_and_a_broken_identity_lock_fail(schema_engine, database_url):
    assert statuses(check_database(database_url)) == {"database": "ok", "migrations": "ok", "v1_lock": "ok"}
    with schema_engine.begin() as connection:
        head = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0009'"))
        connection.execute(sa.text("ALTER FUNCTION seedtest_student_id(text) VOLATILE"))
    try:
        _, migrations, lock = check_database(database_url)
    finally:
        with schema_engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head})
            connection.execute(sa.text("ALTER FUNCTION seedtest_student_id(text) IMMUTABLE"))
    assert migrations.status == "FAIL" and migrations.detail.startswith(f"schema at 0009, this release's head is {head}")
    assert lock.line() == "FAIL v1_lock: seedtest_student_id is not immutable"


def test_an_object_store_that_refuses_a_write_fails(tmp_path, monkeypatch):
    local = LocalStore(tmp_path / "store")
    assert check_object_store(local).status == "ok" and not list((tmp_path / "store").rglob("*.txt"))  # deleted
    (tmp_path / "blocked").write_bytes(b"a file where the store's folder should be")
    blocked = check_object_store(LocalStore(tmp_path / "blocked"))
    assert blocked.status == "FAIL" and "NotADirectoryError" in blocked.detail

    s3 = start_s3_server(monkeypatch)
    endpoint, client = s3.endpoint, s3.client
    try:
        assert check_object_store(S3Store("reports", endpoint_url=endpoint, max_attempts=1)).status == "ok"
        assert client.list_objects_v2(Bucket="reports").get("KeyCount") == 0  # the probe was deleted
        missing = check_object_store(S3Store("no-such-bucket", endpoint_url=endpoint, max_attempts=1))
        assert missing.status == "FAIL" and "NoSuchBucket" in missing.detail
    finally:
        s3.stop()
    down = check_object_store(S3Store("reports", endpoint_url=endpoint, max_attempts=1))
    assert down.status == "FAIL" and "EndpointConnectionError" in down.detail


def test_the_webhook_is_required_when_deployed_and_a_warning_locally():
    assert check_webhook(load_settings({})).status == "warn"
    assert check_webhook(load_settings(DEPLOYED)).status == "FAIL"
    configured = check_webhook(load_settings({**DEPLOYED, "SEEDTEST_ALERT_WEBHOOK_URL": "https://hooks.example/x/t0k3n"}))
    assert configured.status == "ok" and "t0k3n" not in configured.line()


def test_pools_missing_or_at_another_limit_fail():
    pools = project_pools(defs)
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        assert check_pools(lambda: missing_pool_limits(instance, pools)).status == "FAIL"
        initialize_pools(instance, pools)
        assert check_pools(lambda: missing_pool_limits(instance, pools)).status == "ok"
        instance.event_log_storage.set_concurrency_slots("weekly_reports", 1)
        changed = check_pools(lambda: missing_pool_limits(instance, pools))
    assert changed.line() == (f"FAIL pools: weekly_reports (limit 1, not {POOL_LIMITS['weekly_reports']}): "
                              "run `seedtest-pipeline pools`")


def test_every_check_runs_even_when_the_database_is_down(tmp_path):
    outcomes = run_checks(load_settings({}), f"postgresql://u@127.0.0.1:{free_port()}/x", LocalStore(tmp_path),
                          lambda: {})
    assert statuses(outcomes) == {"database": "FAIL", "migrations": "FAIL", "v1_lock": "FAIL", "object_store": "ok",
                                  "webhook": "warn", "pools": "ok"}


@pytest.fixture(autouse=True)
def _no_stray_webhook(monkeypatch):
    monkeypatch.delenv("SEEDTEST_ALERT_WEBHOOK_URL", raising=False)
