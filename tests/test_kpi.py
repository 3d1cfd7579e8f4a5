"""Weekly KPIs: SPEC §4 reference values, each formula on hand-made data, and the merge rules."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from factories import insert_results, question, result, utc
from seedtest_pipeline.kpi import KPI_KEYS, write_weekly_kpi
from seedtest_pipeline.windows import week_as_of

WEEK = date(2026, 10, 26)  # an ISO Monday
AS_OF = WEEK + timedelta(days=6)
TODAY = date(2026, 11, 23)


def at(days_before_as_of: int, hour: int = 10):
    day = AS_OF - timedelta(days=days_before_as_of)
    return utc(day.year, day.month, day.day, hour)


def sql_value(engine, expression: str, **params):
    with engine.connect() as connection:
        return connection.scalar(sa.text(f"SELECT {expression}"), params)


def kpis_of(engine, user_id: str, week: date = WEEK) -> dict:
    with engine.connect() as connection:
        return connection.scalar(
            sa.text("SELECT kpis FROM weekly_kpi WHERE user_id = :u AND week_start = :w"), {"u": user_id, "w": week}
        )


def run_week(engine, week: date = WEEK, **kwargs):
    with engine.begin() as connection:
        return write_weekly_kpi(connection, week, TODAY, **kwargs)


def test_as_of_is_sunday_or_yesterday_for_the_running_week():
    assert week_as_of(WEEK, TODAY) == AS_OF
    assert week_as_of(date(2026, 11, 23), date(2026, 11, 26)) == date(2026, 11, 25)
    with pytest.raises(ValueError, match="not an ISO Monday"):
        week_as_of(date(2026, 11, 24), TODAY)


def test_reference_goal_probability(engine):
    assert sql_value(engine, "kpi_goal_probability(0, 1, 0)") == pytest.approx(0.5, abs=1e-12)
    assert sql_value(engine, "kpi_goal_probability(1.0, 0.5, 0)") == pytest.approx(0.5 * math.erfc(-2 / math.sqrt(2)))
    assert sql_value(engine, "kpi_goal_probability(1.0, 0, 0)") is None
    assert sql_value(engine, "kpi_goal_probability(NULL, 1, 0)") is None


def test_reference_churn_risk_for_a_daily_user_with_12_sessions(engine):
    insert_results(engine, [result("daily", at(d), [question(d + 1)]) for d in range(12)])
    run_week(engine)
    assert kpis_of(engine, "daily")["S"] <= 0.05


def test_reference_churn_risk_for_a_user_silent_for_14_days_without_sessions_in_the_window(engine):
    # Last seen 60 days before as_of: inside the 90 days read, outside the 56-day window.
    insert_results(engine, [result("silent", at(60), [question(1)])])
    run_week(engine)
    assert kpis_of(engine, "silent")["S"] >= 0.95
    assert sql_value(engine, "kpi_churn_risk(14, 0, NULL, 0)") >= 0.95
    assert sql_value(engine, "kpi_churn_risk(NULL, 0, NULL, 0)") is None


def test_improvement_matches_the_formula(engine):
    # previous 14 days: 10 attempts, 3 right; recent 14 days: 20 attempts, 15 right.
    previous = [result("u", at(20), [question(i, correct=i < 3) for i in range(10)])]
    recent = [result("u", at(3), [question(100 + i, correct=i < 15) for i in range(20)])]
    insert_results(engine, previous + recent)
    run_week(engine)
    p_r, p_p, n_r = 15 / 20, 3 / 10, 20
    expected = (p_r - p_p) * min(1, n_r / 30) * (1 - min(0.5, 1.96 * math.sqrt(p_r * (1 - p_r) / n_r)))
    assert kpis_of(engine, "u")["I_t"] == pytest.approx(expected)


def test_improvement_is_null_without_a_previous_window_and_clamped(engine):
    insert_results(engine, [result("new", at(1), [question(1)])])
    run_week(engine)
    assert kpis_of(engine, "new")["I_t"] is None
    assert sql_value(engine, "kpi_improvement(100, 100, 0, 100)") <= 1.0


def test_efficiency_compares_median_correct_times(engine):
    previous = [result("u", at(40), [question(i, seconds=s) for i, s in enumerate([40, 50, 60])])]
    recent = [result("u", at(2), [question(10 + i, seconds=s) for i, s in enumerate([20, 30, 90])]
                     + [question(20, correct=False, seconds=1)])]
    insert_results(engine, previous + recent)
    run_week(engine)
    assert kpis_of(engine, "u")["E_t"] == pytest.approx((50_000 - 30_000) / 50_000)


def test_efficiency_is_null_without_timed_correct_attempts_on_one_side(engine):
    insert_results(engine, [result("u", at(40), [question(1, seconds=None)]), result("u", at(2), [question(2, seconds=20)])])
    run_week(engine)
    assert kpis_of(engine, "u")["E_t"] is None


def test_recovery_counts_first_reattempts_of_earlier_errors(engine):
    insert_results(engine, [
        result("u", at(35), [question(1, correct=False), question(2, correct=False), question(3, correct=False),
                             question(4, correct=True)]),
        result("u", at(10), [question(1, correct=True), question(2, correct=False), question(4, correct=False)]),
        result("u", at(5), [question(2, correct=True)]),  # a later success does not rescue item 2
    ])
    run_week(engine)
    assert kpis_of(engine, "u")["R_t"] == pytest.approx(1 / 2)


def test_recovery_is_null_without_earlier_errors(engine):
    insert_results(engine, [result("u", at(35), [question(1)]), result("u", at(3), [question(1)])])
    run_week(engine)
    assert kpis_of(engine, "u")["R_t"] is None


def test_engagement_terms(engine):
    # 4 sessions on days 0, 2, 4, 6 before as_of; 1 hint in 8 attempts; each session 2 x 100 s.
    insert_results(engine, [
        result("u", at(d), [question(d, seconds=100, hints=1 if d == 0 else 0), question(d + 50, seconds=100)])
        for d in (0, 2, 4, 6)
    ])
    run_week(engine)
    expected = 0.35 * (4 / 28) + 0.25 * (1 / 2) + 0.2 * (1 - (1 / 8) / 3) + 0.2 * (200 / 900)
    assert kpis_of(engine, "u")["A_t"] == pytest.approx(expected)


def test_engagement_counts_terms_without_data_as_half(engine):
    insert_results(engine, [result("u", at(1), [question(1, seconds=None, hints=None)])])
    run_week(engine)
    # one session, one active day (no gap), no timing: hints term has data (0 hints).
    expected = 0.35 * (1 / 28) + 0.25 * 0.5 + 0.2 * 1.0 + 0.2 * 0.5
    assert kpis_of(engine, "u")["A_t"] == pytest.approx(expected)


def test_goal_probability_uses_the_latest_theta_as_of_the_week(engine):
    insert_results(engine, [result("u", at(1), [question(1)])])
    with engine.begin() as connection:
        connection.execute(sa.text("""
            INSERT INTO mirt_ability (user_id, theta, se, model, version, source, fitted_at) VALUES
              ('u', -1.0, 0.5, '2PL', 't', 'online', :early),
              ('u', 0.0, 1.0, '2PL', 't', 'online', :inside),
              ('u', 3.0, 0.2, '2PL', 't', 'online', :after)
        """), {"early": at(30), "inside": at(0, hour=23), "after": at(-1)})
    run_week(engine)
    assert kpis_of(engine, "u")["P"] == pytest.approx(0.5)
    run_week(engine, goal_target=1.0)
    assert kpis_of(engine, "u")["P"] == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)))


def test_a_theta_describing_the_end_of_the_as_of_day_counts(engine):
    # A calibration as of Sunday describes θ at Monday 00:00 (the end of its data window).
    insert_results(engine, [result("u", at(1), [question(1)])])
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO mirt_ability (user_id, theta, se, model, version, source, fitted_at) "
            "VALUES ('u', 0.0, 1.0, '2PL', 't', 'calibration', :end), ('u', 2.0, 1.0, '2PL', 't', 'calibration', :later)"
        ), {"end": at(-1, hour=0), "later": at(-1, hour=0) + timedelta(microseconds=1)})
    run_week(engine)
    assert kpis_of(engine, "u")["P"] == pytest.approx(0.5)


def test_merge_keeps_other_writers_keys_and_a_rerun_changes_nothing(engine):
    insert_results(engine, [result("u", at(d), [question(d)]) for d in range(5)])
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES ('u', :w, '{\"report_note\": \"kept\"}'), "
            "('gone', :w, '{\"report_note\": \"x\", \"S\": 0.9, \"as_of\": \"2026-11-01\"}')"
        ), {"w": WEEK})
    first = run_week(engine)
    with engine.connect() as connection:
        before = connection.execute(sa.text("SELECT * FROM weekly_kpi ORDER BY user_id")).all()
    again = run_week(engine)
    with engine.connect() as connection:
        after = connection.execute(sa.text("SELECT * FROM weekly_kpi ORDER BY user_id")).all()
    assert (first.rows_updated, first.rows_retracted) == (1, 1)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 1)
    assert before == after
    assert kpis_of(engine, "u")["report_note"] == "kept" and set(KPI_KEYS) <= set(kpis_of(engine, "u"))
    assert kpis_of(engine, "gone") == {"report_note": "x"}


def test_week_summary_comes_from_daily_features(engine):
    from seedtest_pipeline.features import write_features
    from seedtest_pipeline.windows import DayRange

    insert_results(engine, [result("u", at(d), [question(d, correct=d % 2 == 0), question(d + 9)]) for d in range(9)])
    write_features(engine, DayRange(WEEK, WEEK + timedelta(days=7)))
    run_week(engine)
    kpis = kpis_of(engine, "u")
    assert (kpis["week_attempts"], kpis["week_correct"], kpis["week_active_days"]) == (14, 11, 7)
