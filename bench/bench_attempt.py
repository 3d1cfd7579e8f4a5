"""Benchmark for the `attempt` asset (issue 9): materialising it (schema to head, the view, the
lock checks and the data checks of the last 7 days) as the history grows 10x. Prints figures;
never run by the tests.

Two embedded servers under bench/out/ hold the same students and sessions per day, over 36 and 365
days ending yesterday (the data checks read the last 7 days before now), seeded once and reused
while they still end yesterday.

    .venv/bin/python bench/bench_attempt.py [--students 6000] [--days 365]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
REPEATS = 5


def yesterday():
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def seed(name: str, students: int, days: int) -> dict:
    import sqlalchemy as sa

    from seedtest_pipeline import synthetic, warehouse
    from seedtest_pipeline.attempts import apply_schema

    engine = warehouse.make_engine(warehouse.start_embedded(OUT / name).database_url(warehouse.WAREHOUSE_DATABASE))
    apply_schema(engine)
    with engine.begin() as connection:
        last = connection.scalar(sa.text("SELECT max(created_at)::date FROM exam_results"))
        if last != yesterday():
            connection.execute(sa.text("TRUNCATE exam_results"))
            config = synthetic.SyntheticConfig(students=students, days=days, end_date=yesterday(), seed=11)
            synthetic.seed_exam_results(connection.connection.driver_connection, config)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE exam_results"))
        sessions = connection.scalar(sa.text("SELECT count(*) FROM exam_results"))
    return {"sessions": sessions}


def measure(name: str, repeats: int) -> dict:
    import dagster as dg

    from assets.attempt import attempt
    from resources.warehouse import WarehouseResource
    from seedtest_pipeline import warehouse

    url = warehouse.start_embedded(OUT / name).database_url(warehouse.WAREHOUSE_DATABASE)
    timings, metadata = [], {}
    with dg.instance_for_test() as instance:
        for _ in range(repeats):
            started = time.perf_counter()
            result = dg.materialize([attempt], instance=instance, resources={"warehouse": WarehouseResource(database_url=url)})
            timings.append(time.perf_counter() - started)
            metadata = result.asset_materializations_for_node("attempt")[0].metadata
    return {
        "median": statistics.median(timings),
        "all": [round(t, 2) for t in timings],
        "attempts_in_window": metadata["attempts_in_check_window"].value,
        "window": metadata["check_window"].value,
    }


def in_subprocess(function: str, *args) -> dict:
    code = f"import json, sys; sys.path[:0] = ['bench', '.']; import bench_attempt as b; print(json.dumps(b.{function}(*{list(args)!r})))"
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=6000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    small_days = args.days // 10
    sizes = {"attempt_small": small_days, "attempt_large": args.days}
    seeded = {name: in_subprocess("seed", name, args.students, days) for name, days in sizes.items()}
    print(f"histories: {seeded['attempt_small']['sessions']} sessions over {small_days} days, "
          f"{seeded['attempt_large']['sessions']} over {args.days} days (both end {yesterday()})")
    figures = {name: in_subprocess("measure", name, REPEATS) for name in sizes}
    for name, f in figures.items():
        print(f"  {name:14} materialise attempt: {f['median']:.2f}s median of {REPEATS} (runs {f['all']}); "
              f"{f['attempts_in_window']} attempts in the check window {f['window']}")
    ratio = figures["attempt_large"]["median"] / figures["attempt_small"]["median"]
    growth = seeded["attempt_large"]["sessions"] / seeded["attempt_small"]["sessions"]
    print(f"  growth for {growth:.1f}x history: {ratio:.2f}x (flat means about 1)")


if __name__ == "__main__":
    main()
