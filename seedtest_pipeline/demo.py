"""`make demo`: seed realistic data, run the whole chain through Dagster, print where results are."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from seedtest_pipeline import synthetic, warehouse
from seedtest_pipeline.attempts import apply_schema
from seedtest_pipeline.calibration import DEFAULT_LOOKBACK_DAYS
from seedtest_pipeline.kpi import KPI_NAMES
from seedtest_pipeline.local import prepare_environment
from seedtest_pipeline.partitions import FIRST_DAY
from seedtest_pipeline.windows import iso_monday

SUMMARY_TABLES = (
    "exam_results", "features_topic_daily", "weekly_kpi", "mirt_fit_meta", "mirt_item_params", "mirt_ability",
)


def run_job(defs, instance, name: str, first: str | None = None, last: str | None = None,
            config: dict | None = None) -> float:
    """Run a job in this process against the local instance (recorded, visible in the UI)."""
    started = time.perf_counter()
    tags = {}
    if first is not None:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    result = defs.resolve_job_def(name).execute_in_process(
        instance=instance, tags=tags, raise_on_error=True,
        # The demo prints its own summary; the full event log is in the UI.
        run_config={**(config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    if not result.success:
        raise SystemExit(f"job {name} failed (run {result.run_id})")
    return time.perf_counter() - started


def weeks_between(first_week: date, last_week: date) -> list[date]:
    return [first_week + timedelta(days=7 * n) for n in range((last_week - first_week).days // 7 + 1)]


def run_demo(students: int, weeks: int, reseed: bool) -> None:
    embedded = prepare_environment()  # noqa: F841 (keeps the embedded server up until we return)
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
            print(f"seeded {summary.sessions} sessions ({summary.questions} questions) for "
                  f"{students} students, {first_day}..{end_day}, in {summary.seconds:.1f}s")
        else:
            print(f"exam_results already holds {sessions} sessions (use --reseed to start over)")

    instance = DagsterInstance.get()
    print(f"attempt view + checks: {run_job(defs, instance, 'attempt_view'):.1f}s")
    seconds = run_job(defs, instance, "features_daily", str(first_day), str(end_day))
    print(f"features_topic_daily {first_day}..{end_day} (one run): {seconds:.1f}s")
    # One calibration per week end (as the daily schedule would have left them), each linked to the
    # one before: the KPIs' goal probability reads the θ as of each week.
    first_week, last_week = iso_monday(first_day), iso_monday(end_day)
    week_ends = [min(week + timedelta(days=6), end_day) for week in weeks_between(first_week, last_week)]
    started = time.perf_counter()
    for as_of in week_ends:
        run_job(defs, instance, "calibrate_irt", config={"ops": {"irt_calibration": {"config": {"as_of": str(as_of)}}}})
    print(f"IRT calibrations (2PL, {DEFAULT_LOOKBACK_DAYS}-day window) as of {len(week_ends)} week ends: "
          f"{time.perf_counter() - started:.1f}s")
    seconds = run_job(defs, instance, "weekly_kpi_refresh", str(first_week), str(last_week))
    print(f"weekly_kpi {first_week}..{last_week} (one run): {seconds:.1f}s")
    print_summary(engine, last_week if end_day.weekday() == 6 else last_week - timedelta(days=7))


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
    if calibration is not None:
        m = calibration.metrics
        print(f"\nlatest calibration ({calibration.model}): {m['n_items']} items, {m['n_persons']} students, "
              f"{m['n_responses']} responses; {m['iterations']} EM iterations, converged={m['converged']}, "
              f"loglik {m['loglik']:.1f}, {m['seconds']:.2f}s; linking: {calibration.linking.get('method') or 'none'}")
    print(f"\nKPIs of the week starting {week} (five busiest students):")
    print("  " + f"{'user_id':38}" + "".join(f"{name.split()[-1]:>8}" for name in KPI_NAMES.values()))
    for row in rows:
        values = "".join(
            f"{row.kpis[key]:>8.3f}" if row.kpis.get(key) is not None else f"{'-':>8}" for key in KPI_NAMES
        )
        print(f"  {row.user_id:38}{values}")
    print(
        "\nwhere the results are:\n"
        f"  warehouse        {warehouse.warehouse_url()}\n"
        "  tables           features_topic_daily, weekly_kpi (kpis jsonb), mirt_fit_meta, mirt_item_params,\n"
        "                   mirt_ability, view attempt\n"
        "  Dagster UI       make ui, then http://127.0.0.1:3000 (runs, asset checks, metadata)\n"
    )
