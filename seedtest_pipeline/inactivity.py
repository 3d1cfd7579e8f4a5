"""user_inactivity (SPEC §7): who is inactive on each UTC day, replacing the detect-inactivity CronJob.

A user is inactive on day D when their last activity lies more than N whole UTC days before D
(N = threshold_days, default 7) and within the 90 days ending at D, the horizon the KPIs use too:
days_inactive = D - (UTC day of the last activity), inactive when N < days_inactive <= 89.
Activity is a session with an attempt the row rules keep, credited to the user key
(seedtest_user_key), as everywhere else. Each day is one set-based statement over its own 90 days
(sql/user_inactivity.sql); a range of days is written in one transaction by the project's writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline.kpi import READ_DAYS
from seedtest_pipeline.queries import statement
from seedtest_pipeline.warehouse import replace_rows
from seedtest_pipeline.windows import DayRange

TABLE = "user_inactivity"
KEY_COLUMNS = ("day", "user_id")
DATA_COLUMNS = ("last_activity_at", "days_inactive", "sessions_56d", "threshold_days")
COLUMNS = (*KEY_COLUMNS, *DATA_COLUMNS, "computed_at")
DEFAULT_THRESHOLD_DAYS = 7
# "Within the last 90 days": the 90 days ending at D, D included, as the KPIs read them, so a
# user has KPIs exactly while they can be listed here (last activity at most 89 days before D).
HORIZON_DAYS = READ_DAYS
# Sessions are counted over the 56 days ending at D, the window of the churn risk S.
SESSION_DAYS = 56
STAGED = "user_inactivity_staged"
# Bars of the histogram in the metadata: days inactive from the threshold on, cut at these.
HISTOGRAM_EDGES = (15, 22, 31, 61)


def day_parameters(day: date, threshold_days: int) -> dict:
    return {
        "day": day,
        "horizon_start": day - timedelta(days=HORIZON_DAYS - 1),
        "sessions_start": day - timedelta(days=SESSION_DAYS - 1),
        "threshold_days": threshold_days,
    }


@dataclass(frozen=True)
class InactivityResult:
    days: DayRange
    threshold_days: int
    rows_deleted: int
    rows_written: int
    rows_unchanged: int
    inactive_by_day: dict[date, int] = field(default_factory=dict)
    seconds: float = 0.0


def check_threshold(threshold_days: int) -> None:
    if not 0 <= threshold_days < HORIZON_DAYS - 1:
        raise ValueError(f"threshold_days must be between 0 and {HORIZON_DAYS - 2} (the horizon is {HORIZON_DAYS} "
                         f"days), got {threshold_days}")


def write_inactivity(connection: Connection, days: DayRange, threshold_days: int = DEFAULT_THRESHOLD_DAYS) -> InactivityResult:
    """Replace the rows of `days` in user_inactivity, in the caller's transaction: each day
    computed on its own into a temporary table, then written by warehouse.replace_rows (rows that
    did not change are left as they are, so a re-run writes nothing)."""
    check_threshold(threshold_days)
    started = time.perf_counter()
    connection.execute(sa.text(f"DROP TABLE IF EXISTS pg_temp.{STAGED}"))
    connection.execute(sa.text(f"CREATE TEMP TABLE {STAGED} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DROP"))
    computed = statement("user_inactivity").text
    inactive_by_day = {}
    for offset in range(days.days):
        day = days.first + timedelta(days=offset)
        inactive_by_day[day] = connection.execute(
            sa.text(f"INSERT INTO {STAGED} (user_id, day, last_activity_at, days_inactive, sessions_56d, threshold_days) "
                    f"{computed}"),
            day_parameters(day, threshold_days),
        ).rowcount
    deleted, written, unchanged = replace_rows(
        connection, TABLE, f"SELECT {', '.join(COLUMNS)} FROM {STAGED} ORDER BY day, user_id",
        {"first_day": days.first, "end_day": days.end},
        window_condition="day >= :first_day AND day < :end_day",
        key_columns=KEY_COLUMNS, data_columns=DATA_COLUMNS, stamp_column="computed_at",
    )
    return InactivityResult(days, threshold_days, deleted, written, unchanged, inactive_by_day,
                            time.perf_counter() - started)


@dataclass(frozen=True)
class DaySummary:
    day: date
    inactive: int
    newly_inactive: int  # inactive on the day, not the day before: days_inactive = threshold + 1
    histogram: list[tuple[str, int]]
    preview: list[dict]


def summarise_day(connection: Connection, day: date, threshold_days: int, preview_rows: int = 10) -> DaySummary:
    """What the metadata shows for one day, from the stored rows."""
    counts = dict(connection.execute(
        sa.text(f"SELECT days_inactive, count(*) FROM {TABLE} WHERE day = :day GROUP BY 1"), {"day": day}).all())
    edges = [threshold_days + 1, *(edge for edge in HISTOGRAM_EDGES if edge > threshold_days + 1), HORIZON_DAYS]
    histogram = [(f"{low}-{high - 1}" if high - 1 > low else str(low),
                  sum(n for days, n in counts.items() if low <= days < high))
                 for low, high in zip(edges, edges[1:])]
    # Those who just became inactive first: the ones worth a nudge.
    preview = [dict(row._mapping) for row in connection.execute(
        sa.text(f"SELECT user_id, days_inactive, "
                f"to_char(last_activity_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS last_activity_utc, sessions_56d "
                f"FROM {TABLE} WHERE day = :day ORDER BY days_inactive, user_id LIMIT :limit"),
        {"day": day, "limit": preview_rows})]
    return DaySummary(day, sum(counts.values()), counts.get(threshold_days + 1, 0), histogram, preview)
