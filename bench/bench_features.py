"""Benchmarks for features_topic_daily (issue 2). Prints figures; never run by the tests.

1. One daily partition as history grows 10x (same sessions per day, 10x the days).
2. A single-run backfill of a year over ~1M sessions (~10M attempts): attempts per second.
3. Peak memory of the Python process doing the work, for both history sizes.

Each measurement runs in a fresh subprocess (its own ru_maxrss). Data goes to an embedded
PostgreSQL under bench/out/ (git-ignored), seeded once per size and reused.

    .venv/bin/python bench/bench_features.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
END = date(2026, 10, 31)
REPEATS = 5
BACKFILL_REPEATS = 3  # each from an empty table; this machine's speed varies by +-15% over minutes


def server_url(name: str):
    from seedtest_pipeline import warehouse

    embedded = warehouse.start_embedded(OUT / name)
    return embedded, embedded.database_url(warehouse.WAREHOUSE_DATABASE)


def seed(name: str, students: int, days: int) -> dict:
    """Seed once: exam_results for `students` over `days` days ending at END."""
    import sqlalchemy as sa

    from seedtest_pipeline import synthetic, warehouse
    from seedtest_pipeline.attempts import apply_schema

    _server, url = server_url(name)
    engine = warehouse.make_engine(url)
    apply_schema(engine)
    with engine.begin() as connection:
        sessions = connection.scalar(sa.text("SELECT count(*) FROM exam_results"))
        if not sessions:
            config = synthetic.SyntheticConfig(students=students, days=days, end_date=END, seed=11)
            synthetic.seed_exam_results(connection.connection.driver_connection, config)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE exam_results"))
        row = connection.execute(sa.text(
            "SELECT count(*) AS sessions, sum(jsonb_array_length(result_json->'questions')) AS questions, "
            "min(created_at)::date AS first, max(created_at)::date AS last FROM exam_results "
            "WHERE jsonb_typeof(result_json->'questions') = 'array'"
        )).one()
    return {"sessions": row.sessions, "questions": int(row.questions), "first": str(row.first), "last": str(row.last)}


def measure(name: str, first: str, end: str, repeats: int, empty_first: bool = False) -> dict:
    """Run write_features over [first, end) `repeats` times; report seconds and peak RSS.
    empty_first: start each run from an empty features table (a first backfill), else replace
    what is there."""
    import sqlalchemy as sa

    from seedtest_pipeline import warehouse
    from seedtest_pipeline.features import write_features
    from seedtest_pipeline.windows import DayRange

    _server, url = server_url(name)
    engine = warehouse.make_engine(url)
    days = DayRange(date.fromisoformat(first), date.fromisoformat(end))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings, result = [], None
    for _ in range(repeats):
        if empty_first:
            with engine.begin() as connection:
                connection.execute(sa.text("TRUNCATE features_topic_daily"))
        started = time.perf_counter()
        result = write_features(engine, days)
        timings.append(time.perf_counter() - started)
    with engine.connect() as connection:
        rows = connection.scalar(sa.text("SELECT count(*) FROM features_topic_daily"))
    return {
        "seconds_median": statistics.median(timings),
        "seconds_all": [round(t, 3) for t in timings],
        "attempts": result.attempts,
        "rows_written": result.rows_written,
        "rows_unchanged": result.rows_unchanged,
        "table_rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_work_mb": rss_before / 1024,
    }


def in_subprocess(function: str, *args) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import bench_features as b; "
        f"print(json.dumps(b.{function}(*{list(args)!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=6000, help="students (6000 over 365 days: ~1M sessions)")
    parser.add_argument("--days", type=int, default=365, help="days of the large history")
    args = parser.parse_args()
    small_days = args.days // 10
    print(f"seeding: {args.students} students, {small_days} days (small) and {args.days} days (large)")
    started = time.perf_counter()
    small = in_subprocess("seed", "small", args.students, small_days)
    large = in_subprocess("seed", "large", args.students, args.days)
    print(f"  small: {small}\n  large: {large}\n  ({time.perf_counter() - started:.0f}s)")

    day = str(END - timedelta(days=3))
    day_end = str(END - timedelta(days=2))
    print(f"\n1. one daily partition ({day}), median of {REPEATS}")
    figures = {}
    for name, info in (("small", small), ("large", large)):
        figures[name] = in_subprocess("measure", name, day, day_end, REPEATS)
        f = figures[name]
        print(f"  {name:5} history {info['sessions']:>9} sessions: {f['seconds_median']:.3f}s "
              f"({f['attempts']} attempts; last run {f['rows_written']} rows written, {f['rows_unchanged']} "
              f"unchanged; runs {f['seconds_all']}); "
              f"peak RSS {f['peak_rss_mb']:.0f} MB")
    ratio = figures["large"]["seconds_median"] / figures["small"]["seconds_median"]
    print(f"  growth for {large['sessions'] / small['sessions']:.1f}x history: {ratio:.2f}x (target <= 1.3x)")

    print("\n2. single-run backfill of the whole large history")
    year_end = str(date.fromisoformat(large["last"]) + timedelta(days=1))
    backfill = in_subprocess("measure", "large", large["first"], year_end, BACKFILL_REPEATS, True)
    rate = backfill["attempts"] / backfill["seconds_median"]
    best = backfill["attempts"] / min(backfill["seconds_all"])
    print(f"  first backfill, median of {BACKFILL_REPEATS}: {backfill['attempts']} attempts -> "
          f"{backfill['rows_written']} rows in {backfill['seconds_median']:.1f}s: {rate:,.0f} attempts/s "
          f"(target >= 500,000; runs {backfill['seconds_all']}, best {best:,.0f}/s); "
          f"peak RSS {backfill['peak_rss_mb']:.0f} MB")
    again = in_subprocess("measure", "large", large["first"], year_end, 1)
    print(f"  re-run over its own rows: {again['seconds_median']:.1f}s: "
          f"{again['attempts'] / again['seconds_median']:,.0f} attempts/s")
    small_backfill = in_subprocess("measure", "small", small["first"], str(date.fromisoformat(small["last"]) + timedelta(days=1)), 1)
    print(f"  small history for comparison: {small_backfill['attempts']} attempts in "
          f"{small_backfill['seconds_median']:.1f}s, peak RSS {small_backfill['peak_rss_mb']:.0f} MB")

    print("\n3. peak memory of the Python process (MB): "
          f"daily small {figures['small']['peak_rss_mb']:.0f}, daily large {figures['large']['peak_rss_mb']:.0f}, "
          f"backfill small {small_backfill['peak_rss_mb']:.0f}, backfill large {backfill['peak_rss_mb']:.0f}")


if __name__ == "__main__":
    main()
