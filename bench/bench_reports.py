"""Benchmark of the weekly reports (issue 12). Prints figures; never run by the tests.

10,000+ students' reports of one ISO week, PDF and HTML, written to the local store with their
report_artifacts rows: students per second, the split (data, charts, PDF, HTML, upload, rows)
and the peak memory of the process. Data goes to an embedded PostgreSQL under bench/out/reports
(git-ignored), prepared once by `setup` (synthetic sessions, features, the two last weeks' KPIs
and a θ history of calibration and online rows) and reused.

    .venv/bin/python bench/bench_reports.py setup
    .venv/bin/python bench/bench_reports.py measure [--processes N]  # one measured run
    farm-bench -n 5 -- .venv/bin/python bench/bench_reports.py measure   # medians, whole process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "reports"
WEEK = date(2026, 11, 16)  # ISO Monday; the data ends on its Sunday
TODAY = date(2026, 11, 30)
STUDENTS = 12_000  # of whom ~10,500 have a KPI row or activity in WEEK (dropped-out ones have none)


def engine():
    from seedtest_pipeline import warehouse

    embedded = warehouse.start_embedded(OUT)
    return embedded, warehouse.make_engine(embedded.database_url(warehouse.WAREHOUSE_DATABASE))


def setup() -> None:
    import sqlalchemy as sa

    from seedtest_pipeline import synthetic
    from seedtest_pipeline.attempts import apply_schema
    from seedtest_pipeline.features import write_features
    from seedtest_pipeline.kpi import write_weekly_kpi
    from seedtest_pipeline.windows import DayRange

    _server, db = engine()
    apply_schema(db)
    started = time.perf_counter()
    with db.begin() as connection:
        connection.execute(sa.text(
            "TRUNCATE report_artifacts, mirt_ability, weekly_kpi, features_topic_daily, exam_results"))
        config = synthetic.SyntheticConfig(students=STUDENTS, days=56, end_date=WEEK + timedelta(days=6), seed=12)
        summary = synthetic.seed_exam_results(connection.connection.driver_connection, config)
    write_features(db, DayRange(WEEK - timedelta(days=49), WEEK + timedelta(days=7)))
    for week in (WEEK - timedelta(days=7), WEEK):
        with db.begin() as connection:
            write_weekly_kpi(connection, week, TODAY)
    # θ history as daily calibrations and online updates leave it: one calibration row per student
    # and day over the 8 weeks, and an online row on two of every seven days.
    with db.begin() as connection:
        connection.execute(sa.text(
            """
            INSERT INTO mirt_ability (user_id, theta, se, model, version, source, fitted_at)
            SELECT u.user_id,
                   (hashtext(u.user_id) % 1000) / 500.0 + d * 0.01,
                   0.25 + (abs(hashtext(u.user_id)) % 20) / 100.0,
                   '2PL', 'bench', CASE WHEN d % 7 IN (2, 5) THEN 'online' ELSE 'calibration' END,
                   CAST(:first AS timestamptz) + d * interval '1 day'
            FROM (SELECT DISTINCT user_id FROM features_topic_daily) AS u, generate_series(0, 55) AS d
            """), {"first": f"{WEEK - timedelta(days=49)}T00:00:00Z"})
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
        counts = {t: connection.scalar(sa.text(f"SELECT count(*) FROM {t}"))
                  for t in ("exam_results", "features_topic_daily", "weekly_kpi", "mirt_ability")}
    print(f"setup in {time.perf_counter() - started:.1f}s: {summary.sessions} sessions; {counts}")


def measure(processes: int) -> None:
    import sqlalchemy as sa

    from seedtest_pipeline.reports.store import LocalStore
    from seedtest_pipeline.reports.week import STAGES, render_week

    _server, db = engine()
    store_dir = OUT / "store"
    with db.begin() as connection:
        connection.execute(sa.text("DELETE FROM report_artifacts WHERE week_start = :w"), {"w": WEEK})
    started = time.perf_counter()
    result = render_week(db, LocalStore(store_dir), WEEK, TODAY, thumbnail=False, chunk_count=8, processes=processes)
    wall = time.perf_counter() - started
    with db.connect() as connection:
        rows = connection.scalar(sa.text("SELECT count(*) FROM report_artifacts WHERE week_start = :w"), {"w": WEEK})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {
        "students": result.students, "reports_written": result.reports_written, "rows": rows,
        "failures": len(result.failures), "processes": processes, "wall_seconds": round(wall, 2),
        "students_per_second": round(result.students / wall, 1),
        "megabytes_written": round(result.bytes_written / 1e6, 1),
        "split_seconds": {stage: round(result.seconds[stage], 2) for stage in STAGES},
        "peak_rss_mb": round(peak_mb), "peak_rss_worker_mb": round(children_mb),
    }
    print(json.dumps(figures))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["setup", "measure", "clean"])
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="processes rendering the 8 chunks")
    args = parser.parse_args()
    if args.action == "setup":
        setup()
    elif args.action == "measure":
        measure(args.processes)
    else:
        shutil.rmtree(OUT, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
