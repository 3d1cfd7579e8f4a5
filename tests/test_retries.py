"""Retries on the flaky edges only: a lost database connection or an unreachable object store is
retried with backoff; bad data fails once. Real failures: a port nothing listens on, a TCP relay
to the real PostgreSQL that drops its first connection, a real S3 API server that is stopped or
lacks the bucket."""


import json
import socket
import threading
from datetime import date
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from assets.features import features_topic_daily
from assets.reports import weekly_reports
from factories import free_port, insert_results, question, result, start_s3_server, utc
from resources.object_store import ObjectStoreResource
from resources.warehouse import WarehouseResource
from seedtest_pipeline import warehouse

WEEK = date(2026, 6, 1)



class DroppingRelay:
    """A TCP relay to the test's PostgreSQL that closes its first `drops` connections at once (as a
    proxy restarting or a failover does) and passes the others through."""

    def __init__(self, database_url: str, drops: int = 1):
        parts = urlsplit(database_url)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        self.target = (socket.AF_UNIX, f"{socket_dir}/.s.PGSQL.{parts.port or 5432}") if socket_dir else (
            socket.AF_INET, (parts.hostname, parts.port or 5432))
        self.drops, self.accepted = drops, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        user = parts.username or "postgres"
        self.url = f"postgresql://{user}@127.0.0.1:{port}{parts.path}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                client.close()
                continue
            family, address = self.target
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relay(database_url):
    relay = DroppingRelay(database_url)
    yield relay
    relay.close()


# --- what counts as transient ------------------------------------------------------------------------

def error_of(url: str, statement: str = "SELECT 1") -> Exception:
    engine = warehouse.make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    except Exception as error:  # noqa: BLE001
        return error
    finally:
        engine.dispose()
    raise AssertionError("no error")


def test_lost_connections_are_transient_and_statement_errors_are_not(database_url, relay):
    assert warehouse.connection_lost(error_of(f"postgresql://u:pw@127.0.0.1:{free_port()}/x"))  # refused
    assert warehouse.connection_lost(error_of(relay.url))  # closed by the server side ("server closed ...")
    assert not warehouse.connection_lost(error_of(database_url, "SELECT 1 / 0"))  # 22012: data
    assert not warehouse.connection_lost(error_of(database_url, "SELECT * FROM no_such_table"))  # 42P01
    assert not warehouse.connection_lost(error_of(warehouse.with_database(database_url, "no_such_db")))  # refused for good
    assert not warehouse.connection_lost(ValueError("bad row"))
    terminated = psycopg.connect(warehouse.with_driver(database_url, "psycopg").replace("postgresql+psycopg", "postgresql"))
    try:
        with terminated.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    except psycopg.Error as error:
        assert error.sqlstate == "57P01" and warehouse.connection_lost(error)  # admin shutdown: a failover
    finally:
        terminated.close()


# --- the warehouse resource: retried when unreachable, failed once on bad data ------------------------

def step_events(run, event_type: str) -> list:
    return [e for e in run.all_events if e.event_type_value == event_type]


