"""Render a week's reports: read, draw, render, upload, record; chunk by chunk, student by student.

A week's students split into `chunk_count` chunks by a hash of user_id (report_chunk). A chunk is
independent and idempotent: it reads its own students, writes their objects under their own
keys and upserts their own report_artifacts rows, so chunks can run in turn in one process or
side by side on different machines (docs/decisions.md, "Weekly reports").

A report_artifacts row is written only after its object's upload succeeded (rows are upserted
in batches after the uploads; a crash in between leaves objects without rows, which the next
run replaces). One student's failure (unreadable figures, a render error, an upload that failed
after the store's own retries) is recorded and the others go on; the caller decides to fail.
With `done_since` (a retry) only students without both rows recorded since then are rendered.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from seedtest_pipeline.reports.data import ReportDataError, ReportWeek, add_charts, read_week_rows, student_report
from seedtest_pipeline.reports.render import TEMPLATES, ReportRenderer, ReportRenderError
from seedtest_pipeline.reports.store import CONTENT_TYPES, REPORT_FORMATS, ObjectStore, report_key
from seedtest_pipeline.warehouse import make_engine

STAGES = ("data", "charts", "pdf", "html", "upload", "record")
RECORD_BATCH = 500  # students whose rows are upserted together
SAMPLE_LINKS = 6

UPSERT_ARTIFACTS = sa.text(
    """
    INSERT INTO report_artifacts (user_id, week_start, format, url, file_size_bytes, sha256, generated_at)
    VALUES (:user_id, :week_start, :format, :url, :file_size_bytes, :sha256, now())
    ON CONFLICT (user_id, week_start, format) DO UPDATE
      SET url = excluded.url, file_size_bytes = excluded.file_size_bytes, sha256 = excluded.sha256,
          generated_at = excluded.generated_at
    """
)


@dataclass(frozen=True)
class ReportFailure:
    user_id: str
    stage: str  # data | render | upload
    error: str
    retryable: bool = False  # an upload the store says may succeed later (ObjectStore.retryable)


@dataclass
class WeekReportResult:
    week_start: date
    as_of: date
    chunk_count: int
    chunks: list[int]
    students: int = 0
    reports_written: int = 0  # students whose PDF and HTML are uploaded and recorded
    artifacts_recorded: int = 0
    bytes_written: int = 0
    failures: list[ReportFailure] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    samples: list[dict] = field(default_factory=list)
    thumbnail_png: bytes | None = None
    thumbnail_user_id: str | None = None

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def render_week(
    engine: Engine,
    store: ObjectStore,
    week_start: date,
    today: date,
    *,
    chunk_count: int = 1,
    chunks: list[int] | None = None,
    done_since: datetime | None = None,
    renderer: ReportRenderer | None = None,
    thumbnail: bool = True,
    processes: int = 1,
    log: Callable[[str], None] = lambda message: None,
) -> WeekReportResult:
    """Render the given chunks of the week (all by default): in turn, or `processes` at a time in
    separate processes (then the time split adds up the processes' seconds); see the module
    docstring."""
    if chunk_count < 1:
        raise ValueError(f"chunk_count must be >= 1, got {chunk_count}")
    selected = sorted(set(range(chunk_count) if chunks is None else chunks))
    if not selected or any(not 0 <= c < chunk_count for c in selected):
        raise ValueError(f"chunks must be a non-empty subset of 0..{chunk_count - 1}, got {chunks}")
    week = ReportWeek.of(week_start, today)
    result = WeekReportResult(week.week_start, week.as_of, chunk_count, selected)
    if processes > 1 and len(selected) > 1:
        # Chunks share nothing, so separate processes render them side by side (typst and Jinja
        # hold the GIL). "spawn": a fresh interpreter per worker, safe inside a threaded run worker.
        database_url = engine.url.render_as_string(hide_password=False)
        template_dir = renderer.template_dir if renderer else TEMPLATES
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(processes, len(selected)), mp_context=context) as pool:
            futures = {pool.submit(_render_chunk_in_process, database_url, store, week, template_dir, chunk_count,
                                   chunk, done_since, thumbnail and chunk == selected[0]): chunk for chunk in selected}
            for future in as_completed(futures):
                part = future.result()
                merge_chunk_result(result, part)
                log(f"chunk {futures[future] + 1}/{chunk_count}: {part.students} students; "
                    f"{result.reports_written} written, {len(result.failures)} failed so far")
        return result
    renderer = renderer or ReportRenderer()
    for chunk in selected:
        before = result.students
        render_chunk(engine, store, week, renderer, result, chunk_count, chunk, done_since, thumbnail)
        log(f"chunk {chunk + 1}/{chunk_count}: {result.students - before} students; "
            f"{result.reports_written} written, {len(result.failures)} failed so far")
    return result


def _render_chunk_in_process(database_url: str, store: ObjectStore, week: ReportWeek, template_dir, chunk_count: int,
                             chunk: int, done_since: datetime | None, thumbnail: bool) -> WeekReportResult:
    engine = make_engine(database_url)
    try:
        part = WeekReportResult(week.week_start, week.as_of, chunk_count, [chunk])
        render_chunk(engine, store, week, ReportRenderer(template_dir), part, chunk_count, chunk, done_since,
                     thumbnail)
        return part
    finally:
        engine.dispose()


def merge_chunk_result(result: WeekReportResult, part: WeekReportResult) -> None:
    """Add one chunk's result (rendered elsewhere: a process, a step) to the week's."""
    result.students += part.students
    result.reports_written += part.reports_written
    result.artifacts_recorded += part.artifacts_recorded
    result.bytes_written += part.bytes_written
    result.failures += part.failures
    for stage, seconds in part.seconds.items():
        result.seconds[stage] += seconds
    result.samples = (result.samples + part.samples)[:SAMPLE_LINKS]
    if part.thumbnail_png and result.thumbnail_png is None:
        result.thumbnail_png, result.thumbnail_user_id = part.thumbnail_png, part.thumbnail_user_id


def render_chunk(engine: Engine, store: ObjectStore, week: ReportWeek, renderer: ReportRenderer,
                 result: WeekReportResult, chunk_count: int, chunk: int, done_since: datetime | None,
                 thumbnail: bool) -> None:
    seconds = result.seconds
    started = time.perf_counter()
    with engine.begin() as connection:
        rows = read_week_rows(connection, week, chunk_count, [chunk], done_since)
    seconds["data"] += time.perf_counter() - started
    result.students += len(rows.user_ids)
    pending: list[dict] = []
    pending_students: list[str] = []

    def record() -> None:
        started = time.perf_counter()
        if pending:
            with engine.begin() as connection:
                connection.execute(UPSERT_ARTIFACTS, pending)
        result.artifacts_recorded += len(pending)
        complete = {}
        for row in pending:
            complete[row["user_id"]] = complete.get(row["user_id"], 0) + 1
        result.reports_written += sum(1 for user_id in pending_students if complete.get(user_id) == len(REPORT_FORMATS))
        pending.clear()
        pending_students.clear()
        seconds["record"] += time.perf_counter() - started

    for user_id in rows.user_ids:
        mark = time.perf_counter()
        try:
            data = student_report(rows, user_id, week)
            keys = {fmt: report_key(user_id, week.week_start, fmt) for fmt in REPORT_FORMATS}
        except (ReportDataError, ValueError) as error:
            result.failures.append(ReportFailure(user_id, "data", str(error)))
            continue
        now = time.perf_counter()
        seconds["data"] += now - mark
        mark = now
        add_charts(data)
        now = time.perf_counter()
        seconds["charts"] += now - mark
        mark = now
        try:
            data_json = renderer.data_json(data)
            bodies = {"pdf": renderer.pdf(data_json)}
            now = time.perf_counter()
            seconds["pdf"] += now - mark
            mark = now
            bodies["html"] = renderer.html(data)
            now = time.perf_counter()
            seconds["html"] += now - mark
            mark = now
        except (ReportRenderError, ValueError) as error:
            result.failures.append(ReportFailure(user_id, "render", str(error)))
            continue
        for report_format in REPORT_FORMATS:
            body = bodies[report_format]
            try:
                url = store.put(keys[report_format], body, CONTENT_TYPES[report_format])
            except Exception as error:  # noqa: BLE001 (the isolation boundary: any store error is this student's)
                result.failures.append(ReportFailure(user_id, "upload", f"{keys[report_format]}: {error}",
                                                     retryable=store.retryable(error)))
                break
            pending.append({"user_id": user_id, "week_start": week.week_start, "format": report_format, "url": url,
                            "file_size_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
            result.bytes_written += len(body)
            if len(result.samples) < SAMPLE_LINKS:
                result.samples.append({"user_id": user_id, "format": report_format, "url": url})
        seconds["upload"] += time.perf_counter() - mark
        pending_students.append(user_id)
        if thumbnail and result.thumbnail_png is None:
            result.thumbnail_png, result.thumbnail_user_id = renderer.png(data_json), user_id
        if len(pending_students) >= RECORD_BATCH:
            record()
    record()
