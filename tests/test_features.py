"""features_topic_daily: equal to aggregating the view, idempotent, atomic."""

from __future__ import annotations

import math
import random
import statistics
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from factories import insert_results, question, result, utc
from seedtest_pipeline.features import CONTEXT_COST, PART_GROWTH, WRITE_SHARE, split_days, write_features
from seedtest_pipeline.windows import DayRange

FIRST = date(2026, 9, 1)
DAYS = 40
TOPICS = ["대수", "geometry", "", None]


def random_results(seed: int = 3, users: int = 12) -> list[dict]:
    rng = random.Random(seed)
    results = []
    for u in range(users):
        user_id = f"u-{u}" if u % 3 else str(__import__("uuid").UUID(int=rng.getrandbits(128)))
        for day in range(DAYS):
            for _ in range(rng.choice([0, 0, 1, 2])):
                at = utc(FIRST.year, FIRST.month, FIRST.day, rng.randrange(24), rng.randrange(60)) + timedelta(days=day)
                timed = rng.random() > 0.2
                questions = [
                    question(
                        rng.randrange(1, 40),
                        correct=rng.random() < 0.6,
                        seconds=round(rng.uniform(2, 90), 2) if timed else None,
                        hints=rng.choice([0, 0, 1, "2"]) if timed else None,
                        topic=rng.choice(TOPICS),
                    )
                    for _ in range(rng.randrange(3, 9))
                ]
                if rng.random() < 0.05:
                    questions.append({"question_id": "q-bad", "is_correct": True})
                results.append(result(user_id, at, questions))
    results.append(result(None, utc(2026, 9, 20, 12), [question(1)]))  # no user: not attributable
    return results


def features(engine, days: DayRange) -> list[dict]:
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT seedtest_student_id(user_id) AS student_id, * FROM features_topic_daily "
                "WHERE date >= :first AND date < :end ORDER BY user_id, topic_id, date"
            ),
            {"first": days.first, "end": days.end},
        )
        return [dict(r._mapping) for r in found]


def improvement(k_r, n_r, k_p, n_p):
    """SPEC §4 I_t, written independently of the SQL function."""
    if not n_r or not n_p:
        return None
    p_r, p_p = k_r / n_r, k_p / n_p
    value = (p_r - p_p) * min(1, n_r / 30) * (1 - min(0.5, 1.96 * math.sqrt(p_r * (1 - p_r) / n_r)))
    return max(-1.0, min(1.0, value))


def from_view(engine, days: DayRange) -> dict[tuple, dict]:
    """What aggregating the attempt view over the window gives (timed = response_time_ms > 0)."""
    with engine.connect() as connection:
        attempts = connection.execute(
            sa.text("SELECT * FROM attempt WHERE student_id IS NOT NULL AND completed_at < :end"),
            {"end": utc(days.end.year, days.end.month, days.end.day)},
        ).all()
    per_user_day = defaultdict(lambda: [0, 0])
    groups = defaultdict(list)
    for a in attempts:
        day = a.completed_at.date()
        per_user_day[(a.student_id, day)][0] += 1
        per_user_day[(a.student_id, day)][1] += a.correct
        if days.first <= day < days.end:
            groups[(a.student_id, a.topic_id or "general", day)].append(a)
    expected = {}
    for (student, topic, day), group in groups.items():
        timed = [a.response_time_ms for a in group if a.response_time_ms > 0]
        timed_correct = [a.response_time_ms for a in group if a.response_time_ms > 0 and a.correct]

        def window(lo, hi):
            cells = [per_user_day.get((student, day - timedelta(days=d)), [0, 0]) for d in range(lo, hi + 1)]
            return sum(c[1] for c in cells), sum(c[0] for c in cells)

        k_r, n_r = window(0, 13)
        k_p, n_p = window(14, 27)
        expected[(student, topic, day)] = {
            "attempts": len(group),
            "correct": sum(a.correct for a in group),
            "hints": sum(a.hint_used for a in group),
            "avg_time_ms": round(statistics.mean(timed)) if timed else None,
            "rt_median": round(statistics.median(timed)) if timed else None,
            "rt_correct_median": round(statistics.median(timed_correct)) if timed_correct else None,
            "improvement": improvement(k_r, n_r, k_p, n_p),
            "last_seen_at": max(a.completed_at for a in group),
        }
    return expected


