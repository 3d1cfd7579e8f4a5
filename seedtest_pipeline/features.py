"""features_topic_daily: per user, topic and UTC day, replaced window by window."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline.attempts import InputIssues, input_issues
from seedtest_pipeline.queries import sql_text
from seedtest_pipeline.warehouse import replace_rows
from seedtest_pipeline.windows import DayRange

TABLE = "features_topic_daily"
KEY_COLUMNS = ("user_id", "topic_id", "date")
DATA_COLUMNS = (
    "attempts", "correct", "hints", "avg_time_ms", "rt_median", "rt_correct_median",
    "improvement", "last_seen_at",
)


@dataclass(frozen=True)
class FeaturesResult:
    days: DayRange
    rows_deleted: int
    rows_written: int
    attempts: int
    users: int
    topics: int
    seconds: float
    issues: InputIssues


def write_features(connection: Connection, days: DayRange) -> FeaturesResult:
    """Recompute the features of `days` and replace their rows in the caller's transaction."""
    started = time.perf_counter()
    params = days.bounds()
    deleted, written = replace_rows(
        connection,
        TABLE,
        sql_text("features_topic_daily"),
        params,
        window_condition="date >= :first_day AND date < :end_day",
        key_columns=KEY_COLUMNS,
        data_columns=DATA_COLUMNS,
        stamp_column="computed_at",
    )
    totals = connection.execute(
        sa.text(
            f"SELECT coalesce(sum(attempts), 0) AS attempts, count(DISTINCT user_id) AS users, "
            f"count(DISTINCT topic_id) AS topics FROM {TABLE} "
            "WHERE date >= :first_day AND date < :end_day"
        ),
        params,
    ).one()
    issues = input_issues(connection, params["window_start"], params["window_end"])
    return FeaturesResult(
        days=days,
        rows_deleted=deleted,
        rows_written=written,
        attempts=int(totals.attempts),
        users=totals.users,
        topics=totals.topics,
        seconds=time.perf_counter() - started,
        issues=issues,
    )


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
