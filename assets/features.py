"""features_topic_daily: per user, topic and UTC day; a backfill is one set-based pass."""

import dagster as dg

from resources.warehouse import WarehouseResource
from seedtest_pipeline.features import preview, write_features
from seedtest_pipeline.partitions import daily_partitions
from seedtest_pipeline.windows import DayRange


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no rows_"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if r[h] is None else str(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines)


@dg.asset(
    deps=["attempt"],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    kinds={"postgres"},
    description="Attempts, accuracy, hints, response times and the user's I_t per user, topic and UTC day.",
    check_specs=[
        dg.AssetCheckSpec(
            "input_readable",
            asset="features_topic_daily",
            description="Sessions of the window whose questions the row rules left out or could not read.",
        )
    ],
)
def features_topic_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    days = DayRange.from_datetimes(*context.partition_time_window)
    result = write_features(warehouse.engine(), days)
    with warehouse.connect() as connection:
        sample = preview(connection, days)
    context.log.info(
        f"{days.first}..{days.end} ({days.days} days): {result.rows_written} rows written, "
        f"{result.rows_unchanged} unchanged, from "
        f"{result.attempts} attempts in {result.seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
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
