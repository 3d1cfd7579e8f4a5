"""features_topic_daily: per user, topic and UTC day, replaced window by window.

A window is computed into features_topic_daily_staging, then one transaction replaces the
window's rows with the staged ones. A long window (a backfill) is cut into consecutive parts
that separate connections compute at the same time, each a serial set-based pass over its days;
the parts need no coordination: each day's I_t reads the 27 days before it through the query's
own light context scan. The same pass stages the findings of input the row rules could not read.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from seedtest_pipeline.attempts import SAMPLE_SESSIONS, InputIssues
from seedtest_pipeline.queries import sql_text
from seedtest_pipeline.warehouse import replace_rows
from seedtest_pipeline.windows import DayRange

TABLE = "features_topic_daily"
STAGING_TABLE = "features_topic_daily_staging"
KEY_COLUMNS = ("user_id", "topic_id", "date")
DATA_COLUMNS = (
    "attempts", "correct", "hints", "avg_time_ms", "rt_median", "rt_correct_median",
    "improvement", "last_seen_at",
)
COLUMNS = (*KEY_COLUMNS, *DATA_COLUMNS, "computed_at")
# A part shorter than this is not worth its own connection.
MIN_PART_DAYS = 7
# Memory for one part's sort: a part of a year backfill sorts ~5M attempts.
PART_WORK_MEM = "256MB"


def backfill_connections() -> int:
    """How many connections compute a long window at once (the database server's cores)."""
    return max(1, int(os.environ.get("SEEDTEST_BACKFILL_CONNECTIONS", "2")))


@dataclass(frozen=True)
class FeaturesResult:
    days: DayRange
    parts: int
    rows_deleted: int  # gone or changed
    rows_written: int  # new or changed
    rows_unchanged: int
    attempts: int
    users: int
    topics: int
    seconds: float
    issues: InputIssues


def split_days(days: DayRange, parts: int) -> list[DayRange]:
    """`days` cut into at most `parts` consecutive ranges of whole days, none shorter than a week."""
    parts = max(1, min(parts, days.days // MIN_PART_DAYS))
    size, extra = divmod(days.days, parts)
    ranges, first = [], days.first
    for index in range(parts):
        end = first + timedelta(days=size + (1 if index < extra else 0))
        ranges.append(DayRange(first, end))
        first = end
    return ranges


def write_features(engine: Engine, days: DayRange, parts: int | None = None) -> FeaturesResult:
    """Recompute the features of `days` and replace their rows atomically.

    `parts`: how many connections compute the window (default backfill_connections(); a window
    shorter than two weeks is one part). A failure anywhere leaves the previous rows in place.
    """
    started = time.perf_counter()
    ranges = split_days(days, parts if parts is not None else backfill_connections())
    run_id = str(uuid.uuid4())
    try:
        with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            alone = len(ranges) == 1
            result_issues = list(pool.map(lambda part: stage_part(engine, run_id, part, alone), ranges))
        with engine.begin() as connection:
            deleted, written, unchanged = replace_window(
                connection, days, STAGED_FEATURES, {**days.bounds(), "run_id": run_id}
            )
            issues = merge_issues([staged_issues(connection, run_id), *result_issues])
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"DELETE FROM {STAGING_TABLE} WHERE run_id = CAST(:run_id AS uuid) "
                        "OR staged_at < now() - interval '1 day'"),  # and leftovers of killed runs
                {"run_id": run_id},
            )
    with engine.connect() as connection:
        totals = connection.execute(
            sa.text(
                f"SELECT coalesce(sum(attempts), 0) AS attempts, count(DISTINCT user_id) AS users, "
                f"count(DISTINCT topic_id) AS topics FROM {TABLE} "
                "WHERE date >= :first_day AND date < :end_day"
            ),
            days.bounds(),
        ).one()
    return FeaturesResult(
        days=days,
        parts=len(ranges),
        rows_deleted=deleted,
        rows_written=written,
        rows_unchanged=unchanged,
        attempts=int(totals.attempts),
        users=totals.users,
        topics=totals.topics,
        seconds=time.perf_counter() - started,
        issues=issues,
    )


# The staged groups that are features: a user and at least one readable attempt.
STAGED_FEATURES = (
    f"SELECT {', '.join(COLUMNS)} FROM {STAGING_TABLE} "
    "WHERE run_id = CAST(:run_id AS uuid) AND user_id IS NOT NULL AND attempts > 0"
)


def replace_window(connection: Connection, days: DayRange, staged_select: str, params: dict) -> tuple[int, int, int]:
    return replace_rows(
        connection,
        TABLE,
        staged_select,
        params,
        window_condition="date >= :first_day AND date < :end_day",
        key_columns=KEY_COLUMNS,
        data_columns=DATA_COLUMNS,
        stamp_column="computed_at",
    )


def stage_part(engine: Engine, run_id: str, part: DayRange, alone: bool) -> InputIssues:
    """Compute one part of the window into the staging table; return the findings about whole
    results of that part (the element findings are staged with the groups)."""
    bounds = part.bounds()
    with engine.begin() as connection:
        if not alone:
            # One connection per part is the parallelism: no parallel plan inside it.
            connection.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            connection.execute(sa.text(f"SET LOCAL work_mem = '{PART_WORK_MEM}'"))
        # CREATE TABLE AS may run in parallel where INSERT ... SELECT may not: a part alone (a
        # daily partition) then reads its I_t context of 27 days with PostgreSQL's workers.
        connection.execute(
            sa.text(f"CREATE TEMP TABLE part_rows ON COMMIT DROP AS {sql_text('features_topic_daily')}"), bounds
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {STAGING_TABLE} (run_id, {', '.join(COLUMNS)}, findings) "
                f"SELECT CAST(:run_id AS uuid), {', '.join(COLUMNS)}, findings FROM part_rows"
            ),
            {"run_id": run_id},
        )
        rows = connection.execute(
            sa.text(
                "SELECT kind, count(*) AS findings, "
                "(array_agg(DISTINCT session_id ORDER BY session_id))[1:CAST(:samples AS int)] AS samples "
                "FROM attempt_result_issues "
                "WHERE completed_at >= :window_start AND completed_at < :window_end GROUP BY kind"
            ),
            {**bounds, "samples": SAMPLE_SESSIONS},
        ).all()
    return InputIssues({row.kind: row.findings for row in rows}, {row.kind: list(row.samples) for row in rows})


