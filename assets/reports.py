"""weekly_reports: a PDF and an HTML report per student and ISO week, stored and recorded.

A graph-backed asset of three steps: plan_report_chunks (one dynamic output per chunk of the
week's students), render_report_chunk (mapped: one step per chunk, in pool `weekly_reports`, whose
limit is how many run at once) and record_weekly_reports (sums the chunks into the asset's
metadata). Locally the steps run in the run's process (or a process each under `dagster dev`); on
Kubernetes the job render_weekly_reports runs each as a Kubernetes Job of its own, with the
resources of its `dagster-k8s/config` tag (seedtest_pipeline/jobs.py, docs/decisions.md).
"""

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.metadata import row_counts, table_definition
from resources.object_store import ObjectStoreResource
from resources.warehouse import WarehouseResource
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.partitions import weekly_partitions
from seedtest_pipeline.pools import wait_for_earlier_runs
from seedtest_pipeline.reports.week import STAGES, WeekReportResult, merge_chunk_result, render_week
from seedtest_pipeline.warehouse import count_rows
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
        description="Split the week's students into this many chunks by a hash of user_id; each chunk is a step "
        "of its own (a Kubernetes Job in production) that reads, renders and records its students.",
    )
    chunks: list[int] = Field([], description="Render only these chunks (0..chunk_count-1); empty: all of them.")
    thumbnail: bool = Field(True, description="Show a PNG of one report's first page in the metadata.")
    wait_poll_seconds: float = Field(
        15.0, gt=0, description="While a run of the same week that started earlier is still running, this run "
        "waits before rendering; it looks again every this many seconds.")


@dataclass(frozen=True)
class ChunkTask:
    """What one chunk step renders: decided once by the planning step, so every chunk of a run
    renders the same week as of the same day."""

    week_start: date
    today: date
    chunk_count: int
    chunk: int
    redo: str
    thumbnail: bool


# Resources per step pod on Kubernetes (dagster-k8s reads the tag; elsewhere it is ignored). A
# chunk renders with one CPU (typst and Jinja hold the GIL) and peaked at 137 MB beside the
# ~300 MB of the loaded definitions (bench/README.md); planning and recording are bookkeeping.
CHUNK_STEP_K8S = {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "768Mi"},
                                                     "limits": {"memory": "1536Mi"}}}}
SMALL_STEP_K8S = {"container_config": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                                     "limits": {"memory": "1Gi"}}}}
K8S_CONFIG_TAG = "dagster-k8s/config"


def done_since(context: dg.OpExecutionContext, redo: str) -> datetime | None:
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


@dg.op(
    ins={"upstream": dg.In(dg.Nothing)},
    out=dg.DynamicOut(ChunkTask),
    tags={K8S_CONFIG_TAG: json.dumps(SMALL_STEP_K8S)},
    description="Waits while a run of the same week that started earlier is still running, then yields one "
    "task per chunk of students to render.",
)
def plan_report_chunks(context: dg.OpExecutionContext, config: WeeklyReportsConfig):
    week = DayRange.from_datetimes(*context.partition_time_window)
    selected = sorted(set(config.chunks or range(config.chunk_count)))
    if any(not 0 <= chunk < config.chunk_count for chunk in selected):
        raise dg.Failure(f"chunks must be a subset of 0..{config.chunk_count - 1}, got {config.chunks}")
    # The chunk steps' pool admits several at once, so the pool no longer keeps two runs of the
    # same week apart (seedtest_pipeline/pools.py): the later one waits here, before any chunk.
    waited = wait_for_earlier_runs(context.instance, context.run, "weekly_reports.", str(week.first),
                                   context.log.info, config.wait_poll_seconds)
    if waited:
        context.log.info(f"waited {waited:.0f} s for the earlier run(s) of week {week.first}")
    today = datetime.now(timezone.utc).date()
    for chunk in selected:
        yield dg.DynamicOutput(
            ChunkTask(week.first, today, config.chunk_count, chunk, config.redo,
                      thumbnail=config.thumbnail and chunk == selected[0]),
            mapping_key=f"chunk_{chunk}",
        )