@dg.op
def read_one(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> int:
    with warehouse.retried_when_unreachable(context), warehouse.connect() as connection:
        return connection.scalar(sa.text("SELECT 1"))


@dg.op
def divide_by_zero(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> int:
    with warehouse.retried_when_unreachable(context), warehouse.connect() as connection:
        return connection.scalar(sa.text("SELECT 1 / 0"))


def run_op(op, resource: WarehouseResource):
    job = dg.GraphDefinition(name=f"job_{op.name}", node_defs=[op]).to_job(resource_defs={"warehouse": resource})
    with dg.instance_for_test() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=False)


def test_a_dropped_connection_is_retried_and_the_step_then_succeeds(relay):
    run = run_op(read_one, WarehouseResource(database_url=relay.url, retry_delay_seconds=0.01))
    assert run.success and run.output_for_node("read_one") == 1
    (retry,) = step_events(run, "STEP_UP_FOR_RETRY")
    assert "server closed the connection" in str(retry.event_specific_data.error.cause)
    assert relay.accepted == 2


def test_bad_data_fails_once_without_a_retry(database_url):
    run = run_op(divide_by_zero, WarehouseResource(database_url=database_url, retry_delay_seconds=0.01))
    assert not run.success and step_events(run, "STEP_UP_FOR_RETRY") == []
    (failure,) = step_events(run, "STEP_FAILURE")
    assert "division by zero" in str(failure.event_specific_data.error)


def test_an_unreachable_warehouse_is_retried_with_backoff_then_fails(database_url):
    resource = WarehouseResource(database_url=f"postgresql://u@127.0.0.1:{free_port()}/x", connection_retries=2,
                                 retry_delay_seconds=0.01)
    run = run_op(read_one, resource)
    retries = step_events(run, "STEP_UP_FOR_RETRY")
    assert not run.success and len(retries) == 2
    assert all(0 <= r.event_specific_data.seconds_to_wait <= 0.01 * (2 ** n - 1) for n, r in enumerate(retries, 1))
    (failure,) = step_events(run, "STEP_FAILURE")
    assert "Exceeded max_retries of 2" in failure.event_specific_data.error.message
    assert "Connection refused" in str(failure.event_specific_data.error.cause)


def test_an_asset_survives_a_failover(engine, relay):
    insert_results(engine, [result(f"u-{u}", utc(2026, 10, 5, 9 + u), [question(u)]) for u in range(3)])
    with dg.instance_for_test() as instance:
        run = dg.materialize([features_topic_daily], instance=instance, partition_key="2026-10-05",
                             resources={"warehouse": WarehouseResource(database_url=relay.url, retry_delay_seconds=0.01)})
    assert run.success and len(step_events(run, "STEP_UP_FOR_RETRY")) == 1
    (materialization,) = run.asset_materializations_for_node("features_topic_daily")
    assert materialization.metadata["dagster/partition_row_count"].value == 3


# --- the object store: an unreachable store is retried, a refusal is not -------------------------------

@pytest.fixture
def s3(monkeypatch):
    server = start_s3_server(monkeypatch)
    yield server, server.endpoint
    server.stop()


def materialize_reports(database_url: str, store: ObjectStoreResource, tmp_path):
    resources = {"warehouse": WarehouseResource(database_url=database_url), "object_store": store,
                 "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "steps"))}
    config = {"ops": {"weekly_reports": {"config": {"chunk_count": 1, "thumbnail": False}}}}
    with dg.instance_for_test() as instance:
        return dg.materialize([weekly_reports], resources=resources, instance=instance, partition_key=str(WEEK),
                              run_config=config, raise_on_error=False)


@pytest.fixture
def two_students(engine):
    with engine.begin() as connection:
        for user_id in ("u-1", "u-2"):
            connection.execute(sa.text("INSERT INTO weekly_kpi (user_id, week_start, kpis) "
                                       "VALUES (:u, :w, CAST(:k AS jsonb))"),
                               {"u": user_id, "w": WEEK, "k": json.dumps({"I_t": 0.1, "S": 0.2})})
    return engine


def test_an_unreachable_store_is_retried_and_a_missing_bucket_is_not(two_students, database_url, s3, tmp_path):
    server, endpoint = s3
    missing_bucket = ObjectStoreResource(bucket="no-such-bucket", endpoint_url=endpoint, max_attempts=1,
                                         step_retries=2, step_retry_delay_seconds=0.01)
    refused = materialize_reports(database_url, missing_bucket, tmp_path)
    assert not refused.success and step_events(refused, "STEP_UP_FOR_RETRY") == []
    (failure,) = step_events(refused, "STEP_FAILURE")
    assert "2 of 2 students' reports failed (upload)" in failure.event_specific_data.error.message

    server.stop()  # nothing listens on the endpoint any more
    down = ObjectStoreResource(bucket="reports", endpoint_url=endpoint, max_attempts=1, step_retries=2,
                               step_retry_delay_seconds=0.01)
    unreachable = materialize_reports(database_url, down, tmp_path)
    assert not unreachable.success and len(step_events(unreachable, "STEP_UP_FOR_RETRY")) == 2
    (failure,) = step_events(unreachable, "STEP_FAILURE")
    assert "Exceeded max_retries of 2" in failure.event_specific_data.error.message
    assert failure.event_specific_data.user_failure_data.metadata["failures"].value == 2
    with two_students.connect() as connection:  # no row without its object
        assert connection.scalar(sa.text("SELECT count(*) FROM report_artifacts")) == 0
