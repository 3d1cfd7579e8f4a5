"""Seed synthetic exam_results into a fresh embedded PostgreSQL and print the figures.

    .venv/bin/python bench/bench_seed.py                      # ~100k sessions
    .venv/bin/python bench/bench_seed.py --sessions 1000000   # the big case

The server lives under bench/out/ (git-ignored) and is wiped first. The student count is sized
from the target with session_count() on a pilot config (the rhythms decide sessions per student).
Figures: generation alone (no database), then the end-to-end seed (generation on a background
thread overlapping COPY), the commit, the table size and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pgserver  # noqa: E402
import psycopg  # noqa: E402

from seedtest_pipeline import synthetic  # noqa: E402

PILOT_STUDENTS = 2000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def students_for(sessions: int, base: synthetic.SyntheticConfig) -> int:
    pilot = synthetic.session_count(synthetic.SyntheticConfig(**{**vars(base), "students": PILOT_STUDENTS}))
    return max(1, round(sessions * PILOT_STUDENTS / pilot))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="target number of sessions")
    parser.add_argument("--malformed", action="store_true", help="inject the malformed kinds too")
    parser.add_argument("--skip-generate-only", action="store_true", help="skip the generation-only pass")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "seed")
    args = parser.parse_args()

    base = synthetic.SyntheticConfig(end_date=date(2026, 3, 1), malformed=args.malformed)
    config = synthetic.SyntheticConfig(**{**vars(base), "students": students_for(args.sessions, base)})
    print(f"config: {config.students} students, {config.items} items, {config.days} days to {config.end_date}, "
          f"seed {config.seed}, malformed={config.malformed}")

    if not args.skip_generate_only:
        started = time.perf_counter()
        plan = synthetic._plan(config)  # the same code path seed_exam_results runs, minus the COPY
        tables = synthetic._tables(plan)
        size = 0
        for number in range(synthetic._chunk_count(plan)):
            size += len(synthetic._chunk(plan, tables, number).payload)
        seconds = time.perf_counter() - started
        print(f"generate only:   {plan.sessions:>9} sessions in {seconds:6.2f} s = "
              f"{plan.sessions / seconds:>9,.0f} sessions/s, {size / 1e6:,.0f} MB of COPY text "
              f"({size / plan.sessions:,.0f} B/session); peak RSS {peak_rss_mb():,.0f} MB")

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    server = pgserver.get_server(args.out, cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri()) as connection:
            connection.execute(synthetic.EXAM_RESULTS_DDL)
            connection.commit()
            summary = synthetic.seed_exam_results(connection, config)
            started = time.perf_counter()
            connection.commit()
            commit = time.perf_counter() - started
            size = connection.execute("SELECT pg_size_pretty(pg_total_relation_size('exam_results'))").fetchone()[0]
            rows = connection.execute("SELECT count(*) FROM exam_results").fetchone()[0]
        assert rows == summary.sessions, (rows, summary.sessions)
        print(f"seed (COPY):     {summary.sessions:>9} sessions in {summary.seconds:6.2f} s = "
              f"{summary.sessions / summary.seconds:>9,.0f} sessions/s, "
              f"{summary.questions / summary.seconds:>10,.0f} questions/s "
              f"({summary.questions} questions, {summary.attempts} attempts, {summary.students} students)")
        print(f"commit {commit:.2f} s; exam_results {size}; peak RSS {peak_rss_mb():,.0f} MB")
        if config.malformed:
            print("malformed findings: " + ", ".join(f"{k} {v}" for k, v in summary.malformed.items()))
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
