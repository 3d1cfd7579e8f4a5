"""Settings: validated once at start-up of the code location and the CLI; a missing or malformed
value stops start-up naming its variable; no secret reaches a message, a log or metadata."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.attempt import attempt
from assets.features import features_topic_daily
from factories import insert_results, question, result, utc
from resources.warehouse import WarehouseResource
from seedtest_pipeline.settings import SettingsError, load_settings

PROJECT = Path(__file__).resolve().parent.parent
COMMAND = str(Path(sys.executable).parent / "seedtest-pipeline")
PASSWORD = "Pw-s3cret-42"
WEBHOOK = "https://hooks.slack.com/services/T0/B0/w3bh00k-t0k3n"
DEPLOYED = {
    "SEEDTEST_ENV": "prod",
    "DATABASE_URL": f"postgresql://seedtest:{PASSWORD}@127.0.0.1:5432/seedtest",
    "SEEDTEST_DAGSTER_PG_URL": f"postgresql+psycopg2://seedtest:{PASSWORD}@127.0.0.1:5432/dagster",
    "SEEDTEST_REPORTS_BUCKET": "seedtest-reports-prod",
    "SEEDTEST_UI_BASE_URL": "https://dagster.seedtest.example",
}


def test_locally_nothing_is_required():
    settings = load_settings({})
    assert not settings.deployed and settings.database_url is None and settings.reports_bucket is None
    assert str(settings.first_day) == "2025-01-06" and settings.backfill_connections == 2


def test_a_deployed_pipeline_has_its_settings():
    settings = load_settings({**DEPLOYED, "SEEDTEST_ALERT_WEBHOOK_URL": WEBHOOK})
    assert settings.deployed and settings.reports_bucket == "seedtest-reports-prod"
    assert PASSWORD not in repr(settings) and "w3bh00k" not in repr(settings)


@pytest.mark.parametrize("missing", ["DATABASE_URL", "SEEDTEST_DAGSTER_PG_URL", "SEEDTEST_REPORTS_BUCKET",
                                     "SEEDTEST_UI_BASE_URL"])
def test_deployed_a_missing_required_value_is_named(missing):
    with pytest.raises(SettingsError) as raised:
        load_settings({name: value for name, value in DEPLOYED.items() if name != missing})
    assert raised.value.problems == [f"{missing}: required when SEEDTEST_ENV=prod"]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DATABASE_URL", f"mysql://reader:{PASSWORD}@db.example/seedtest", "not a PostgreSQL URL"),
        ("DATABASE_URL", f"postgresql://reader:{PASSWORD}@db.example", "names no database"),
        ("SEEDTEST_DAGSTER_PG_URL", f"postgresql://reader:{PASSWORD}@db/dagster", "postgresql+psycopg2://"),
        ("SEEDTEST_FIRST_DAY", "2025-01-07", "is a Tuesday; it must be a Monday"),
        ("SEEDTEST_FIRST_DAY", "6 Jan 2025", "not an ISO date"),
        ("SEEDTEST_BACKFILL_CONNECTIONS", "many", "not a whole number"),
        ("SEEDTEST_BACKFILL_CONNECTIONS", "0", "outside 1..32"),
        ("SEEDTEST_UI_BASE_URL", "dagster.seedtest.example", "not an http(s) URL"),
        ("SEEDTEST_ALERT_WEBHOOK_URL", f"hooks.slack.com/{PASSWORD}", "value not shown: it is a secret"),
        ("SEEDTEST_ENV", "production", "not one of local, staging, prod"),
    ],
)
def test_a_malformed_value_is_named_without_its_secret(variable, value, says):
    with pytest.raises(SettingsError) as raised:
        load_settings({**DEPLOYED, "SEEDTEST_ENV": "local", variable: value})
    (problem,) = raised.value.problems
    assert problem.startswith(f"{variable}: ") and says in problem
    assert PASSWORD not in str(raised.value)


def start(args: list[str], environment: dict[str, str], home: Path) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEEDTEST_") and k != "DATABASE_URL"},
           "SEEDTEST_HOME": str(home), **environment}
    return subprocess.run(args, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)


def test_the_code_location_does_not_start_without_its_settings(tmp_path):
    """What `dagster api grpc -m seedtest_pipeline.definitions` runs first: loading the module."""
    environment = {**DEPLOYED, "SEEDTEST_FIRST_DAY": "2025-01-08"}
    del environment["SEEDTEST_REPORTS_BUCKET"]
    done = start([sys.executable, "-c", "import seedtest_pipeline.definitions"], environment, tmp_path)
    assert done.returncode != 0
    assert "SettingsError" in done.stderr and "SEEDTEST_FIRST_DAY: 2025-01-08 is a Wednesday" in done.stderr
    loaded = start([sys.executable, "-c", "import seedtest_pipeline.definitions"],
                   {**environment, "SEEDTEST_FIRST_DAY": "2025-01-06", "SEEDTEST_REPORTS_BUCKET": "b"}, tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert PASSWORD not in done.stdout + done.stderr + loaded.stdout + loaded.stderr


def test_the_command_line_does_not_start_without_its_settings(tmp_path):
    environment = {**DEPLOYED, "SEEDTEST_DAGSTER_PG_URL": f"postgresql://seedtest:{PASSWORD}@127.0.0.1/dagster"}
    del environment["SEEDTEST_UI_BASE_URL"]
    done = start([COMMAND, "db", "current"], environment, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "seedtest-pipeline db: SEEDTEST_DAGSTER_PG_URL: 'postgresql://seedtest:***@127.0.0.1/dagster' must start "
        "with postgresql+psycopg2:// (dagster-postgres speaks psycopg2)",
        "seedtest-pipeline db: SEEDTEST_UI_BASE_URL: required when SEEDTEST_ENV=prod",
    ]


def with_password(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{PASSWORD}@{host}"


def everything_recorded(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every event of a run as stored: messages, metadata, errors, the run's config and tags."""
    from dagster._serdes import serialize_value

    run = instance.get_run_by_id(run_id)
    return "\n".join([serialize_value(record) for record in instance.all_logs(run_id)]
                     + [json.dumps(run.run_config, default=str), json.dumps(run.tags)])