@dg.op(
    pool="weekly_reports",
    tags={K8S_CONFIG_TAG: json.dumps(CHUNK_STEP_K8S)},
    description="Reads, renders, uploads and records the reports of one chunk of the week's students.",
)
def render_report_chunk(
    context: dg.OpExecutionContext, task: ChunkTask, warehouse: WarehouseResource, object_store: ObjectStoreResource
) -> WeekReportResult:
    store = object_store.store()
    since = done_since(context, task.redo)
    context.log.info(f"week {task.week_start}, chunk {task.chunk + 1}/{task.chunk_count}: rendering to "
                     f"{store.describe()}"
                     + (f", only students not recorded since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""))
    with warehouse.retried_when_unreachable(context):
        result = render_week(warehouse.engine(), store, task.week_start, task.today, chunk_count=task.chunk_count,
                             chunks=[task.chunk], done_since=since, thumbnail=task.thumbnail, log=context.log.info)
    if result.failures:
        metadata = {
            "chunk": f"{task.chunk} of {task.chunk_count}",
            "students": dg.MetadataValue.int(result.students),
            "reports_written": dg.MetadataValue.int(result.reports_written),
            "failures": dg.MetadataValue.int(len(result.failures)),
            "failed_students": dg.MetadataValue.md(markdown_table(
                [{"user_id": f.user_id, "stage": f.stage, "error": f.error}
                 for f in result.failures[:MAX_FAILURES_LISTED]]
            )),
        }
        failure = dg.Failure(
            description=f"{len(result.failures)} of {result.students} students' reports failed "
            f"({', '.join(sorted({f.stage for f in result.failures}))}); the other {result.reports_written} are "
            "written and recorded. A retry or re-execution renders only the missing ones.",
            metadata=metadata,
        )
        # The object store is a flaky edge: when every failure was an upload the store may accept
        # later, the step is retried with backoff and renders only the students still missing.
        # Bad data fails the same way every time: it fails once.
        if all(f.stage == "upload" and f.retryable for f in result.failures):
            policy = object_store.retry_policy()
            raise dg.RetryRequested(max_retries=policy.max_retries,
                                    seconds_to_wait=policy.calculate_delay(context.retry_number + 1)) from failure
        raise failure
    return result


@dg.op(
    out=dg.Out(dg.Nothing),
    tags={K8S_CONFIG_TAG: json.dumps(SMALL_STEP_K8S)},
    description="Adds the chunks up into the week's metadata: counts, time split, links, a thumbnail.",
)
def record_weekly_reports(
    context: dg.OpExecutionContext, chunk_results: list[WeekReportResult], warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
) -> None:
    first = chunk_results[0]
    result = WeekReportResult(first.week_start, first.as_of, first.chunk_count,
                              sorted(chunk for part in chunk_results for chunk in part.chunks))
    for part in chunk_results:
        merge_chunk_result(result, part)
    with warehouse.retried_when_unreachable(context), warehouse.connect() as connection:
        row_count, week_rows = count_rows(connection, "report_artifacts", "week_start", result.week_start,
                                          result.week_start + timedelta(days=1))
    total = result.total_seconds
    metadata = {
        **row_counts(row_count, week_rows),
        "week_start": str(result.week_start),
        "as_of": str(result.as_of),
        "store": object_store.store().describe(),
        "students": dg.MetadataValue.int(result.students),
        "reports_written": dg.MetadataValue.int(result.reports_written),
        "artifacts_recorded": dg.MetadataValue.int(result.artifacts_recorded),
        "megabytes_written": dg.MetadataValue.float(round(result.bytes_written / 1e6, 2)),
        "chunks": f"{', '.join(map(str, result.chunks))} of {result.chunk_count}",
        # Summed over the chunk steps, which may have run side by side.
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
    context.add_output_metadata(metadata)


@dg.config_mapping
def weekly_reports_config(config: WeeklyReportsConfig) -> dict:
    """The asset's run config stays one block (ops: weekly_reports: config: ...); the planning
    step hands it on to the chunks in their tasks."""
    return {"plan_report_chunks": {"config": config.model_dump()}}


@dg.graph_asset(
    name="weekly_reports",
    ins={
        "weekly_kpi": dg.AssetIn(dagster_type=dg.Nothing),
        # θ trend of the last 8 weeks: calibration and online rows of mirt_ability.
        "mirt_ability": dg.AssetIn(dagster_type=dg.Nothing),
        # The week's seven days of accuracy per topic and attempts per day.
        "features_topic_daily": dg.AssetIn(
            dagster_type=dg.Nothing,
            partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True),
        ),
    },
    config=weekly_reports_config,
    partitions_def=weekly_partitions,
    group_name="reports",
    owners=["team:learning-analytics"],
    tags={"stage": "reports"},
    kinds={"typst", "html", "s3", "postgres"},
    description="A PDF (tagged PDF/UA-1) and an HTML report per student with a KPI row or activity in the ISO "
    "week: KPIs and their change, θ trend, accuracy per topic, attempts per day, churn level and "
    "recommendations. Stored at reports/{user_id}/{week_start}/report.{pdf|html}, recorded in report_artifacts. "
    "One step per chunk of students.",
    metadata=table_definition("report_artifacts", REPORT_ARTIFACTS_COLUMNS),
)
def weekly_reports(weekly_kpi, mirt_ability, features_topic_daily):
    tasks = plan_report_chunks(upstream=[weekly_kpi, mirt_ability, features_topic_daily])
    return record_weekly_reports(tasks.map(render_report_chunk).collect())
