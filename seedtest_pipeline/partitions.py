"""Partitions: UTC days for features, ISO weeks (Monday) for KPIs and reports."""

import dagster as dg

from seedtest_pipeline import settings

# Backfills can reach back to this day; SEEDTEST_FIRST_DAY moves it (an ISO Monday keeps
# the daily and weekly partitions aligned).
FIRST_DAY = settings.first_day().isoformat()

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")

# day_offset=1: weeks start on Monday. end_offset=1: the running week is a partition too, so the
# daily KPI run can refresh it (its as-of day is yesterday until the week is over).
weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=FIRST_DAY, day_offset=1, end_offset=1, timezone="UTC"
)
