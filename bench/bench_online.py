"""Benchmarks for online θ and inactivity (issue 13). Prints figures; never run by the tests.

    .venv/bin/python bench/bench_online.py eap          # 1. the EAP pass alone
    .venv/bin/python bench/bench_online.py batch        # 2. one run for a batch of 1,000 sessions
    .venv/bin/python bench/bench_online.py inactivity   # 3. an inactivity day against a features day
    .venv/bin/python bench/bench_online.py prepare-freshness; then freshness
                                                         # 4. a burst of sessions through the running daemon

1. EAP θ of 1,000,000 simulated students answering 30 of 300 items each (the responses built
   beforehand): students per second, median of 5.
2. The online_theta_update job on a batch of 1,000 sessions by 1,000 students, on a warehouse of
   its own under bench/out/online (6,000 students, 60 days, one calibration): the step's time
   from its start to its success events, and the split read / score / write, median of 5
   batches (each a new burst, found by the sensor's own read).
3. One user_inactivity day against one features_topic_daily day on the histories bench_features.py
   seeds (bench/out/small: 36 days, bench/out/large: 365 days, ~1M sessions). The large server is
   shared: the inactivity day runs in a transaction that is rolled back, and the features day
   replaces its day with identical rows (as bench_features.py does). Interleaved, median of 5.
   Then history growth alone: the same last 100 days (bench/out/inactivity_recent), and the same
   after 900 older days (bench/out/inactivity_deep, ~10x the sessions).
4. Freshness with `seedtest-pipeline ui` running (webserver + daemon + the default run launcher)
   under SEEDTEST_HOME=/tmp/online-ui, port 3013 (start it first, see bench/README.md): 1,000
   completed sessions by 1,000 students inserted at once, in one transaction and then in one
   transaction each; for each session the time from its commit to its θ row (p50/p95/max), when
   the last θ row came after the last insert, and the runs the sensor launched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))
REPEATS = 5


# --- 1. EAP -----------------------------------------------------------------------------------

def bench_eap(students: int = 1_000_000, items: int = 300, per_student: int = 30) -> None:
    from bench_irt import simulate
    from seedtest_pipeline import irt

    student, item, correct, a, b, theta = simulate(students, items, per_student)
    item_ids = np.array([str(1001 + j) for j in range(items)], dtype=object)
    responses = irt.Responses(np.arange(students), item_ids, student, item, correct)
    params = irt.ItemParams(item_ids, a, b, np.zeros(items), "2PL")
    irt.eap(responses, params)  # warm-up: thread pool, caches
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        abilities = irt.eap(responses, params)
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    print(f"1. EAP, {students:,} students x {per_student} answers ({items} items): median {median:.3f} s = "
          f"{students / median:,.0f} students/s (target >= 1,000,000/s; runs {[round(t, 3) for t in timings]}); "
          f"corr(θ, truth) {np.corrcoef(abilities.theta, theta)[0, 1]:.3f}, median se {np.median(abilities.se):.3f}")


# --- 2. one batch -----------------------------------------------------------------------------

def online_server():
    from seedtest_pipeline import warehouse

    embedded = warehouse.start_embedded(OUT / "online")
    return embedded, embedded.database_url(warehouse.WAREHOUSE_DATABASE)


def seed_online(engine, students: int, days: int) -> None:
    import sqlalchemy as sa

    from seedtest_pipeline import synthetic
    from seedtest_pipeline.calibration import calibrate

    with engine.begin() as connection:
        if connection.scalar(sa.text("SELECT count(*) FROM mirt_fit_meta")):
            return
        config = synthetic.SyntheticConfig(students=students, days=days, seed=13)
        synthetic.seed_exam_results(connection.connection.driver_connection, config)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE exam_results"))
    with engine.begin() as connection:
        calibrate(connection, datetime.now(timezone.utc))


def insert_burst(engine, sessions: int, one_transaction: bool = True) -> list[tuple[str, str, float]]:
    """`sessions` completed sessions by as many distinct known students: in one transaction (one
    commit, one completion time), or each in its own, one after the other. Returns (user_id,
    completed_at as ISO text, commit time) per session."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        users = list(connection.scalars(sa.text(
            "SELECT user_id FROM mirt_ability WHERE source = 'calibration' GROUP BY user_id ORDER BY random() LIMIT :n"),
            {"n": sessions}))
    rng = np.random.default_rng()
    rows = [{"session_id": f"bench-{uuid.uuid4().hex}", "user_id": user,
             "result_json": json.dumps({"questions": [
                 {"question_id": int(1001 + q), "is_correct": bool(rng.random() < 0.6), "time_spent_sec": 40,
                  "used_hints": 0, "topic": "bench"} for q in rng.choice(300, 10, replace=False)]})}
            for user in users]
    insert = sa.text(
        "INSERT INTO exam_results (session_id, user_id, result_json) VALUES (:session_id, :user_id, "
        "CAST(:result_json AS jsonb)) RETURNING to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    done = []
    if one_transaction:
        with engine.begin() as connection:
            stamps = [connection.execute(insert, row).scalar() for row in rows]
        committed = time.time()
        return [(row["user_id"], stamp, committed) for row, stamp in zip(rows, stamps)]
    with engine.connect() as connection:
        for row in rows:
            with connection.begin():
                stamp = connection.execute(insert, row).scalar()
            done.append((row["user_id"], stamp, time.time()))
    return done


def bench_batch(students: int = 6000, days: int = 60, sessions: int = 1000) -> None:
    import dagster as dg

    from assets.online_theta import online_theta_job
    from resources.warehouse import WarehouseResource
    from seedtest_pipeline import warehouse
    from seedtest_pipeline.attempts import apply_schema
    from seedtest_pipeline.online_theta import poll_completed_sessions

    _server, url = online_server()
    engine = warehouse.make_engine(url)
    apply_schema(engine)
    seed_online(engine, students, days)
    resources = {"warehouse": WarehouseResource(database_url=url)}
    steps, polls, splits = [], [], []
    with dg.instance_for_test() as instance:
        for _ in range(REPEATS):
            cursor = None
            while True:  # the sensor's cursor before the burst (earlier bursts taken)
                with engine.begin() as connection:
                    drained = poll_completed_sessions(connection, cursor)
                cursor = drained.cursor
                if not drained.cut:
                    break
            insert_burst(engine, sessions)
            started = time.perf_counter()
            with engine.begin() as connection:  # the sensor's read: exactly the burst
                poll = poll_completed_sessions(connection, cursor)
            polls.append(time.perf_counter() - started)
            assert len(poll.sessions) == sessions
            run = online_theta_job.execute_in_process(
                instance=instance, resources=resources,
                run_config={"ops": {"update_online_theta": {"config": {"user_ids": poll.user_ids,
                                                                        "as_of": poll.latest_completed_at}}},
                            "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            events = {e.event_type: e for e in run.all_events if e.is_step_event}
            step = (instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)[0].timestamp
                    - instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)[0].timestamp)
            output = events[dg.DagsterEventType.STEP_OUTPUT].event_specific_data.metadata
            steps.append(step)
            splits.append({k: output[f"seconds_{k}"].value for k in ("read", "score", "write")})
            assert output["rows_written"].value == len(poll.user_ids)
    print(f"2. online_theta_update for a batch of {sessions:,} sessions by {len(poll.user_ids):,} students "
          f"({students:,} students, {days} days of history): step time median {statistics.median(steps):.2f} s "
          f"(target <= 2 s; runs {[round(s, 2) for s in steps]}); inside it, median read "
          f"{statistics.median(s['read'] for s in splits):.3f} s, score {statistics.median(s['score'] for s in splits):.3f} s, "
          f"write {statistics.median(s['write'] for s in splits):.3f} s; the sensor's poll of the batch: "
          f"median {statistics.median(polls) * 1000:.0f} ms")


# --- 3. inactivity against features -----------------------------------------------------------

def measure_inactivity(name: str, day: str, repeats: int) -> dict:
    from bench_features import server_url
    from seedtest_pipeline import warehouse
    from seedtest_pipeline.inactivity import write_inactivity
    from seedtest_pipeline.windows import DayRange

    _server, url = server_url(name)
    engine = warehouse.make_engine(url)
    days = DayRange.from_key(day)
    timings, inactive = [], 0
    for _ in range(repeats):
        with engine.connect() as connection:
            transaction = connection.begin()
            started = time.perf_counter()
            result = write_inactivity(connection, days)
            timings.append(time.perf_counter() - started)
            transaction.rollback()  # a shared server: leave no rows
        inactive = result.rows_written + result.rows_unchanged
    return {"seconds_median": statistics.median(timings), "seconds_all": [round(t, 3) for t in timings],
            "inactive": inactive}


def bench_inactivity() -> None:
    from bench_features import END, in_subprocess

    small = in_subprocess("seed", "small", 6000, 36)
    large = in_subprocess("seed", "large", 6000, 365)  # already seeded: only the schema is brought to head
    day, day_end = str(END - timedelta(days=3)), str(END - timedelta(days=2))
    print(f"3. one day ({day}): user_inactivity against features_topic_daily, {REPEATS} interleaved runs each")
    figures = {}
    for name, info in (("small", small), ("large", large)):
        features, inactivity = [], []
        for _ in range(REPEATS):
            features.append(in_subprocess("measure", name, day, day_end, 1)["seconds_median"])
            inactivity_run = run_in_subprocess("measure_inactivity", name, day, 1)
            inactivity.append(inactivity_run["seconds_median"])
        figures[name] = (statistics.median(features), statistics.median(inactivity))
        print(f"  {name:5} history, {info['sessions']:>9,} sessions: features day median {figures[name][0]:.3f} s "
              f"{[round(t, 3) for t in features]}, inactivity day median {figures[name][1]:.3f} s "
              f"{[round(t, 3) for t in inactivity]} ({inactivity_run['inactive']:,} users inactive): "
              f"ratio {figures[name][1] / figures[name][0]:.2f} (target <= 1.5)")
    print(f"  inactivity day, large / small history ({large['sessions'] / small['sessions']:.1f}x the sessions): "
          f"{figures['large'][1] / figures['small'][1]:.2f}x; but the small history's 36 days fill only part of "
          "the 90-day horizon a day reads, so this compares 2.5x the sessions read, not history growth")
    # History growth with the same 90 days: the same recent 100 days, alone and after 900 older days.
    recent = run_in_subprocess("seed_history", "inactivity_recent", False)
    deep = run_in_subprocess("seed_history", "inactivity_deep", True)
    times = {"inactivity_recent": [], "inactivity_deep": []}
    for _ in range(REPEATS):
        for name in times:
            times[name].append(run_in_subprocess("measure_inactivity", name, day, 1)["seconds_median"])
    flat = {name: statistics.median(values) for name, values in times.items()}
    print(f"  history growth alone: the same last 100 days ({recent['sessions']:,} sessions) with "
          f"{deep['sessions'] - recent['sessions']:,} older sessions before them ({deep['sessions'] / recent['sessions']:.1f}x "
          f"the history): inactivity day median {flat['inactivity_recent']:.3f} s {[round(t, 3) for t in times['inactivity_recent']]} "
          f"-> {flat['inactivity_deep']:.3f} s {[round(t, 3) for t in times['inactivity_deep']]}: "
          f"{flat['inactivity_deep'] / flat['inactivity_recent']:.2f}x (target: flat)")


HISTORY_STUDENTS = 2000


def seed_history(name: str, with_older: bool) -> dict:
    """The last 100 days before END for HISTORY_STUDENTS students; with_older adds 900 days of
    other students' sessions before them (another seed: other ids), which end more than 90 days
    before any day measured, so a day's answer is the same, only the history behind it grows."""
    import sqlalchemy as sa

    from bench_features import END, server_url
    from seedtest_pipeline import synthetic, warehouse
    from seedtest_pipeline.attempts import apply_schema

    _server, url = server_url(name)
    engine = warehouse.make_engine(url)
    apply_schema(engine)
    blocks = [synthetic.SyntheticConfig(students=HISTORY_STUDENTS, days=100, end_date=END, seed=21)]
    if with_older:
        blocks.append(synthetic.SyntheticConfig(students=HISTORY_STUDENTS, days=900, end_date=END - timedelta(days=100),
                                                seed=22))
    with engine.begin() as connection:
        if not connection.scalar(sa.text("SELECT count(*) FROM exam_results")):
            for config in blocks:
                synthetic.seed_exam_results(connection.connection.driver_connection, config)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE exam_results"))
        return {"sessions": connection.scalar(sa.text("SELECT count(*) FROM exam_results"))}


def run_in_subprocess(function: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, 'bench'); import bench_online as b; "
            f"print(json.dumps(b.{function}(*{list(args)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- 4. freshness through the daemon ----------------------------------------------------------

def prepare_freshness_home(students: int = 2000, days: int = 35) -> None:
    """The warehouse of SEEDTEST_HOME=/tmp/online-ui: seeded and calibrated once."""
    from seedtest_pipeline import warehouse
    from seedtest_pipeline.attempts import apply_schema
    from seedtest_pipeline.local import prepare_environment

    prepare_environment()
    engine = warehouse.make_engine(os.environ["DATABASE_URL"])
    apply_schema(engine)
    seed_online(engine, students, days)
    print(f"prepared {warehouse.masked_url(os.environ['DATABASE_URL'])}")


def bench_freshness(sessions: int = 1000, timeout: float = 180.0) -> None:
    import sqlalchemy as sa
    from dagster import DagsterInstance, RunsFilter

    from seedtest_pipeline import warehouse
    from seedtest_pipeline.local import prepare_environment

    if os.environ.get("SEEDTEST_HOME") != "/tmp/online-ui":
        raise SystemExit("run with SEEDTEST_HOME=/tmp/online-ui, the home of the running `seedtest-pipeline ui`")
    prepare_environment()
    engine = warehouse.make_engine(os.environ["DATABASE_URL"])
    instance = DagsterInstance.get()
    for one_transaction in (True, False):
        before = datetime.now(timezone.utc)
        burst = insert_burst(engine, sessions, one_transaction)
        last_commit = max(at for _, _, at in burst)
        waiting = {(user, stamp): at for user, stamp, at in burst}
        lags, appeared = [], []
        while waiting and time.time() - last_commit < timeout:
            with engine.connect() as connection:
                found = connection.execute(sa.text(
                    "SELECT user_id, to_char(fitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at "
                    "FROM mirt_ability WHERE source = 'online' AND fitted_at >= :since"), {"since": before}).all()
            now = time.time()
            for row in found:
                committed = waiting.pop((row.user_id, row.at), None)
                if committed is not None:
                    lags.append(now - committed)
                    appeared.append(now)
            time.sleep(0.25)
        time.sleep(5)  # let the last run finish before counting runs
        runs = instance.get_runs(filters=RunsFilter(job_name="online_theta_update", created_after=before))
        lags = np.array(lags)
        how = "in one transaction" if one_transaction else \
            f"one transaction each, over {last_commit - min(at for _, _, at in burst):.1f} s"
        print(f"4. freshness: {sessions:,} sessions inserted {how}: θ rows for {len(lags):,} of {sessions:,}; lag from "
              f"each session's commit to its θ row: p50 {np.percentile(lags, 50):.1f} s, p95 {np.percentile(lags, 95):.1f} s, "
              f"max {lags.max():.1f} s; the last θ row {max(appeared) - last_commit:.1f} s after the last insert "
              f"(target <= 60 s); "
              f"{len(runs)} run(s) launched by the sensor ({', '.join(sorted(r.status.value for r in runs))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["eap", "batch", "inactivity", "prepare-freshness", "freshness"])
    args = parser.parse_args()
    {"eap": bench_eap, "batch": bench_batch, "inactivity": bench_inactivity,
     "prepare-freshness": prepare_freshness_home, "freshness": bench_freshness}[args.what]()


if __name__ == "__main__":
    main()
