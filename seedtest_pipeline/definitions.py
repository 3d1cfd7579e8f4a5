"""The one place where assets, checks, jobs, schedules and resources are wired together."""

import dagster as dg

from assets.attempt import attempt
from assets.calibration import irt_calibration
from assets.features import features_topic_daily
from assets.kpi import weekly_kpi
from assets.reports import weekly_reports
from assets.source import exam_results, exam_results_observer
from resources.alerts import AlertWebhookResource
from resources.object_store import ObjectStoreResource
from resources.warehouse import WarehouseResource
from seedtest_pipeline.alert_sensor import run_failure_alert
from seedtest_pipeline.jobs import jobs, schedules

defs = dg.Definitions(
    # Each asset's page links to the file and line that defines it.
    assets=dg.with_source_code_references(
        [exam_results, attempt, features_topic_daily, weekly_kpi, irt_calibration, weekly_reports]
    ),
    jobs=jobs,
    schedules=schedules,
    sensors=[exam_results_observer, run_failure_alert],
    resources={"warehouse": WarehouseResource(), "object_store": ObjectStoreResource(), "alerts": AlertWebhookResource()},
)
