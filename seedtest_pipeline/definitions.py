"""The one place where assets, checks, jobs, schedules and resources are wired together."""

import dagster as dg

from assets.attempt import attempt
from assets.calibration import irt_calibration
from assets.features import features_topic_daily
from assets.kpi import weekly_kpi
from assets.source import exam_results, exam_results_observer
from resources.warehouse import WarehouseResource
from seedtest_pipeline.jobs import jobs, schedules

defs = dg.Definitions(
    assets=[exam_results, attempt, features_topic_daily, weekly_kpi, irt_calibration],
    jobs=jobs,
    schedules=schedules,
    sensors=[exam_results_observer],
    resources={"warehouse": WarehouseResource()},
)
