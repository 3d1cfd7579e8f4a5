"""What the pipeline can tell about exam_results cheaply: from its indexes and the server's table
statistics, never a scan of the whole table (a production table holds millions of sessions)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection


@dataclass(frozen=True)
class SourceObservation:
    sessions_estimate: int  # the server's count of live rows (table statistics, kept up to date by writes)
    sessions_last_day: int  # completed in the last 24 hours (index range)
    latest_completed_at: str | None  # ISO text; the latest not in the future
    lag_hours: float | None
    sessions_in_future: int  # completed more than a day from now, or at 'infinity'
    version: str  # changes whenever the table is written to


def observe(connection: Connection) -> SourceObservation:
    # Timestamps leave PostgreSQL as text and figures: a completed_at of 'infinity' or in year
    # 12000 is valid there but not a Python datetime, and must not break an observation.
    row = connection.execute(
        sa.text(
            """
            WITH latest AS (
              SELECT max(coalesce(updated_at, created_at)) AS at FROM exam_results
              WHERE coalesce(updated_at, created_at) <= now() + interval '1 day'
            )
            SELECT
              (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'exam_results'::regclass) AS estimate,
              (SELECT count(*) FROM exam_results
               WHERE coalesce(updated_at, created_at) > now() - interval '1 day'
                 AND coalesce(updated_at, created_at) <= now() + interval '1 day') AS last_day,
              (SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM latest) AS latest,
              (SELECT extract(epoch FROM now() - at) / 3600 FROM latest) AS lag_hours,
              (SELECT count(*) FROM exam_results
               WHERE coalesce(updated_at, created_at) > now() + interval '1 day') AS in_future,
              (SELECT concat_ws(':', n_tup_ins, n_tup_upd, n_tup_del) FROM pg_stat_user_tables
               WHERE relid = 'exam_results'::regclass) AS writes
            """
        )
    ).one()
    lag = None if row.lag_hours is None else round(float(row.lag_hours), 2)
    return SourceObservation(
        sessions_estimate=row.estimate,
        sessions_last_day=row.last_day,
        latest_completed_at=row.latest,
        lag_hours=lag,
        sessions_in_future=row.in_future,
        version=f"{row.writes}:{row.latest}",
    )
