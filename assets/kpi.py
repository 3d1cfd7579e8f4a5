"""weekly_kpi: the six KPIs per user and ISO week, merged into weekly_kpi.kpis."""

from datetime import datetime, timedelta, timezone

import dagster as dg

from assets.features import markdown_table
from resources.warehouse import WarehouseResource
from seedtest_pipeline.kpi import DEFAULT_GOAL_TARGET, KPI_NAMES, kpi_summary, read_week, write_weekly_kpi
from seedtest_pipeline.partitions import weekly_partitions
from seedtest_pipeline.windows import DayRange


class WeeklyKpiConfig(dg.Config):
    goal_target: float = DEFAULT_GOAL_TARGET  # θ target of the goal probability P


@dg.asset(
    deps=[
        "attempt",
        # Goal probability P reads each user's latest θ (the latest calibration or online update).
        "mirt_ability",
        # The week's seven days; the running week has days that do not exist yet.
        dg.AssetDep(
            "features_topic_daily",
            partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True),
        ),
    ],
    partitions_def=weekly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="kpis",
    kinds={"postgres"},
    description="Improvement, efficiency, recovery, engagement, goal probability and churn risk per user "
    "and ISO week (as of Sunday, or yesterday for the running week).",
    check_specs=[
        dg.AssetCheckSpec(
            "daily_features_complete",
            asset="weekly_kpi",
            description="Every day of the week up to its as-of day has a materialised features partition.",
        )
    ],
)
def weekly_kpi(
    context: dg.AssetExecutionContext, config: WeeklyKpiConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    weeks = DayRange.from_datetimes(*context.partition_time_window)
    today = datetime.now(timezone.utc).date()
    materialized_days = context.instance.get_materialized_partitions(dg.AssetKey("features_topic_daily"))
    results, missing_days = [], []
    for offset in range(0, weeks.days, 7):
        week_start = weeks.first + timedelta(days=offset)
        with warehouse.begin() as connection:
            result = write_weekly_kpi(connection, week_start, today, config.goal_target)
        results.append(result)
        days = [result.week_start + timedelta(days=d) for d in range((result.as_of - result.week_start).days + 1)]
        missing_days += [str(d) for d in days if str(d) not in materialized_days]
        context.log.info(
            f"week {week_start} as of {result.as_of}: {result.users} users, {result.rows_inserted} new, "
            f"{result.rows_updated} updated, {result.rows_unchanged} unchanged in {result.seconds:.2f}s"
        )
    last = results[-1]
    with warehouse.connect() as connection:
        summary = kpi_summary(connection, last.week_start)
        sample = read_week(connection, last.week_start, limit=8)
    summary_table = markdown_table(
        [{"KPI": KPI_NAMES[key], **values} for key, values in summary.items()]
    )
    return dg.MaterializeResult(
        metadata={
            "weeks": dg.MetadataValue.int(len(results)),
            "as_of": str(last.as_of),
            "users": dg.MetadataValue.int(sum(r.users for r in results)),
            "rows_inserted": dg.MetadataValue.int(sum(r.rows_inserted for r in results)),
            "rows_updated": dg.MetadataValue.int(sum(r.rows_updated for r in results)),
            "rows_unchanged": dg.MetadataValue.int(sum(r.rows_unchanged for r in results)),
            "rows_retracted": dg.MetadataValue.int(sum(r.rows_retracted for r in results)),
            "goal_target": dg.MetadataValue.float(config.goal_target),
            "seconds": dg.MetadataValue.float(round(sum(r.seconds for r in results), 3)),
            "kpis_last_week": dg.MetadataValue.md(summary_table),
            "preview_last_week": dg.MetadataValue.md(
                markdown_table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in sample])
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="daily_features_complete",
                passed=not missing_days,
                metadata={"missing_days": ", ".join(missing_days) or "none"},
            )
        ],
    )
