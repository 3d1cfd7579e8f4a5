"""The one place where assets, checks, jobs, schedules and resources are wired together."""

import dagster as dg

from assets.attempt import attempt
from assets.calibration import irt_calibration
from assets.features import features_topic_daily
from assets.inactivity import user_inactivity
from assets.kpi import weekly_kpi
from assets.online_theta import online_theta_job, session_completed
from assets.reports import weekly_reports
from assets.source import exam_results, exam_results_observer
from resources.alerts import AlertWebhookResource
from resources.object_store import ObjectStoreResource
from resources.step_outputs import StepOutputsIOManager
from resources.warehouse import WarehouseResource
from seedtest_pipeline.alert_sensor import run_failure_alert
from seedtest_pipeline.freshness import with_freshness_policies
from seedtest_pipeline.jobs import jobs, schedules
from seedtest_pipeline.settings import load_settings

# Start-up stops here, naming the variable, when a setting is missing or malformed.
settings = load_settings()

object_store = ObjectStoreResource()

defs = dg.Definitions(
    # Each asset's page links to the file and line that defines it.
    assets=dg.with_source_code_references(with_freshness_policies(
        [exam_results, attempt, features_topic_daily, weekly_kpi, irt_calibration, weekly_reports, user_inactivity]
    )),
    jobs=[*jobs, online_theta_job],
    schedules=schedules,
    sensors=[exam_results_observer, run_failure_alert, session_completed],
    resources={
        "warehouse": WarehouseResource(),
        "object_store": object_store,
        "alerts": AlertWebhookResource(),
        # Step outputs (the weekly reports' chunk ids and per-chunk results) in the object store:
        # on Kubernetes each chunk step is a pod of its own, and pods share no disk.
        "io_manager": StepOutputsIOManager(object_store=object_store),
    },
)
