"""weekly_kpi: the six KPIs per user and ISO week, merged into weekly_kpi.kpis."""

from datetime import date, datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from assets.metadata import row_counts, table_definition
from resources.warehouse import WarehouseResource
from seedtest_pipeline.features import history_start, judge_completeness, source_written_by_day
from seedtest_pipeline.kpi import (
    DEFAULT_GOAL_TARGET, KPI_LABELS, busiest_users, kpi_summary, write_weekly_kpi,
)
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.partitions import daily_partitions, weekly_partitions
from seedtest_pipeline.warehouse import count_rows
from seedtest_pipeline.windows import DayRange

FEATURES = dg.AssetKey("features_topic_daily")
COLUMNS = [
    ("user_id", "text", "The platform's user id (one spelling per student, docs/decisions.md)."),
    ("week_start", "date", "ISO Monday of the week."),
    ("kpis", "jsonb", "I_t, E_t, R_t, A_t, P, S (SPEC §4; a number or null), as_of, week_attempts, "
                      "week_correct, week_active_days. Other writers' keys are kept."),
    ("created_at", "timestamptz", "When the row was first written."),
    ("updated_at", "timestamptz", "When the row last changed (a re-run that changes nothing keeps it)."),
]


class WeeklyKpiConfig(dg.Config):
    goal_target: float = Field(DEFAULT_GOAL_TARGET, description="The θ a student aims at: P is the probability "
                               "that the student's ability is above it (SPEC §4, default 0.0).")


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
    owners=["team:data-platform"],
    tags={"stage": "kpis"},
    pool="weekly_kpi",
    metadata=table_definition("weekly_kpi", COLUMNS),
    description="Improvement I_t, efficiency E_t, recovery R_t, engagement A_t, goal probability P and churn "
    "risk S per user and ISO week (as of Sunday, or yesterday for the running week).",
    check_specs=[
        dg.AssetCheckSpec(
            "daily_features_complete",
            asset="weekly_kpi",
            description="Every day of the week up to its as-of day (from the first day of the history on) has "
            "features whose latest run succeeded after the day's sessions were last written.",
        )
    ],
)
def weekly_kpi(
    context: dg.AssetExecutionContext, config: WeeklyKpiConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.retried_when_unreachable(context):
        weeks = DayRange.from_datetimes(*context.partition_time_window)
        today = datetime.now(timezone.utc).date()
        results = []
        for offset in range(0, weeks.days, 7):
            week_start = weeks.first + timedelta(days=offset)
            with warehouse.begin() as connection:
                result = write_weekly_kpi(connection, week_start, today, config.goal_target)
            results.append(result)
            context.log.info(
                f"week {week_start} as of {result.as_of}: {result.users} users, {result.rows_inserted} new, "
                f"{result.rows_updated} updated, {result.rows_unchanged} unchanged in {result.seconds:.2f}s"
            )
        last = results[-1]
        days = [r.week_start + timedelta(days=d) for r in results for d in range((r.as_of - r.week_start).days + 1)]
        with warehouse.connect() as connection:
            summary = kpi_summary(connection, last.week_start)
            busiest = busiest_users(connection, last.week_start)
            table, partition = count_rows(connection, "weekly_kpi", "week_start", weeks.first, weeks.end)
            completeness = judge_completeness(
                days, history_start(connection), features_materialized_at(context.instance, days),
                features_failed(context.instance, days), source_written_by_day(connection, DayRange(days[0], days[-1] + timedelta(days=1))),
            )
        rounded = lambda value: round(value, 3) if isinstance(value, float) else value  # noqa: E731
        return dg.MaterializeResult(
            metadata={
                **row_counts(table, partition),
                "weeks": dg.MetadataValue.int(len(results)),
                "as_of": str(last.as_of),
                "users": dg.MetadataValue.int(sum(r.users for r in results)),
                "rows_inserted": dg.MetadataValue.int(sum(r.rows_inserted for r in results)),
                "rows_updated": dg.MetadataValue.int(sum(r.rows_updated for r in results)),
                "rows_unchanged": dg.MetadataValue.int(sum(r.rows_unchanged for r in results)),
                "rows_retracted": dg.MetadataValue.int(sum(r.rows_retracted for r in results)),
                "goal_target": dg.MetadataValue.float(config.goal_target),
                "seconds": dg.MetadataValue.float(round(sum(r.seconds for r in results), 3)),
                "kpi_distribution": dg.MetadataValue.md(
                    f"Week of {last.week_start}, as of {last.as_of}; histogram over [-1, 1] for I_t, [0, 1] for the others.\n\n"
                    + markdown_table([{"KPI": f"{KPI_LABELS[key]} ({key})", **values} for key, values in summary.items()])
                ),
                "busiest_users": dg.MetadataValue.md(
                    markdown_table([{key: rounded(value) for key, value in row.items()} for row in busiest])
                ),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="daily_features_complete",
                    passed=completeness.complete,
                    metadata={
                        "days_judged": ", ".join(map(str, completeness.judged)) or "none (before the first session)",
                        "missing_days": ", ".join(map(str, completeness.missing)) or "none",
                        "failed_days": ", ".join(map(str, completeness.failed)) or "none",
                        "stale_days": ", ".join(map(str, completeness.stale)) or "none",
                    },
                )
            ],
        )


def features_materialized_at(instance: dg.DagsterInstance, days: list[date]) -> dict[date, datetime]:
    """The time of each day's latest features materialisation (a day re-run many times cannot
    hide another day's: one newest record per day)."""
    latest: dict[date, datetime] = {}
    for day in days:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=FEATURES, asset_partitions=[str(day)]), limit=1
        ).records
        if records:
            latest[day] = datetime.fromtimestamp(records[0].timestamp, timezone.utc)
    return latest


def features_failed(instance: dg.DagsterInstance, days: list[date]) -> set[date]:
    """Days whose latest features attempt failed (Dagster's partition status)."""
    status = instance.get_status_by_partition(FEATURES, [str(day) for day in days], daily_partitions) or {}
    return {date.fromisoformat(key) for key, value in status.items() if value == dg.AssetPartitionStatus.FAILED}
