"""user_inactivity: who is inactive on each UTC day (SPEC §7); replaces the detect-inactivity CronJob."""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from assets.metadata import row_counts, table_definition
from resources.warehouse import WarehouseResource
from seedtest_pipeline.inactivity import (
    DEFAULT_THRESHOLD_DAYS, HORIZON_DAYS, SESSION_DAYS, TABLE, summarise_day, write_inactivity,
)
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.partitions import daily_partitions
from seedtest_pipeline.warehouse import count_rows
from seedtest_pipeline.windows import DayRange

COLUMNS = [
    ("day", "date", "The UTC day D the row describes."),
    ("user_id", "text", "The platform's user id (one spelling per student, docs/decisions.md)."),
    ("last_activity_at", "timestamptz", "Completion time of the user's latest session with an attempt, up to the end of D."),
    ("days_inactive", "integer", "D minus the UTC day of last_activity_at, in whole days: above the threshold, "
                                 f"at most {HORIZON_DAYS - 1}."),
    ("sessions_56d", "integer", f"Sessions with an attempt in the {SESSION_DAYS} days ending at D (the window of the "
                                "churn risk S)."),
    ("threshold_days", "integer", "The threshold N the row was computed with (run config)."),
    ("computed_at", "timestamptz", "When the row's values last changed (a re-run that changes nothing keeps it)."),
]


class InactivityConfig(dg.Config):
    threshold_days: int = Field(
        DEFAULT_THRESHOLD_DAYS, ge=0, le=HORIZON_DAYS - 2,
        description="A user is inactive on day D when their last activity is more than this many whole UTC days "
        f"before D (and within the {HORIZON_DAYS} days ending at D). SPEC §7: 7.")


@dg.asset(
    deps=["attempt"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="inactivity",
    kinds={"postgres"},
    owners=["team:data-platform"],
    tags={"stage": "inactivity"},
    pool="user_inactivity",
    metadata=table_definition("user_inactivity", COLUMNS),
    description=f"Per UTC day, the users whose last activity lies more than N days (default {DEFAULT_THRESHOLD_DAYS}) "
    f"before it and within the last {HORIZON_DAYS} days: last activity, days inactive, recent sessions.",
)
def user_inactivity(context: dg.AssetExecutionContext, config: InactivityConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    days = DayRange.from_datetimes(*context.partition_time_window)
    # A lost or refused connection is retried with backoff; bad data fails once (resources/warehouse.py).
    with warehouse.retried_when_unreachable(context), warehouse.begin() as connection:
        result = write_inactivity(connection, days, config.threshold_days)
    last_day = days.end - timedelta(days=1)
    with warehouse.retried_when_unreachable(context), warehouse.connect() as connection:
        summary = summarise_day(connection, last_day, config.threshold_days)
        table, partition = count_rows(connection, TABLE, "day", days.first, days.end)
    context.log.info(f"{days.first}..{days.end} ({days.days} days, threshold {config.threshold_days}): "
                     f"{result.rows_written} rows written, {result.rows_unchanged} unchanged, "
                     f"{result.rows_deleted} removed or changed in {result.seconds:.2f}s")
    largest = max((n for _, n in summary.histogram), default=0)
    metadata = {
        **row_counts(table, partition),
        "first_day": str(days.first),
        "end_day_exclusive": str(days.end),
        "days": dg.MetadataValue.int(days.days),
        "threshold_days": dg.MetadataValue.int(config.threshold_days),
        "users_inactive": dg.MetadataValue.int(summary.inactive),
        "users_newly_inactive": dg.MetadataValue.int(summary.newly_inactive),
        "rows_written": dg.MetadataValue.int(result.rows_written),
        "rows_removed_or_changed": dg.MetadataValue.int(result.rows_deleted),
        "rows_unchanged": dg.MetadataValue.int(result.rows_unchanged),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "days_inactive_histogram": dg.MetadataValue.md(
            f"Users inactive on {last_day}, by days inactive.\n\n" + markdown_table([
                {"days inactive": label, "users": n, "": "█" * round(20 * n / largest) if largest else ""}
                for label, n in summary.histogram])),
        "preview": dg.MetadataValue.md(
            f"{last_day}: the most recently inactive users first.\n\n" + markdown_table(summary.preview)),
    }
    if days.days > 1:
        metadata["inactive_by_day"] = dg.MetadataValue.md(markdown_table(
            [{"day": str(day), "users inactive": n} for day, n in sorted(result.inactive_by_day.items())][-31:]))
    return dg.MaterializeResult(metadata=metadata)
