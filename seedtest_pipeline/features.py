"""features_topic_daily: per user, topic and UTC day, replaced window by window.

A window is computed in parts, each into its own unlogged table, then one transaction replaces
the window's rows with the parts' rows. A long window (a backfill) is cut into consecutive parts
that separate connections compute at the same time, each a serial set-based pass over its days.
Each part's I_t needs the users' daily counts of the 27 days before it (its context): a part
counts them from exam_results itself, except a part that its connection computes right after the
part before it, which sums them from that part's rows. The writer writes the parts in date order,
each as soon as it is ready; the last part is cut in two so that the writer writes most of it
while its connection computes a short tail. The same pass keeps the findings of input the row
rules could not read. The part tables are dropped when the run ends, whether it succeeded or not.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from seedtest_pipeline import settings
from seedtest_pipeline.attempts import SAMPLE_SESSIONS, InputIssues, merge_issues
from seedtest_pipeline.queries import sql_text
from seedtest_pipeline.warehouse import replace_rows
from seedtest_pipeline.windows import IMPROVEMENT_CONTEXT_DAYS, DayRange, day_start

TABLE = "features_topic_daily"
KEY_COLUMNS = ("date", "user_id", "topic_id")
DATA_COLUMNS = (
    "attempts", "correct", "hints", "avg_time_ms", "rt_median", "rt_correct_median",
    "improvement", "last_seen_at",
)
COLUMNS = (*KEY_COLUMNS, *DATA_COLUMNS, "computed_at")
# A part shorter than this is not worth its own connection.
MIN_PART_DAYS = 7
# Writing a part's rows costs about a tenth of computing them (bench/README.md). The writer writes
# part k while part k + 1 is still being computed, so part k + 1 gets that much more work; the
# last part's tail, computed while the writer writes the rest of that part, gets that share of it.
WRITE_SHARE = 0.1
PART_GROWTH = 1 + WRITE_SHARE
# Reading the I_t context of a part from exam_results (the users' daily counts of the 27 days
# before it) costs about this share of computing those days' features: it reads their JSON too.
CONTEXT_COST = 0.6
# Memory for one part's sorts and hashes (the per-day sorts need little; the I_t window more).
PART_WORK_MEM = "256MB"
# Part tables are named features_topic_daily_part_<unix time>_<random>_<index>: a run drops its
# own, and drops those a killed run left behind once they are a day old.
PART_PREFIX = f"{TABLE}_part_"
ABANDONED_AFTER_SECONDS = 86_400


def backfill_connections() -> int:
    """How many connections compute a long window at once (the database server's cores;
    SEEDTEST_BACKFILL_CONNECTIONS, validated by seedtest_pipeline.settings)."""
    return settings.backfill_connections()


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


@dataclass(frozen=True)
class Part:
    """Consecutive days of a window, computed on one connection into one table."""

    days: DayRange
    # Computed right after the part before it, on the same connection, and takes its I_t context
    # from that part's rows instead of reading it from exam_results.
    follows: bool = False


def split_days(days: DayRange, connections: int, sessions: dict | None = None) -> list[Part]:
    """`days` cut into consecutive parts of whole days, none shorter than a week, for at most
    `connections` connections: one part each, and on the last connection a tail part after its
    first (when that first part holds the tail's whole I_t context, 27 days).

    The cuts balance the work: `sessions` per day (a missing day counts none; without it every
    day counts the same), the window's days and, for each part that reads it from exam_results,
    the I_t context before its first day. Each connection's part gets PART_GROWTH more work than
    the one before (it is still being computed while the one before is written), and the tail
    WRITE_SHARE of the part it follows (it is computed while that part is written), so the
    writer is left with only the short tail to write once everything is computed.
    """
    connections = max(1, min(connections, days.days // MIN_PART_DAYS))
    weights = [PART_GROWTH**index for index in range(connections)]
    follows = [False] * connections
    if days.days >= (connections - 1) * MIN_PART_DAYS + IMPROVEMENT_CONTEXT_DAYS + MIN_PART_DAYS:
        weights.append(WRITE_SHARE * weights[-1])
        follows.append(True)
    sessions = sessions or {}
    load = lambda day: 1 + sessions.get(day, 0)  # noqa: E731
    daily = [load(days.first + timedelta(days=index)) for index in range(days.days)]

    def context(index: int) -> float:
        """The work of reading the context of a part that starts on the window's day `index`."""
        start = days.first + timedelta(days=index)
        before = range(1, IMPROVEMENT_CONTEXT_DAYS + 1)
        return CONTEXT_COST * sum(load(start - timedelta(days=back)) for back in before)

    mean_context = CONTEXT_COST * IMPROVEMENT_CONTEXT_DAYS * sum(daily) / len(daily)
    total = sum(daily) + context(0) + (connections - 1) * mean_context
    ends, start = [], 0
    for index in range(len(weights) - 1):
        target = total * weights[index] / sum(weights)
        work, day = (0 if follows[index] else context(start)), start
        while day < days.days and work + daily[day] / 2 < target:  # cut nearest to the target
            work += daily[day]
            day += 1
        # At least a week per part, this one and every one still to come.
        day = max(day, start + MIN_PART_DAYS)
        day = min(day, days.days - (len(weights) - 1 - index) * MIN_PART_DAYS)
        ends.append(day)
        start = day
    ends.append(days.days)
    starts = [0, *ends[:-1]]
    parts = [
        Part(DayRange(days.first + timedelta(days=a), days.first + timedelta(days=b)), follow)
        for a, b, follow in zip(starts, ends, follows)
    ]
    if parts[-1].follows and parts[-2].days.days < IMPROVEMENT_CONTEXT_DAYS:
        # The part before would not hold the tail's whole context: no tail, one part instead.
        parts[-2:] = [Part(DayRange(parts[-2].days.first, days.end), parts[-2].follows)]
    return parts


def sessions_per_day(connection: Connection, days: DayRange) -> dict:
    """Roughly how many results each day of `days` and of the I_t context before it holds, from a
    1% sample of exam_results' pages (a few milliseconds; an exact count reads every result).
    Enough to balance parts; a table too small to sample gives no counts, and days then count
    the same."""
    bounds = days.bounds()
    rows = connection.execute(
        sa.text(
            "SELECT (coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date AS day, count(*) AS sessions "
            "FROM exam_results TABLESAMPLE SYSTEM (1) REPEATABLE (0) "
            "WHERE coalesce(updated_at, created_at) >= :context_start "
            "AND coalesce(updated_at, created_at) < :window_end GROUP BY 1"
        ),
        {"context_start": day_start(bounds["context_day"]), "window_end": bounds["window_end"]},
    )
    return {row.day: row.sessions for row in rows}


def write_features(engine: Engine, days: DayRange, connections: int | None = None) -> FeaturesResult:
    """Recompute the features of `days` and replace their rows atomically.

    `connections`: how many connections compute the window at once (default
    backfill_connections(); a window shorter than two weeks is one part). One more connection
    holds the write transaction: it writes each part, in date order, as soon as it is computed,
    while later parts are still being computed. A failure anywhere leaves the previous rows in
    place.
    """
    started = time.perf_counter()
    connections = connections if connections is not None else backfill_connections()
    if days.days >= 2 * MIN_PART_DAYS:
        with engine.connect() as connection:
            parts = split_days(days, connections, sessions_per_day(connection, days))
    else:
        parts = split_days(days, connections)
    run = f"{int(time.time())}_{uuid.uuid4().hex[:8]}"
    tables = [f"{PART_PREFIX}{run}_{index}" for index in range(len(parts))]
    keys_tables = [f"{table}_keys" for table in tables]
    deleted = written = unchanged = 0
    try:
        drop_abandoned_parts(engine)
        # Threads, not connections: a part that follows another waits for it without a connection,
        # and each part is summarised on a thread of its own while the writer writes it.
        with ThreadPoolExecutor(max_workers=2 * len(parts)) as pool, engine.begin() as connection:
            computing = []
            for index, (table, part) in enumerate(zip(tables, parts)):
                if part.follows:
                    computing.append(pool.submit(
                        compute_part, engine, table, part.days, context_table=tables[index - 1], after=computing[-1]
                    ))
                else:
                    computing.append(pool.submit(compute_part, engine, table, part.days))
            issues = [result_issues(connection, days)]  # from a partial index: milliseconds
            summarising = []
            for table, keys_table, part, computed in zip(tables, keys_tables, parts, computing):
                computed.result()
                # Another connection summarises the part while this one writes it.
                summarising.append(pool.submit(summarise_part, engine, table, keys_table))
                part_deleted, part_written, part_unchanged = write_part(connection, table, part.days)
                deleted, written, unchanged = deleted + part_deleted, written + part_written, unchanged + part_unchanged
            issues += [summarised.result() for summarised in summarising]
            window_keys = " UNION ALL ".join(f"SELECT * FROM {keys_table}" for keys_table in keys_tables)
            totals = connection.execute(sa.text(
                # A user's row and a topic's row each hold the same attempts: count them once.
                "SELECT coalesce(sum(attempts) FILTER (WHERE user_id IS NOT NULL), 0) AS attempts, "
                "count(DISTINCT user_id) AS users, "
                f"count(DISTINCT topic_id) AS topics FROM ({window_keys}) AS window_keys"
            )).one()
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(tables + keys_tables)}"))
    return FeaturesResult(
        days=days,
        parts=len(parts),
        rows_deleted=deleted,
        rows_written=written,
        rows_unchanged=unchanged,
        attempts=int(totals.attempts),
        users=totals.users,
        topics=totals.topics,
        seconds=time.perf_counter() - started,
        issues=merge_issues(issues),
    )


