"""Freshness policies: when each scheduled asset must have been materialised, so that a missed or
failed schedule shows in the UI (the asset turns stale at its deadline) without anyone looking.

Each deadline follows a schedule of seedtest_pipeline/jobs.py: the asset must materialise between
the schedule's tick and the deadline (dagster's cron policy: fresh when its latest
materialisation is later than deadline - lower_bound_delta, judged at every deadline). The margins
are what a run takes in production (minutes for features and KPIs, up to an hour for a
calibration, up to a few hours for a week's reports) plus a queue wait. Any materialisation
counts, a backfill of an old partition included: the policy says "the job ran", the asset checks
say whether the data is complete.

The daemon evaluates them every 30 s (its freshness daemon is on unless the instance sets
`freshness: enabled: false`; both dagster.yaml files say `enabled: true` to keep it so).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

# asset key -> (the deadline, how long before it the schedule ticks)
DEADLINES: dict[str, dg.FreshnessPolicy] = {
    # features_daily_0115: yesterday's features by 02:00 (the 02:10 KPIs read them).
    "features_topic_daily": dg.FreshnessPolicy.cron(
        deadline_cron="0 2 * * *", lower_bound_delta=timedelta(minutes=45), timezone="UTC"),
    # weekly_kpi_0210: the week of yesterday by 03:00.
    "weekly_kpi": dg.FreshnessPolicy.cron(
        deadline_cron="0 3 * * *", lower_bound_delta=timedelta(minutes=50), timezone="UTC"),
    # irt_calibration_0300: a new calibration by 04:30, before Monday's 04:00 reports are done.
    **{
        table: dg.FreshnessPolicy.cron(deadline_cron="30 4 * * *", lower_bound_delta=timedelta(minutes=90),
                                       timezone="UTC")
        for table in ("mirt_fit_meta", "mirt_item_params", "mirt_ability")
    },
    # user_inactivity_0500: the day that ended, by 06:00.
    "user_inactivity": dg.FreshnessPolicy.cron(
        deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=1), timezone="UTC"),
    # weekly_reports_0400 (Mondays): last week's reports by 08:00, before the working day.
    "weekly_reports": dg.FreshnessPolicy.cron(
        deadline_cron="0 8 * * 1", lower_bound_delta=timedelta(hours=4), timezone="UTC"),
}


def _with_deadline(spec: dg.AssetSpec) -> dg.AssetSpec:
    policy = DEADLINES.get(spec.key.to_user_string())
    return dg.apply_freshness_policy(spec, policy) if policy else spec


def with_freshness_policies(assets: list) -> list:
    """The assets with their DEADLINES (one place for all of them: graph-backed assets, whose
    decorators take no policy, get theirs the same way as the others)."""
    return [
        asset.map_asset_specs(_with_deadline) if isinstance(asset, dg.AssetsDefinition) else _with_deadline(asset)
        for asset in assets
    ]