def test_features_equal_aggregating_the_view(engine):
    insert_results(engine, random_results())
    days = DayRange(FIRST + timedelta(days=30), FIRST + timedelta(days=33))
    outcome = write_features(engine, days)
    expected = from_view(engine, days)
    found = {(f["student_id"], f["topic_id"], f["date"]): f for f in features(engine, days)}
    assert outcome.rows_written == len(found) == len(expected) > 20
    for key, values in expected.items():
        row = found[key]
        for column, value in values.items():
            if column == "improvement":
                assert (row[column] is None) == (value is None), key
                if value is not None:
                    assert float(row[column]) == pytest.approx(value, abs=1e-6), key
            elif column in ("avg_time_ms", "rt_median", "rt_correct_median") and value is not None:
                assert abs(row[column] - value) <= 1, (key, column)  # .5 rounding: half-even vs half-up
            else:
                assert row[column] == value, (key, column)


# One connection: a part and a tail whose I_t context is the part's rows. Three: three parts, each
# reading its own context from exam_results.
@pytest.mark.parametrize("connections, parts", [(1, 2), (3, 3)])
def test_single_run_range_equals_day_by_day_runs(engine, connections, parts):
    insert_results(engine, random_results(seed=5, users=6))
    whole = DayRange(FIRST, FIRST + timedelta(days=DAYS))
    outcome = write_features(engine, whole, connections=connections)
    assert outcome.parts == parts
    in_one_run = features(engine, whole)
    # The run's totals, summed over its parts, count each attempt, user and topic of the features
    # once (an attempt without a user is no feature).
    with engine.connect() as connection:
        totals = connection.execute(sa.text(
            "SELECT count(*) AS attempts, count(DISTINCT student_id) AS users, "
            "count(DISTINCT coalesce(topic_id, 'general')) AS topics FROM attempt "
            "WHERE completed_at >= :window_start AND completed_at < :window_end AND student_id IS NOT NULL"
        ), whole.bounds()).one()
    assert (outcome.attempts, outcome.users, outcome.topics) == tuple(totals) and totals.attempts > 100
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE features_topic_daily"))
    for offset in range(DAYS):
        write_features(engine, DayRange.from_key(str(FIRST + timedelta(days=offset))))
    day_by_day = features(engine, whole)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]  # noqa: E731
    assert strip(in_one_run) == strip(day_by_day)


def test_rerunning_a_partition_gives_identical_rows(engine):
    insert_results(engine, random_results(seed=7, users=5))
    days = DayRange.from_key(str(FIRST + timedelta(days=20)))
    write_features(engine, days)
    first = features(engine, days)
    again = write_features(engine, days)
    assert features(engine, days) == first  # computed_at included: unchanged rows keep theirs
    assert again.rows_deleted == again.rows_written == 0 and again.rows_unchanged == len(first) > 0


def test_changed_source_rows_get_a_new_computed_at(engine):
    insert_results(engine, [result("u-1", utc(2026, 9, 10, 8), [question(1, correct=False)])])
    days = DayRange.from_key("2026-09-10")
    write_features(engine, days)
    (before,) = features(engine, days)
    insert_results(engine, [result("u-1", utc(2026, 9, 10, 9), [question(2, correct=True)])])
    write_features(engine, days)
    (after,) = features(engine, days)
    assert (after["attempts"], after["correct"]) == (2, 1)
    assert after["computed_at"] > before["computed_at"]


def test_a_rerun_removes_rows_whose_source_is_gone_and_touches_no_other(engine):
    insert_results(engine, [result("u-1", utc(2026, 9, 10, 8), [question(1)], session_id="s-1"),
                            result("u-2", utc(2026, 9, 10, 9), [question(2)], session_id="s-2")])
    days = DayRange.from_key("2026-09-10")
    write_features(engine, days)
    (kept, _) = features(engine, days)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM exam_results WHERE session_id = 's-2'"))
    again = write_features(engine, days)
    assert features(engine, days) == [kept]  # computed_at included
    assert (again.rows_deleted, again.rows_written, again.rows_unchanged) == (1, 0, 1)