# The groups that are features: a user and at least one readable attempt. (Groups of unreadable
# input only are kept in the part tables for their findings.)
FEATURE_GROUPS = "user_id IS NOT NULL AND attempts > 0"


def drop_abandoned_parts(engine: Engine) -> None:
    """Drop part tables that a killed run left behind (a day old: no live run is that slow)."""
    with engine.begin() as connection:
        names = connection.scalars(
            sa.text("SELECT relname FROM pg_class WHERE relkind = 'r' AND starts_with(relname, :prefix) "
                    "AND pg_table_is_visible(oid)"),
            {"prefix": PART_PREFIX},
        ).all()
        for name in names:
            born = re.match(rf"{PART_PREFIX}(\d+)_", name)
            if born and time.time() - int(born.group(1)) > ABANDONED_AFTER_SECONDS:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


def compute_part(
    engine: Engine, table: str, part: DayRange, context_table: str | None = None, after: Future | None = None
) -> None:
    """Compute one part of the window into its own unlogged `table` (with each group's findings).

    Its I_t context comes from exam_results, or, with `context_table`, from the features of the
    part computed just before (which must hold the 27 days before `part`): then the computation
    waits for that part (`after`) first."""
    if after is not None:
        after.result()
    if context_table is None:
        context = sql_text("features_context")
    else:
        context = (f"SELECT user_id, date, sum(attempts)::integer AS attempts, sum(correct)::integer AS correct "
                   f"FROM {context_table} WHERE date >= :context_day AND {FEATURE_GROUPS} GROUP BY user_id, date")
    with engine.begin() as connection:
        # One connection per part is the parallelism: no parallel plan inside it.
        connection.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
        connection.execute(sa.text(f"SET LOCAL work_mem = '{PART_WORK_MEM}'"))
        connection.execute(sa.text(f"CREATE TEMP TABLE features_context ON COMMIT DROP AS {context}"), part.bounds())
        # UNLOGGED: scratch rows, rebuilt by re-running, so they need no WAL.
        connection.execute(
            sa.text(f"CREATE UNLOGGED TABLE {table} AS {sql_text('features_topic_daily')}"), part.bounds()
        )


