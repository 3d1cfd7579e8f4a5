"""`make demo`: seed realistic data, run the whole chain through Dagster, print where results are."""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources.object_store import ObjectStoreResource
from seedtest_pipeline import synthetic, warehouse
from seedtest_pipeline.attempts import apply_schema
from seedtest_pipeline.calibration import DEFAULT_LOOKBACK_DAYS, calibration_history, window_can_pass_gate
from seedtest_pipeline.kpi import KPI_LABELS
from seedtest_pipeline.local import prepare_environment
from seedtest_pipeline.hostile import insert_hostile_results
from seedtest_pipeline.inactivity import DEFAULT_THRESHOLD_DAYS
from seedtest_pipeline.local_launcher import PID_TAG
from seedtest_pipeline.partitions import FIRST_DAY
from seedtest_pipeline.pools import initialize_pools, project_pools
from seedtest_pipeline.windows import iso_monday

SUMMARY_TABLES = (
    "exam_results", "features_topic_daily", "weekly_kpi", "mirt_fit_meta", "mirt_item_params", "mirt_ability",
    "report_artifacts", "user_inactivity",
)


# Checks the demo's own data is meant to fail: its deliberately malformed and hostile input.
EXPECTED_WARNINGS = {"malformed_input", "input_readable", "one_user_id_per_student"}


