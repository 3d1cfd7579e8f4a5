"""Jobs and schedules (UTC) that replace the CronJobs (SPEC §8).

Schedules start running as soon as the code location loads, as the CronJobs they replace ran as
soon as they were applied (RUNNING below); the UI can stop one, and the instance remembers that.

Every job carries a `seedtest/work` tag; the run coordinator allows one run per tag value at a
time (dagster.yaml, deploy/dagster.yaml), so two runs of the same work never overlap.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg

from seedtest_pipeline.settings import Settings, load_settings
from seedtest_pipeline.windows import iso_monday

WORK_TAG = "seedtest/work"

attempt_view_job = dg.define_asset_job(
    "attempt_view", selection=dg.AssetSelection.assets("attempt"), tags={WORK_TAG: "attempt_view"}
)
features_daily_job = dg.define_asset_job(
    "features_daily",
    selection=dg.AssetSelection.assets("features_topic_daily"),
    tags={WORK_TAG: "features_daily"},
)
weekly_kpi_job = dg.define_asset_job(
    "weekly_kpi_refresh",
    selection=dg.AssetSelection.assets("weekly_kpi"),
    tags={WORK_TAG: "weekly_kpi"},
)

irt_calibration_job = dg.define_asset_job(
    "calibrate_irt",
    selection=dg.AssetSelection.assets("mirt_fit_meta", "mirt_item_params", "mirt_ability"),
    tags={WORK_TAG: "irt_calibration"},
)

# 01:15: yesterday's features (the job's partition for a daily schedule is the day that ended).
RUNNING = dg.DefaultScheduleStatus.RUNNING

features_schedule = dg.build_schedule_from_partitioned_job(
    features_daily_job, hour_of_day=1, minute_of_hour=15, name="features_daily_0115", default_status=RUNNING
)


def week_of_yesterday(now: datetime) -> str:
    """The weekly partition containing yesterday: the running week, or on Monday the one just ended."""
    return iso_monday(now.astimezone(timezone.utc).date() - timedelta(days=1)).isoformat()


@dg.schedule(cron_schedule="10 2 * * *", job=weekly_kpi_job, execution_timezone="UTC", name="weekly_kpi_0210",
             default_status=RUNNING)
def weekly_kpi_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    partition_key = week_of_yesterday(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"weekly_kpi:{context.scheduled_execution_time:%Y-%m-%d}", partition_key=partition_key)


# 03:00: a new calibration over the lookback window ending now (after the day's KPIs, which read
# the θ of the previous calibration).
calibration_schedule = dg.ScheduleDefinition(
    name="irt_calibration_0300", cron_schedule="0 3 * * *", job=irt_calibration_job, execution_timezone="UTC",
    default_status=RUNNING,
)


def chunk_step_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """How the reports' steps run: on Kubernetes (staging, prod) each step, one per chunk of
    students, is a Kubernetes Job of its own with the resources of its `dagster-k8s/config` tag
    (dagster-k8s's k8s_job_executor; the run Job's settings, sidecar included, carry over); the
    pool `weekly_reports` sets how many run at once. Locally Dagster's default: in the run's
    process (demo, tests), or a process per step (runs launched by `dagster dev`)."""
    if not settings.deployed:
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


weekly_reports_job = dg.define_asset_job(
    "render_weekly_reports",
    selection=dg.AssetSelection.assets("weekly_reports"),
    tags={WORK_TAG: "weekly_reports"},
    executor_def=chunk_step_executor(load_settings()),
)


# Monday 04:00: the reports of the week that ended yesterday (after the 02:10 KPIs and the 03:00
# calibration of that morning).
@dg.schedule(cron_schedule="0 4 * * 1", job=weekly_reports_job, execution_timezone="UTC", name="weekly_reports_0400",
             default_status=RUNNING)
def weekly_reports_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    partition_key = week_of_yesterday(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"weekly_reports:{partition_key}", partition_key=partition_key)


user_inactivity_job = dg.define_asset_job(
    "user_inactivity_daily",
    selection=dg.AssetSelection.assets("user_inactivity"),
    tags={WORK_TAG: "user_inactivity", "stage": "inactivity"},
    owners=["team:data-platform"],
)
# 05:00: the inactivity of the day that just ended (SPEC §8), after the night's other work.
inactivity_schedule = dg.build_schedule_from_partitioned_job(
    user_inactivity_job, hour_of_day=5, minute_of_hour=0, name="user_inactivity_0500", default_status=RUNNING
)


jobs = [attempt_view_job, features_daily_job, weekly_kpi_job, irt_calibration_job, weekly_reports_job,
        user_inactivity_job]
schedules = [features_schedule, weekly_kpi_schedule, calibration_schedule, weekly_reports_schedule,
             inactivity_schedule]