def write_part(connection: Connection, table: str, part: DayRange) -> tuple[int, int, int]:
    """Replace the part's days in features_topic_daily with the part's rows.
    Returns (deleted, written, unchanged)."""
    staged = f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE {FEATURE_GROUPS}"
    # In date order: the rows reach the date-led primary key nearly in key order, which is
    # several times cheaper than inserting in any other order.
    return replace_rows(
        connection,
        TABLE,
        staged,
        part.bounds(),
        window_condition="date >= :first_day AND date < :end_day",
        key_columns=KEY_COLUMNS,
        data_columns=DATA_COLUMNS,
        stamp_column="computed_at",
    )


def summarise_part(engine: Engine, table: str, keys_table: str) -> InputIssues:
    """The part's users and topics with their attempts, into `keys_table` (a row per user with
    topic_id NULL, a row per topic with user_id NULL), for the run's totals; returns the part's
    element findings."""
    with engine.begin() as connection:
        connection.execute(sa.text(
            f"CREATE UNLOGGED TABLE {keys_table} AS SELECT user_id, topic_id, sum(attempts) AS attempts "
            f"FROM {table} WHERE {FEATURE_GROUPS} GROUP BY GROUPING SETS ((user_id), (topic_id))"
        ))
        return element_issues(connection, table)


