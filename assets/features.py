"""features_topic_daily: per user, topic and UTC day; a backfill is one set-based pass."""

import dagster as dg

from assets.metadata import row_counts, table_definition
from resources.warehouse import WarehouseResource
from seedtest_pipeline.features import TABLE, preview, write_features
from seedtest_pipeline.warehouse import count_rows
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.partitions import daily_partitions
from seedtest_pipeline.windows import DayRange


COLUMNS = [
    ("user_id", "text", "The platform's user id (one spelling per student, docs/decisions.md)."),
    ("topic_id", "text", "The question's topic; 'general' when it has none that can be read."),
    ("date", "date", "UTC calendar day of completed_at."),
    ("attempts", "integer", "Answered questions."),
    ("correct", "integer", "Of them, answered correctly."),
    ("hints", "integer", "Of them, answered with a hint."),
    ("avg_time_ms", "integer", "Mean response time of the timed answers (ms); null without timing."),
    ("rt_median", "integer", "Median response time of the timed answers (ms); null without timing."),
    ("rt_correct_median", "integer", "Median response time of the timed correct answers (ms)."),
    ("improvement", "numeric", "The user's I_t as of that day (all topics), in [-1, 1]."),
    ("last_seen_at", "timestamptz", "Latest completed_at of that user, topic and day."),
    ("computed_at", "timestamptz", "When the row's values last changed (a re-run that changes nothing keeps it)."),
]


@dg.asset(
    deps=["attempt"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    kinds={"postgres"},
    owners=["team:data-platform"],
    tags={"stage": "features"},
    pool="features_topic_daily",
    metadata=table_definition("features_topic_daily", COLUMNS),
    description="Attempts, accuracy, hints, response times and the user's I_t per user, topic and UTC day.",
    check_specs=[
        dg.AssetCheckSpec(
            "input_readable",
            asset="features_topic_daily",
            description="What the row rules left out, could not read or found implausible in the window "
            "(counts by kind, sample sessions).",
        )
    ],
)
def features_topic_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.retried_when_unreachable(context):
        days = DayRange.from_datetimes(*context.partition_time_window)
        result = write_features(warehouse.engine(), days)
        with warehouse.connect() as connection:
            sample = preview(connection, days)
            table, partition = count_rows(connection, TABLE, "date", days.first, days.end)
        context.log.info(
            f"{days.first}..{days.end} ({days.days} days): {result.rows_written} rows written, "
            f"{result.rows_unchanged} unchanged, from "
            f"{result.attempts} attempts in {result.seconds:.2f}s"
        )
        return dg.MaterializeResult(
            metadata={
                **row_counts(table, partition),
                "first_day": str(days.first),
                "end_day_exclusive": str(days.end),
                "days": dg.MetadataValue.int(days.days),
                "parts": dg.MetadataValue.int(result.parts),
                "rows_written": dg.MetadataValue.int(result.rows_written),
                "rows_removed_or_changed": dg.MetadataValue.int(result.rows_deleted),
                "rows_unchanged": dg.MetadataValue.int(result.rows_unchanged),
                "attempts": dg.MetadataValue.int(result.attempts),
                "users": dg.MetadataValue.int(result.users),
                "topics": dg.MetadataValue.int(result.topics),
                "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
                "attempts_per_second": dg.MetadataValue.int(round(result.attempts / max(result.seconds, 1e-9))),
                "preview": dg.MetadataValue.md(markdown_table(sample)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="input_readable",
                    passed=result.issues.total == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "findings": dg.MetadataValue.int(result.issues.total),
                        "by_kind": dg.MetadataValue.md(result.issues.as_table()),
                    },
                )
            ],
        )