class Runs:
    """Runs the demo's jobs in this process on the local instance (recorded, visible in the UI) and
    keeps every asset check they evaluated."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.checks = defs, instance, []

    def run(self, name: str, first: str | None = None, last: str | None = None, partition: str | None = None,
            config: dict | None = None) -> float:
        started = time.perf_counter()
        # The pid lets the local launcher's health check tell a killed demo's runs from live ones.
        tags = {PID_TAG: str(os.getpid())}
        if first is not None:
            tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        result = self.defs.resolve_job_def(name).execute_in_process(
            instance=self.instance, tags=tags, partition_key=partition, raise_on_error=True,
            # The demo prints its own summary; the full event log is in the UI.
            run_config={**(config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        if not result.success:
            raise SystemExit(f"job {name} failed (run {result.run_id})")
        self.checks += result.get_asset_check_evaluations()
        return time.perf_counter() - started

    def report_checks(self) -> None:
        """Print the checks; a failed check other than the expected warnings fails the demo."""
        latest = {(c.asset_key.to_user_string(), c.check_name): c for c in self.checks}  # the last evaluation
        failed = {key: c for key, c in latest.items() if not c.passed}
        expected = {key for key in failed if key[1] in EXPECTED_WARNINGS and failed[key].severity.value == "WARN"}
        print(f"\nasset checks: {len(latest) - len(failed)} of {len(latest)} passed")
        for asset, check in sorted(expected):
            print(f"  expected warning  {asset}.{check} (the demo's malformed and hostile input)")
        unexpected = sorted(set(failed) - expected)
        for asset, check in unexpected:
            print(f"  FAILED            {asset}.{check} ({failed[(asset, check)].severity.value})")
        if unexpected:
            raise SystemExit(f"{len(unexpected)} asset check(s) failed: see above and the runs in the UI")


def weeks_between(first_week: date, last_week: date) -> list[date]:
    return [first_week + timedelta(days=7 * n) for n in range((last_week - first_week).days // 7 + 1)]


def run_demo(students: int, weeks: int, reseed: bool) -> None:
    prepare_environment()
    from seedtest_pipeline.definitions import defs  # after the environment is set

    engine = warehouse.make_engine(warehouse.warehouse_url())
    apply_schema(engine)
    today = datetime.now(timezone.utc).date()
    end_day = today - timedelta(days=1)
    first_day = max(end_day - timedelta(days=7 * weeks - 1), date.fromisoformat(FIRST_DAY))
    with engine.begin() as connection:
        sessions = connection.scalar(sa.text("SELECT count(*) FROM exam_results"))
        if reseed or not sessions:
            connection.execute(sa.text("TRUNCATE exam_results"))
            config = synthetic.SyntheticConfig(
                students=students, days=(end_day - first_day).days + 1, end_date=end_day, malformed=True
            )
            summary = synthetic.seed_exam_results(connection.connection.driver_connection, config)
            # Values PostgreSQL accepts that no client should send (docs/decisions.md): the chain
            # must count them and go on.
            known = connection.scalar(sa.text(
                "SELECT min(user_id) FROM exam_results WHERE user_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-'"))
            hostile = insert_hostile_results(connection, datetime.combine(end_day, datetime.min.time(), timezone.utc)
                                             + timedelta(hours=12), known)
            print(f"seeded {summary.sessions} sessions ({summary.questions} questions) for "
                  f"{students} students, {first_day}..{end_day}, in {summary.seconds:.1f}s, "
                  f"and {len(hostile)} hostile ones")
        else:
            print(f"exam_results already holds {sessions} sessions (use --reseed to start over)")

    instance = DagsterInstance.get()
    initialize_pools(instance, project_pools(defs))
    runs = Runs(defs, instance)
    print(f"attempt view + checks: {runs.run('attempt_view'):.1f}s")
    seconds = runs.run("features_daily", str(first_day), str(end_day))
    print(f"features_topic_daily {first_day}..{end_day} (one run): {seconds:.1f}s")
    # One calibration per week end (as the daily schedule would have left them), each linked to the
    # latest one that passed the quality gate: the KPIs' goal probability reads the θ as of each
    # week. A window with too few answers per item to pass the gate (the first week's, when the
    # seeded range starts late in a week) is skipped rather than stored as a flagged calibration.
    first_week, last_week = iso_monday(first_day), iso_monday(end_day)
    week_ends = [min(week + timedelta(days=6), end_day) for week in weeks_between(first_week, last_week)]
    started, calibrated = time.perf_counter(), 0
    for as_of in week_ends:
        window_end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc) + timedelta(days=1)
        with engine.connect() as connection:
            can_pass, verdict = window_can_pass_gate(connection, window_end)
        if not can_pass:
            print(f"IRT calibration as of {as_of} skipped (cannot pass the quality gate): {verdict}")
            continue
        runs.run("calibrate_irt", config={"ops": {"irt_calibration": {"config": {"as_of": str(as_of)}}}})
        calibrated += 1
    print(f"IRT calibrations (2PL, {DEFAULT_LOOKBACK_DAYS}-day window) as of {calibrated} of {len(week_ends)} "
          f"week ends: {time.perf_counter() - started:.1f}s")
    seconds = runs.run("weekly_kpi_refresh", str(first_week), str(last_week))
    print(f"weekly_kpi {first_week}..{last_week} (one run): {seconds:.1f}s")
    last_full_week = last_week if end_day.weekday() == 6 else last_week - timedelta(days=7)
    # The last full week's reports (PDF + HTML per student) into the local object store.
    seconds = runs.run("render_weekly_reports", partition=str(last_full_week))
    print(f"weekly_reports {last_full_week} (PDF + HTML per student): {seconds:.1f}s")
    # Who is inactive on the last day (SPEC §7), as the 05:00 schedule leaves it.
    seconds = runs.run("user_inactivity_daily", partition=str(end_day))
    with engine.connect() as connection:
        inactive = connection.scalar(sa.text("SELECT count(*) FROM user_inactivity WHERE day = :day"), {"day": end_day})
    print(f"user_inactivity {end_day}: {inactive} users inactive (last activity more than "
          f"{DEFAULT_THRESHOLD_DAYS} days before, within the last 90): {seconds:.1f}s")
    print_summary(engine, last_full_week)
    runs.report_checks()


def print_summary(engine, week: date) -> None:
    with engine.connect() as connection:
        print("\nrows per table:")
        for table in SUMMARY_TABLES:
            print(f"  {table:22} {connection.scalar(sa.text(f'SELECT count(*) FROM {table}')):>10}")
        rows = connection.execute(
            sa.text(
                "SELECT user_id, kpis FROM weekly_kpi WHERE week_start = :week "
                "ORDER BY (kpis ->> 'week_attempts')::int DESC, user_id LIMIT 5"
            ),
            {"week": week},
        ).all()
        calibration = connection.execute(
            sa.text("SELECT model, metrics, linking FROM mirt_fit_meta ORDER BY fitted_at DESC LIMIT 1")
        ).first()
        history = calibration_history(connection, calibration.model, limit=5) if calibration else None
    if calibration is not None:
        m = calibration.metrics
        print(f"\nlatest calibration ({calibration.model}): {m['n_items']} items, {m['n_persons']} students, "
              f"{m['n_responses']} responses; {m['iterations']} EM iterations, converged={m['converged']}, "
              f"loglik {m['loglik']:.1f}, {m['seconds']:.2f}s; linking: {calibration.linking.get('method') or 'none'}")
        print("last calibrations (A, B put each on its reference's scale: θ = A·θ_own + B):")
        print(f"  {'window end':17}{'gate':>11}{'responses':>11}{'θ SD':>7}{'mean a':>8}{'A':>7}{'B':>8}  reference")
        for row in history.itertuples():
            constants = f"{row.A:>7.3f}{row.B:>8.3f}" if row.A is not None and row.A == row.A else f"{'-':>7}{'-':>8}"
            print(f"  {row.fitted_at:%Y-%m-%d %H:%M} {'adequate' if row.adequate else 'below':>11}{row.responses:>11}"
                  f"{row.theta_sd:>7.3f}{row.mean_a:>8.3f}{constants}  {row.base or 'none (sets the scale)'}")
    print(f"\nKPIs of the week starting {week} (five busiest students):")
    print("  " + f"{'user_id':38}" + "".join(f"{key:>8}" for key in KPI_LABELS))
    for row in rows:
        values = "".join(
            f"{row.kpis[key]:>8.3f}" if row.kpis.get(key) is not None else f"{'-':>8}" for key in KPI_LABELS
        )
        print(f"  {row.user_id:38}{values}")
    print(
        "\nwhere the results are:\n"
        f"  warehouse        {warehouse.masked_url(warehouse.warehouse_url())}\n"
        "  tables           features_topic_daily, weekly_kpi (kpis jsonb), mirt_fit_meta, mirt_item_params,\n"
        "                   mirt_ability, report_artifacts, user_inactivity, view attempt\n"
        "  Dagster UI       make ui, then http://127.0.0.1:3000 (runs, asset checks, metadata)\n"
        f"  reports          {ObjectStoreResource().store().describe()}: reports/USER_ID/{week}/report.pdf|html\n"
        "                   (one row per file in report_artifacts; one student: seedtest-pipeline report USER_ID WEEK)\n"
    )