def result_issues(connection: Connection, days: DayRange) -> InputIssues:
    """Findings about whole results of the window (questions missing or not an array, no user)."""
    rows = connection.execute(
        sa.text(
            "SELECT kind, count(*) AS findings, "
            "(array_agg(DISTINCT session_id ORDER BY session_id))[1:CAST(:samples AS int)] AS samples "
            "FROM attempt_result_issues "
            "WHERE (completed_at AT TIME ZONE 'UTC')::date >= :first_day "
            "AND (completed_at AT TIME ZONE 'UTC')::date < :end_day GROUP BY kind"
        ),
        {**days.bounds(), "samples": SAMPLE_SESSIONS},
    ).all()
    return InputIssues({row.kind: row.findings for row in rows}, {row.kind: list(row.samples) for row in rows})


def element_issues(connection: Connection, table: str) -> InputIssues:
    """The element findings kept with a part's groups, by kind, with sample sessions. Each finding
    value is 'kind[,kind]:session_id': the kinds before the first ':', then the session."""
    findings = f"SELECT findings FROM {table} WHERE findings IS NOT NULL"
    rows = connection.execute(
        sa.text(
            f"""
            SELECT kind, count(*) AS findings,
                   (array_agg(DISTINCT session_id ORDER BY session_id))[1:CAST(:samples AS int)] AS samples
            FROM ({findings}) AS staged,
                 unnest(staged.findings) AS f,
                 substr(f, strpos(f, ':') + 1) AS session_id,
                 unnest(string_to_array(split_part(f, ':', 1), ',')) AS kind
            GROUP BY kind
            """
        ),
        {"samples": SAMPLE_SESSIONS},
    ).all()
    return InputIssues({row.kind: row.findings for row in rows}, {row.kind: list(row.samples) for row in rows})


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


def history_start(connection: Connection) -> date | None:
    """The UTC day of the earliest session in exam_results (from the completed_at index)."""
    first = connection.scalar(sa.text("SELECT min(coalesce(updated_at, created_at)) FROM exam_results"))
    return None if first is None else first.astimezone(timezone.utc).date()


def source_written_by_day(connection: Connection, days: DayRange) -> dict[date, datetime]:
    """Per day of `days`: when a session of that day was last written (created or updated)."""
    rows = connection.execute(
        sa.text(
            "SELECT (coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date AS day, "
            "max(greatest(created_at, updated_at)) AS written FROM exam_results "
            "WHERE coalesce(updated_at, created_at) >= :window_start AND coalesce(updated_at, created_at) < :window_end "
            "GROUP BY 1"
        ),
        days.bounds(),
    )
    return {row.day: row.written for row in rows}


@dataclass(frozen=True)
class Completeness:
    """Which days of a week's features cannot be trusted, and why."""

    judged: list[date]
    missing: list[date]  # never materialised
    failed: list[date]  # the latest attempt failed
    stale: list[date]  # sessions of the day were written after its latest materialisation

    @property
    def complete(self) -> bool:
        return not (self.missing or self.failed or self.stale)


def judge_completeness(
    days: list[date], first_day: date | None, materialized_at: dict[date, datetime], failed: set[date],
    source_written: dict[date, datetime],
) -> Completeness:
    """Days before the first session of the history cannot have features and are not judged."""
    judged = [day for day in days if first_day is not None and day >= first_day]
    return Completeness(
        judged=judged,
        missing=[day for day in judged if day not in materialized_at and day not in failed],
        failed=[day for day in judged if day in failed],
        stale=[day for day in judged if day in materialized_at and day not in failed
               and day in source_written and source_written[day] > materialized_at[day]],
    )