def test_overlapping_windows_written_at_once_queue_and_both_succeed(engine):
    """Two runs over overlapping ranges at the same moment (issue 10: the loser failed on a
    duplicate key): the second writer waits for the first's transaction, then replaces its window."""
    insert_results(engine, random_results(seed=5, users=8))
    first, second = DayRange(FIRST, FIRST + timedelta(days=20)), DayRange(FIRST + timedelta(days=10), FIRST + timedelta(days=30))
    barrier = threading.Barrier(2)

    def write(days):
        barrier.wait()
        return write_features(engine, days)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = [future.result() for future in [pool.submit(write, first), pool.submit(write, second)]]
    both = DayRange(first.first, second.end)
    at_once = features(engine, both)
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE features_topic_daily"))
    write_features(engine, both)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]  # noqa: E731
    assert all(outcome.rows_written > 0 for outcome in outcomes)
    assert strip(at_once) == strip(features(engine, both))


@pytest.mark.parametrize("connections", [1, 2])
def test_a_failure_mid_write_leaves_the_previous_rows(engine, connections):
    insert_results(engine, random_results(seed=9, users=4))
    days = DayRange(FIRST, FIRST + timedelta(days=14))
    write_features(engine, days)
    before = features(engine, days)
    insert_results(engine, [result("u-poison", utc(2026, 9, 3, 10), [question(1)])])
    with engine.begin() as connection:
        # A real failure inside the insert, after the window's rows were deleted.
        connection.execute(sa.text("""
            CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.user_id = 'u-poison' THEN RAISE EXCEPTION 'disk full (simulated)'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON features_topic_daily
              FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """))
    try:
        with pytest.raises(sa.exc.DBAPIError, match="disk full"):
            write_features(engine, days, connections=connections)
        assert features(engine, days) == before
        assert part_tables(engine) == []
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TRIGGER refuse_poison ON features_topic_daily; DROP FUNCTION refuse_poison()"))


def part_tables(engine) -> list[str]:
    with engine.connect() as connection:
        return connection.scalars(
            sa.text("SELECT relname FROM pg_class WHERE relname LIKE 'features_topic_daily_part_%'")
        ).all()


# Three parts: the failing one is computed alongside the others. One connection: the failing part
# is the one a tail follows, and the tail, waiting for it, fails with it.
@pytest.mark.parametrize("connections", [3, 1])
def test_a_failing_part_of_a_backfill_leaves_the_previous_rows(engine, connections):
    insert_results(engine, random_results(seed=9, users=4))
    days = DayRange(FIRST, FIRST + timedelta(days=DAYS))
    write_features(engine, days)
    before = features(engine, days)
    # A real failure inside the last part's query: the median of a day holding the poison time.
    insert_results(engine, [result("u-poison", utc(2026, 9, 30, 10), [question(1, seconds=987.654)])])
    with engine.begin() as connection:
        connection.execute(sa.text("""
            ALTER FUNCTION seedtest_sorted_median(integer[]) RENAME TO seedtest_sorted_median_real;
            CREATE FUNCTION seedtest_sorted_median(sorted integer[]) RETURNS float8
            LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
              IF 987654 = ANY (sorted) THEN RAISE EXCEPTION 'part failed (simulated)'; END IF;
              RETURN seedtest_sorted_median_real(sorted);
            END $$;
        """))
    try:
        with pytest.raises(sa.exc.DBAPIError, match="part failed"):
            write_features(engine, days, connections=connections)
        assert features(engine, days) == before
        assert part_tables(engine) == []  # the parts that succeeded were dropped too
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(
                "DROP FUNCTION seedtest_sorted_median(integer[]); "
                "ALTER FUNCTION seedtest_sorted_median_real(integer[]) RENAME TO seedtest_sorted_median"
            ))


