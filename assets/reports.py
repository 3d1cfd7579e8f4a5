"""weekly_reports: a PDF and an HTML report per student and ISO week, stored and recorded."""

import base64
from datetime import datetime, timezone
from typing import Literal

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from assets.metadata import row_counts, table_definition
from resources.object_store import ObjectStoreResource
from resources.warehouse import WarehouseResource
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.partitions import weekly_partitions
from seedtest_pipeline.reports.week import STAGES, render_week
from seedtest_pipeline.windows import DayRange

MAX_FAILURES_LISTED = 20

REPORT_ARTIFACTS_COLUMNS = [
    ("id", "bigserial", "Primary key."),
    ("user_id", "text", "The platform's raw user id."),
    ("week_start", "date", "ISO Monday of the report's week."),
    ("format", "text", "'pdf' or 'html'."),
    ("url", "text", "s3://bucket/key or file:// URL of the stored object."),
    ("file_size_bytes", "bigint", "Size of the stored object."),
    ("sha256", "text", "Hex sha256 of the stored object."),
    ("generated_at", "timestamptz", "When the row was written (after the upload)."),
]


class WeeklyReportsConfig(dg.Config):
    redo: Literal["all", "missing"] = Field(
        "all",
        description="all: render every student of the week, replacing files and rows. missing: only students "
        "without both reports recorded (automatic, since the first attempt started, for step retries and "
        "re-executions of a failed run).",
    )
    chunk_count: int = Field(
        8, ge=1, le=4096,
        description="Split the week's students into this many chunks by a hash of user_id; each chunk is read, "
        "rendered and recorded on its own (see docs/decisions.md).",
    )
    processes: int = Field(
        2, ge=1, le=64,
        description="Chunks rendered at once in separate processes of this run (typst holds the GIL); "
        "1 renders them in turn in the run's own process.",
    )
    chunks: list[int] = Field([], description="Render only these chunks (0..chunk_count-1); empty: all of them.")
    thumbnail: bool = Field(True, description="Show a PNG of one report's first page in the metadata.")


def done_since(context: dg.AssetExecutionContext, redo: str) -> datetime | None:
    """When 'only what is missing' starts counting: the first attempt of this work.

    A step retry is the same run; a re-execution of a failed run names its root run. Rows written
    since that run started are this work's; older rows (a previous week's run) are not.
    """
    retrying = context.retry_number > 0 or context.run.root_run_id is not None
    if not retrying:
        return datetime.fromtimestamp(0, timezone.utc) if redo == "missing" else None
    record = context.instance.get_run_record_by_id(context.run.root_run_id or context.run_id)
    started = record.start_time if record and record.start_time else record.create_timestamp.timestamp()
    return datetime.fromtimestamp(started, timezone.utc)


@dg.asset(
    deps=[
        "weekly_kpi",
        # θ trend of the last 8 weeks: calibration and online rows of mirt_ability.
        "mirt_ability",
        # The week's seven days of accuracy per topic and attempts per day.
        dg.AssetDep(
            "features_topic_daily",
            partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True),
        ),
    ],
    partitions_def=weekly_partitions,
    group_name="reports",
    owners=["team:learning-analytics"],
    tags={"stage": "reports"},
    kinds={"typst", "html", "s3", "postgres"},
    pool="weekly_reports",
    # Uploads are the flaky edge: a run whose only failures were uploads is retried, and the retry
    # renders only the students still missing. Bad data fails without a retry (see below).
    retry_policy=dg.RetryPolicy(max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
    description="A PDF (tagged PDF/UA-1) and an HTML report per student with a KPI row or activity in the ISO "
    "week: KPIs and their change, θ trend, accuracy per topic, attempts per day, churn level and "
    "recommendations. Stored at reports/{user_id}/{week_start}/report.{pdf|html}, recorded in report_artifacts.",
    metadata=table_definition("report_artifacts", REPORT_ARTIFACTS_COLUMNS),
)
def weekly_reports(
    context: dg.AssetExecutionContext,
    config: WeeklyReportsConfig,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    week = DayRange.from_datetimes(*context.partition_time_window)
    store = object_store.store()
    since = done_since(context, config.redo)
    context.log.info(f"week {week.first}: rendering to {store.describe()}"
                     + (f", only students not recorded since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""))
    result = render_week(
        warehouse.engine(), store, week.first, datetime.now(timezone.utc).date(),
        chunk_count=config.chunk_count, chunks=config.chunks or None, done_since=since,
        thumbnail=config.thumbnail, processes=config.processes, log=context.log.info,
    )
    with warehouse.connect() as connection:
        row_count = connection.scalar(sa.text("SELECT count(*) FROM report_artifacts"))
        week_rows = connection.scalar(
            sa.text("SELECT count(*) FROM report_artifacts WHERE week_start = :week"), {"week": week.first}
        )
    total = result.total_seconds
    metadata = {
        **row_counts(row_count, week_rows),
        "week_start": str(result.week_start),
        "as_of": str(result.as_of),
        "store": store.describe(),
        "students": dg.MetadataValue.int(result.students),
        "reports_written": dg.MetadataValue.int(result.reports_written),
        "artifacts_recorded": dg.MetadataValue.int(result.artifacts_recorded),
        "failures": dg.MetadataValue.int(len(result.failures)),
        "megabytes_written": dg.MetadataValue.float(round(result.bytes_written / 1e6, 2)),
        "chunks": f"{', '.join(map(str, result.chunks))} of {result.chunk_count}",
        "seconds": dg.MetadataValue.float(round(total, 3)),
        "students_per_second": dg.MetadataValue.float(round(result.students / total, 1) if total else 0.0),
        "time_split": dg.MetadataValue.md(markdown_table([
            {"stage": stage, "seconds": round(result.seconds[stage], 3),
             "share": f"{result.seconds[stage] / total:.0%}" if total else ""}
            for stage in STAGES
        ])),
        **{f"seconds_{stage}": dg.MetadataValue.float(round(result.seconds[stage], 3)) for stage in STAGES},
        "reports": dg.MetadataValue.md(markdown_table(result.samples, empty="_no reports written_")),
        **{f"link_{n}_{s['format']}": dg.MetadataValue.url(s["url"]) for n, s in enumerate(result.samples[:4])},
    }
    if result.thumbnail_png:
        png = base64.b64encode(result.thumbnail_png).decode()
        metadata["first_page"] = dg.MetadataValue.md(
            f"First page of {result.thumbnail_user_id}'s report:\n\n![first page](data:image/png;base64,{png})"
        )
    if result.failures:
        metadata["failed_students"] = dg.MetadataValue.md(markdown_table(
            [{"user_id": f.user_id, "stage": f.stage, "error": f.error} for f in result.failures[:MAX_FAILURES_LISTED]]
        ))
        uploads_only = all(f.stage == "upload" for f in result.failures)
        raise dg.Failure(
            description=f"{len(result.failures)} of {result.students} students' reports failed "
            f"({', '.join(sorted({f.stage for f in result.failures}))}); the other {result.reports_written} are "
            "written and recorded. A retry or re-execution renders only the missing ones.",
            metadata=metadata,
            # Bad data fails the same way every time: retry only when every failure was an upload.
            allow_retries=uploads_only,
        )
    return dg.MaterializeResult(metadata=metadata)
