"""The run-failure alert: the message, and the sensor posting it to a real local HTTP server."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from resources.alerts import WEBHOOK_URL_VARIABLE, AlertWebhookResource
from seedtest_pipeline.alert_sensor import run_failure_alert
from seedtest_pipeline.alerts import RunFailure, failure_message, partition_label, short_error
from seedtest_pipeline.definitions import defs

SECRET_PATH = "/services/T0SEEDTEST/B0ALERTS/s3cr3t-w3bh00k-t0k3n"
UI = "https://dagster.seedtest.example"


# --- the message (plain Python) ---------------------------------------------------------------

def test_message_names_job_partition_error_and_links_the_run():
    failure = RunFailure(job="features_daily", run_id="0f1e2d3c-aaaa-bbbb-cccc-123456789abc",
                         error="features_topic_daily: ValueError: bad day", partition="2026-11-22")
    (text,) = failure_message(failure, UI + "/").values()
    assert "*features_daily*" in text and "`2026-11-22`" in text
    assert "ValueError: bad day" in text
    assert f"<{UI}/runs/0f1e2d3c-aaaa-bbbb-cccc-123456789abc|Run 0f1e2d3c in the Dagster UI>" in text


def test_message_escapes_markup_cuts_long_errors_and_masks_passwords():
    error = "OperationalError: <connection> & postgresql+psycopg://seedtest:hunter2@10.0.0.5:5432/x failed\n" * 20
    (text,) = failure_message(RunFailure(job="j", run_id="r" * 36, error=error), UI).values()
    assert "hunter2" not in text and "seedtest:***@10.0.0.5" in text
    assert "&lt;connection&gt; &amp;" in text and "<connection>" not in text
    shown = short_error(error)
    assert len(shown) == 300 and shown.endswith("…") and "\n" not in shown


def test_partition_label_covers_single_run_backfills():
    assert partition_label("2026-11-22", None, None) == "2026-11-22"
    assert partition_label(None, "2026-11-02", "2026-11-08") == "2026-11-02...2026-11-08"
    assert partition_label(None, "2026-11-02", "2026-11-02") == "2026-11-02"
    assert partition_label(None, None, None) is None


# --- the sensor against a real HTTP server ------------------------------------------------------

class Webhook:
    """A local HTTP server that records each POST and answers with the next scripted status."""

    def __init__(self, statuses=(200,), delay_seconds: float = 0.0):
        self.requests: list[dict] = []
        statuses, webhook = list(statuses), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.requests.append(
                    {"path": self.path, "content_type": self.headers["Content-Type"], "json": json.loads(body)}
                )
                threading.Event().wait(delay_seconds)
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except BrokenPipeError:  # the client gave up waiting (the timeout test)
                    pass

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(request, monkeypatch):
    statuses, delay = getattr(request, "param", ((200,), 0.0))
    server = Webhook(statuses, delay)
    monkeypatch.setenv(WEBHOOK_URL_VARIABLE, server.url)
    yield server
    server.stop()


@dg.op
def load_day():
    raise ValueError("exam_results row s-17 has no completed_at")


@dg.job(tags={"seedtest/work": "test"})
def failing_job():
    load_day()


@pytest.fixture(scope="module")
def failed_run():
    """A real failed run (partition tag included) on a throwaway instance, shared by the tests."""
    with dg.instance_for_test() as instance:
        result = failing_job.execute_in_process(
            instance=instance, raise_on_error=False, tags={"dagster/partition": "2026-11-22"}
        )
        yield instance, result


def evaluate(failed_run, alerts: AlertWebhookResource, caplog=None):
    """Evaluate the sensor on the failed run's RUN_FAILURE event, as the daemon would; its log
    (context.log, which the daemon keeps with the tick) goes to `caplog` too."""
    instance, result = failed_run
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alerts": alerts},
    ).for_run_failure()
    if caplog is not None:
        context.log.addHandler(caplog.handler)
    return result.dagster_run, run_failure_alert(context)


def fast(**overrides) -> AlertWebhookResource:
    settings = {"ui_base_url": UI, "timeout_seconds": 0.5, "backoff_seconds": 0.01, "pause_after_failure_seconds": 0}
    return AlertWebhookResource(**{**settings, **overrides})


def test_the_sensor_posts_job_partition_error_and_run_link(failed_run, webhook, caplog):
    caplog.set_level(logging.INFO)
    run, outcome = evaluate(failed_run, fast(), caplog)
    assert outcome is None
    (posted,) = webhook.requests
    assert posted["path"] == SECRET_PATH and posted["content_type"] == "application/json"
    text = posted["json"]["text"]
    assert "*failing_job*" in text and "`2026-11-22`" in text
    assert "load_day: ValueError: exam_results row s-17 has no completed_at" in text
    assert f"{UI}/runs/{run.run_id}|" in text
    assert f"alert for failed run {run.run_id} sent (HTTP 200, attempt 1)" in caplog.text


@pytest.mark.parametrize("webhook", [((503, 429, 200), 0.0)], indirect=True)
def test_the_sensor_retries_a_busy_webhook(failed_run, webhook, caplog):
    caplog.set_level(logging.INFO)
    run, _ = evaluate(failed_run, fast(), caplog)
    assert len(webhook.requests) == 3
    assert f"alert for failed run {run.run_id} sent (HTTP 200, attempt 3)" in caplog.text


@pytest.mark.parametrize("webhook", [((404,), 0.0)], indirect=True)
def test_a_refused_webhook_is_not_asked_again(failed_run, webhook, caplog):
    _, outcome = evaluate(failed_run, fast(), caplog)
    assert outcome is None and len(webhook.requests) == 1
    assert "NOT delivered after 1 attempt(s): HTTP 404, not retried" in caplog.text


def test_the_sensor_survives_the_webhook_being_down(failed_run, webhook, caplog):
    webhook.stop()  # nothing listens on the port any more: connection refused
    run, outcome = evaluate(failed_run, fast(), caplog)
    assert outcome is None
    assert f"alert for failed run {run.run_id} NOT delivered after 3 attempt(s): ConnectionError" in caplog.text
    # and the next failure is handled the same way: the sensor keeps working
    assert evaluate(failed_run, fast(), caplog)[1] is None


@pytest.mark.parametrize("webhook", [((200,), 2.0)], indirect=True)
def test_a_hanging_webhook_times_out(failed_run, webhook, caplog):
    _, outcome = evaluate(failed_run, fast(timeout_seconds=0.2, attempts=2), caplog)
    assert outcome is None and len(webhook.requests) == 2
    assert "NOT delivered after 2 attempt(s): ReadTimeout" in caplog.text


@pytest.mark.parametrize("webhook", [((200,), 2.0)], indirect=True)
def test_after_a_failed_alert_the_next_ones_wait_instead_of_stalling_the_tick(failed_run, webhook, caplog):
    pausing = fast(timeout_seconds=0.2, attempts=2, pause_after_failure_seconds=30)
    evaluate(failed_run, pausing, caplog)
    assert len(webhook.requests) == 2
    started = time.monotonic()
    run, outcome = evaluate(failed_run, pausing, caplog)
    assert outcome is None and len(webhook.requests) == 2 and time.monotonic() - started < 0.5
    assert (f"alert for failed run {run.run_id} NOT delivered after 0 attempt(s): "
            "not tried, the webhook failed less than 30 s ago") in caplog.text


def test_without_a_webhook_the_sensor_says_so_and_skips(failed_run, monkeypatch):
    monkeypatch.delenv(WEBHOOK_URL_VARIABLE, raising=False)
    run, outcome = evaluate(failed_run, fast())
    assert isinstance(outcome, dg.SkipReason)
    assert outcome.skip_message == f"run {run.run_id} failed; no alert sent: ${WEBHOOK_URL_VARIABLE} is not set"


def test_the_webhook_url_never_reaches_logs_config_or_metadata(failed_run, webhook, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # urllib3 logs request paths at DEBUG
    evaluate(failed_run, fast(), caplog)
    webhook.stop()
    _, failed = evaluate(failed_run, fast(), caplog)  # requests' error messages quote the URL
    token = SECRET_PATH.rsplit("/", 1)[1]
    printed = capsys.readouterr()
    assert "ConnectionError" in caplog.text  # the failure path was logged...
    for text in (caplog.text, printed.out, printed.err, repr(failed), json.dumps(webhook.requests[0]["json"])):
        assert token not in text  # ...without the URL
    # The resource's config, which the UI shows, holds no URL.
    resource = defs.resources["alerts"]
    assert token not in repr(resource) and not any("url" in name and "ui" not in name
                                                   for name in type(resource).model_fields)


def test_the_sensor_and_its_resource_are_wired_and_running_by_default():
    sensor = defs.resolve_sensor_def("run_failure_alert")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "alerts" in sensor.required_resource_keys
    assert isinstance(defs.resources["alerts"], AlertWebhookResource)