def test_no_log_metadata_or_output_holds_the_database_password(engine, database_url, monkeypatch, caplog, capsys):
    """The pipeline reads DATABASE_URL from the environment, as in production; its runs record
    what they did, and an unreachable server's errors are retried and reported, all without it."""
    caplog.set_level(logging.DEBUG)
    insert_results(engine, [result(f"u-{u}", utc(2026, 10, 5, 9 + u), [question(u)]) for u in range(3)])
    monkeypatch.setenv("DATABASE_URL", with_password(database_url))
    unreachable = f"postgresql://seedtest:{PASSWORD}@127.0.0.1:9/seedtest"
    with dg.instance_for_test() as instance:
        runs = [
            dg.materialize([attempt], instance=instance, resources={"warehouse": WarehouseResource()}),
            dg.materialize([features_topic_daily], instance=instance, partition_key="2026-10-05",
                           resources={"warehouse": WarehouseResource()}),
            dg.materialize([features_topic_daily], instance=instance, partition_key="2026-10-05", raise_on_error=False,
                           resources={"warehouse": WarehouseResource(database_url=unreachable, connection_retries=1,
                                                                     retry_delay_seconds=0)}),
        ]
        assert [run.success for run in runs] == [True, True, False]
        recorded = [everything_recorded(instance, run.run_id) for run in runs]
    assert "ASSET_MATERIALIZATION" in recorded[0] and "ASSET_MATERIALIZATION" in recorded[1]  # records are there...
    assert "STEP_UP_FOR_RETRY" in recorded[2] and "Connection refused" in recorded[2]
    printed = capsys.readouterr()
    for text in (*recorded, caplog.text, printed.out, printed.err):
        assert PASSWORD not in text  # ...without the password
    assert "warehouse postgresql://seedtest:***@127.0.0.1:9/seedtest unreachable" in recorded[2]  # the retry's log
