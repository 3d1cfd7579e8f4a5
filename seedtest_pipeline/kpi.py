"""weekly_kpi: the KPIs of SPEC §4 per user and ISO week, merged into weekly_kpi.kpis."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline.queries import sql_text
from seedtest_pipeline.windows import day_start, week_as_of

# The keys this writer owns in weekly_kpi.kpis; other writers' keys are never touched.
KPI_KEYS = (
    "as_of", "improvement", "efficiency", "recovery", "engagement", "goal_probability",
    "churn_risk", "week_attempts", "week_correct", "week_active_days",
)
KPI_NAMES = {
    "improvement": "Improvement I_t",
    "efficiency": "Efficiency E_t",
    "recovery": "Recovery R_t",
    "engagement": "Engagement A_t",
    "goal_probability": "Goal probability P",
    "churn_risk": "Churn risk S",
}
READ_DAYS = 90  # users idle longer than this get no KPI row (SPEC §7 uses the same horizon)
DEFAULT_GOAL_TARGET = 0.0


@dataclass(frozen=True)
class WeeklyKpiResult:
    week_start: date
    as_of: date
    users: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_retracted: int
    seconds: float


def write_weekly_kpi(
    connection: Connection, week_start: date, today: date, goal_target: float = DEFAULT_GOAL_TARGET
) -> WeeklyKpiResult:
    """Compute one week's KPIs and merge them into weekly_kpi in the caller's transaction.

    Rows whose KPIs did not change are left alone (same updated_at), so a re-run is a no-op;
    users of this week who no longer have KPIs lose this writer's keys, not other writers'.
    """
    started = time.perf_counter()
    as_of = week_as_of(week_start, today)
    params = {
        "as_of": as_of,
        "as_of_end": day_start(as_of + timedelta(days=1)),
        "window_start": day_start(as_of - timedelta(days=READ_DAYS - 1)),
        "week_start": week_start,
        "week_end": week_start + timedelta(days=7),
        "goal_target": goal_target,
        "owned_keys": list(KPI_KEYS),
    }
    connection.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext('weekly_kpi:' || CAST(:week_start AS text)))"),
        params,
    )
    connection.execute(sa.text("DROP TABLE IF EXISTS pg_temp.computed_kpis"))
    connection.execute(
        sa.text(f"CREATE TEMP TABLE computed_kpis ON COMMIT DROP AS {sql_text('weekly_kpi')}"), params
    )
    outcome = connection.execute(
        sa.text(
            """
            WITH merged AS (
              INSERT INTO weekly_kpi AS w (user_id, week_start, kpis)
              SELECT user_id, :week_start, kpis FROM computed_kpis
              ON CONFLICT (user_id, week_start) DO UPDATE
                SET kpis = (w.kpis - CAST(:owned_keys AS text[])) || excluded.kpis, updated_at = now()
                WHERE w.kpis IS DISTINCT FROM (w.kpis - CAST(:owned_keys AS text[])) || excluded.kpis
              RETURNING (xmax = 0) AS inserted
            ),
            retracted AS (
              UPDATE weekly_kpi AS w SET kpis = w.kpis - CAST(:owned_keys AS text[]), updated_at = now()
              WHERE w.week_start = :week_start AND w.kpis ?| CAST(:owned_keys AS text[])
                AND NOT EXISTS (SELECT 1 FROM computed_kpis c WHERE c.user_id = w.user_id)
              RETURNING 1
            )
            SELECT (SELECT count(*) FROM computed_kpis) AS users,
                   (SELECT count(*) FILTER (WHERE inserted) FROM merged) AS inserted,
                   (SELECT count(*) FILTER (WHERE NOT inserted) FROM merged) AS updated,
                   (SELECT count(*) FROM retracted) AS retracted
            """
        ),
        params,
    ).one()
    connection.execute(sa.text("DROP TABLE pg_temp.computed_kpis"))
    return WeeklyKpiResult(
        week_start=week_start,
        as_of=as_of,
        users=outcome.users,
        rows_inserted=outcome.inserted,
        rows_updated=outcome.updated,
        rows_unchanged=outcome.users - outcome.inserted - outcome.updated,
        rows_retracted=outcome.retracted,
        seconds=time.perf_counter() - started,
    )


def read_week(connection: Connection, week_start: date, limit: int | None = None) -> list[dict]:
    rows = connection.execute(
        sa.text(
            "SELECT user_id, kpis FROM weekly_kpi WHERE week_start = :week_start "
            "ORDER BY user_id LIMIT :limit"
        ),
        {"week_start": week_start, "limit": limit},
    )
    return [{"user_id": row.user_id, **row.kpis} for row in rows]


def kpi_summary(connection: Connection, week_start: date) -> dict[str, dict]:
    """Per KPI: how many users have a value, and its mean (for asset metadata)."""
    summary = {}
    for key in KPI_NAMES:
        row = connection.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE jsonb_typeof(kpis -> :key) = 'number') AS n, "
                "avg(CAST(kpis ->> :key AS float8)) AS mean "
                "FROM weekly_kpi WHERE week_start = :week_start"
            ),
            {"key": key, "week_start": week_start},
        ).one()
        summary[key] = {"users_with_value": row.n, "mean": None if row.mean is None else round(row.mean, 4)}
    return summary


def to_json(value) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