def test_backfill_parts_cover_the_window_in_whole_weeks_at_least():
    for days, count in ((DAYS, 3), (365, 2), (21, 3), (15, 2), (100, 8), (33, 1), (34, 1), (60, 2)):
        window = DayRange(FIRST, FIRST + timedelta(days=days))
        parts = split_days(window, count)
        ranges = [part.days for part in parts]
        assert ranges[0].first == window.first and ranges[-1].end == window.end
        assert all(a.end == b.first for a, b in zip(ranges, ranges[1:]))
        assert all(part.days >= 7 for part in ranges)
        # One part per connection, and at most one tail: it follows the last part, which holds
        # the tail's whole I_t context.
        follow = [part.follows for part in parts]
        assert 1 <= follow.count(False) <= count and follow.count(True) <= 1 and not follow[0]
        if follow[-1]:
            assert ranges[-2].days >= 27
        # Later parts are longer: each is computed while the one before it is written.
        heads = [part.days.days for part in parts if not part.follows]
        assert heads == sorted(heads)
    assert [part.follows for part in split_days(DayRange(FIRST, FIRST + timedelta(days=33)), 1)] == [False]
    assert [part.follows for part in split_days(DayRange(FIRST, FIRST + timedelta(days=34)), 1)] == [False, True]
    year = DayRange(FIRST, FIRST + timedelta(days=365))
    first, second, tail = (part.days.days for part in split_days(year, 2))
    # Each part's work: its days and, at CONTEXT_COST a day, the 27 days of I_t context before it;
    # a tail reads no context and gets WRITE_SHARE of the part before it.
    context = CONTEXT_COST * 27
    assert (second + context) / (first + context) == pytest.approx(PART_GROWTH, abs=0.01)
    assert tail / (second + context) == pytest.approx(WRITE_SHARE, abs=0.01)
    # A history that starts with the window: only the second part has a context to read.
    history = {FIRST + timedelta(days=day): 100 for day in range(365)}
    first, second, tail = (part.days.days for part in split_days(year, 2, history))
    assert (second + context) / first == pytest.approx(PART_GROWTH, abs=0.01)
    # The cut follows the sessions: a busy first month puts it inside that month.
    busy_month = {FIRST + timedelta(days=day): (1000 if day < 30 else 10) for day in range(365)}
    first, second = (part.days for part in split_days(year, 2, busy_month)[:2])
    assert 7 <= first.days < 30 and first.end == second.first
    assert len(split_days(DayRange(FIRST, FIRST + timedelta(days=13)), 4)) == 1  # too short to split


def test_window_rejections_are_counted_with_sample_sessions(engine):
    insert_results(engine, [
        result("u-1", utc(2026, 9, 10, 8), [question(1), {"question_id": "q-9"}], session_id="s-bad"),
        result(None, utc(2026, 9, 10, 9), [question(1)], session_id="s-nobody"),
        result("u-1", utc(2026, 9, 11, 9), [{"question_id": "x"}], session_id="s-next-day"),
    ])
    outcome = write_features(engine, DayRange.from_key("2026-09-10"))
    assert outcome.issues.counts == {"question_id_unreadable": 1, "user_id_missing": 1}
    assert outcome.issues.samples["question_id_unreadable"] == ["s-bad"]
    assert outcome.rows_written == 1 and outcome.attempts == 1


def test_an_element_with_several_findings_counts_each_like_the_view(engine):
    from seedtest_pipeline.attempts import input_issues

    # One element, three findings; the session id holds the separators the findings are kept with.
    odd_session = "s:1,2:x"
    insert_results(engine, [
        result("u-1", utc(2026, 9, 10, 8), [
            question(1, correct="maybe", seconds="slow", hints="many"),
            question(2),
        ], session_id=odd_session),
        result("u-2", utc(2026, 9, 10, 9), [question(3, seconds="n/a")], session_id="s-plain"),
    ])
    days = DayRange.from_key("2026-09-10")
    outcome = write_features(engine, days)
    with engine.connect() as connection:
        bounds = days.bounds()
        view = input_issues(connection, bounds["window_start"], bounds["window_end"])
    assert outcome.issues.counts == {
        "correct_unreadable": 1, "time_spent_unreadable": 2, "used_hints_unreadable": 1,
    }
    assert outcome.issues.counts == view.counts and outcome.issues.samples == view.samples
    assert outcome.issues.samples["time_spent_unreadable"] == sorted([odd_session, "s-plain"])
    assert outcome.rows_written == 2 and outcome.attempts == 3


def test_the_single_pass_counts_every_malformed_kind_like_the_view(engine):
    from seedtest_pipeline import synthetic
    from seedtest_pipeline.attempts import input_issues

    config = synthetic.SyntheticConfig(students=150, items=40, days=21, end_date=date(2026, 9, 21), seed=4, malformed=True)
    with engine.begin() as connection:
        synthetic.seed_exam_results(connection.connection.driver_connection, config)
    days = DayRange(date(2026, 9, 1), date(2026, 9, 22))
    outcome = write_features(engine, days, connections=3)
    with engine.connect() as connection:
        bounds = days.bounds()
        from_view = input_issues(connection, bounds["window_start"], bounds["window_end"])
    assert len(outcome.issues.counts) == 9 and all(n > 0 for n in outcome.issues.counts.values())
    assert outcome.issues.counts == from_view.counts
    assert outcome.issues.samples == from_view.samples
