"""Freshness policies: every scheduled asset turns stale when its schedule's run has not
materialised it by the deadline; each window opens at the schedule's tick."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._utils.schedules import get_latest_completed_cron_tick

from seedtest_pipeline.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
# asset -> (the schedule that materialises it, how long after its tick the asset must be fresh)
INTENDED = {
    "features_topic_daily": ("features_daily_0115", timedelta(minutes=45)),
    "weekly_kpi": ("weekly_kpi_0210", timedelta(minutes=50)),
    "mirt_fit_meta": ("irt_calibration_0300", timedelta(minutes=90)),
    "mirt_item_params": ("irt_calibration_0300", timedelta(minutes=90)),
    "mirt_ability": ("irt_calibration_0300", timedelta(minutes=90)),
    "user_inactivity": ("user_inactivity_0500", timedelta(hours=1)),
    "weekly_reports": ("weekly_reports_0400", timedelta(hours=4)),
}


@pytest.mark.parametrize("asset", INTENDED)
def test_each_scheduled_asset_is_due_a_fixed_time_after_its_schedule(asset):
    schedule_name, margin = INTENDED[asset]
    policy = defs.resolve_asset_graph().get(dg.AssetKey(asset)).freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy) and policy.timezone == "UTC"
    schedule = defs.resolve_schedule_def(schedule_name)
    assert schedule.execution_timezone == "UTC"
    # Over two weeks of deadlines: the window the policy judges opens exactly at the schedule's
    # latest tick, so a run of that tick that ends within the margin keeps the asset fresh.
    for day in range(14):
        now = datetime(2026, 11, 16, 23, 59, tzinfo=timezone.utc) + timedelta(days=day)
        deadline = get_latest_completed_cron_tick(policy.deadline_cron, now, "UTC")
        tick = get_latest_completed_cron_tick(schedule.cron_schedule, deadline, "UTC")
        assert deadline - policy.lower_bound_delta == tick and deadline - tick == margin


def test_unscheduled_assets_have_no_deadline():
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("attempt")).freshness_policy is None  # materialised by migrations, on demand
    scheduled = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).freshness_policy}
    assert scheduled == set(INTENDED)


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/base/dagster.yaml"])
def test_both_instances_evaluate_freshness(path):
    assert yaml.safe_load((ROOT / path).read_text())["freshness"] == {"enabled": True}