def staged_issues(connection: Connection, run_id: str) -> InputIssues:
    """The element findings staged by a run's parts, by kind, with sample sessions."""
    rows = connection.execute(
        sa.text(
            f"""
            SELECT split_part(f, ':', 1) AS kind, count(*) AS findings,
                   (array_agg(DISTINCT substr(f, strpos(f, ':') + 1)
                              ORDER BY substr(f, strpos(f, ':') + 1)))[1:CAST(:samples AS int)] AS samples
            FROM {STAGING_TABLE}, unnest(findings) AS f
            WHERE run_id = CAST(:run_id AS uuid) AND findings IS NOT NULL
            GROUP BY 1
            """
        ),
        {"run_id": run_id, "samples": SAMPLE_SESSIONS},
    ).all()
    return InputIssues({row.kind: row.findings for row in rows}, {row.kind: list(row.samples) for row in rows})


def merge_issues(parts) -> InputIssues:
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    for part in parts:
        for kind, count in part.counts.items():
            counts[kind] = counts.get(kind, 0) + count
            samples[kind] = sorted({*samples.get(kind, []), *part.samples[kind]})[:SAMPLE_SESSIONS]
    return InputIssues(counts, samples)


def preview(connection: Connection, days: DayRange, limit: int = 10) -> list[dict]:
    rows = connection.execute(
        sa.text(
            f"SELECT user_id, topic_id, date, attempts, correct, hints, rt_median, improvement "
            f"FROM {TABLE} WHERE date >= :first_day AND date < :end_day "
            "ORDER BY attempts DESC, user_id, topic_id, date LIMIT :limit"
        ),
        {**days.bounds(), "limit": limit},
    )
    return [dict(row._mapping) for row in rows]


def days_present(connection: Connection, days: DayRange) -> list:
    """Which days of the range have feature rows."""
    rows = connection.execute(
        sa.text(f"SELECT DISTINCT date FROM {TABLE} WHERE date >= :first_day AND date < :end_day ORDER BY 1"),
        days.bounds(),
    )
    return [row.date for row in rows]
