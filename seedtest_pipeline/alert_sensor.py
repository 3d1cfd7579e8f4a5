"""The run-failure alert: each failed run of this code location posts one short message.

A failed delivery (webhook down, timing out, refusing) is logged and the sensor moves on to the
next failed run: an alert is never worth a stuck sensor. Without a webhook configured the sensor
skips, saying why, so the UI shows that failures go unannounced.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from resources.alerts import WEBHOOK_URL_VARIABLE, AlertWebhookResource
from seedtest_pipeline.alerts import RunFailure, failure_message, partition_label


RETRY_WRAPPERS = ("RetryRequested", "RetryRequestedFromPolicy")


def failure_error(context: dg.RunFailureSensorContext) -> str:
    """The first failed step's error ("step: Type: message"), else the run's own failure."""
    step_failures = context.get_step_failure_events()
    if step_failures:
        first = step_failures[0]
        error = first.step_failure_data.error
        # Dagster wraps the asset's own exception ("Error occurred while executing op ...", or
        # "Exceeded max_retries" after the retries of a lost connection): show that exception.
        while error and error.cause and (error.cls_name.startswith("Dagster") or error.cls_name in RETRY_WRAPPERS):
            error = error.cause
        text = f"{first.step_key}: {error.message.strip()}" if error else first.message
        more = len(step_failures) - 1
        return text + (f" (and {more} more failed step{'s' if more > 1 else ''})" if more else "")
    run_error = getattr(context.failure_event.event_specific_data, "error", None)
    return run_error.message.strip() if run_error else (context.failure_event.message or "")


@dg.run_failure_sensor(
    name="run_failure_alert",
    description=f"Posts each failed run (job, partition, error, link) to ${WEBHOOK_URL_VARIABLE}.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertWebhookResource):
    run = context.dagster_run
    if not alerts.configured():
        return dg.SkipReason(f"run {run.run_id} failed; no alert sent: ${WEBHOOK_URL_VARIABLE} is not set")
    tags = run.tags
    failure = RunFailure(
        job=run.job_name,
        run_id=run.run_id,
        error=failure_error(context),
        partition=partition_label(
            tags.get(PARTITION_NAME_TAG),
            tags.get(ASSET_PARTITION_RANGE_START_TAG),
            tags.get(ASSET_PARTITION_RANGE_END_TAG),
        ),
    )
    delivery = alerts.post(failure_message(failure, alerts.ui_url()))
    if delivery.delivered:
        context.log.info(f"alert for failed run {run.run_id} sent ({delivery.detail}, attempt {delivery.attempts})")
    else:
        context.log.warning(
            f"alert for failed run {run.run_id} NOT delivered after {delivery.attempts} attempt(s): {delivery.detail}"
        )
    return None
