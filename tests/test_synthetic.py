"""The synthetic exam_results generator: determinism, counts, realism and malformed kinds,
checked against rows written into a real PostgreSQL (an embedded server of this module's own)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pgserver
import psycopg
import pytest

from seedtest_pipeline import synthetic
from seedtest_pipeline.synthetic import MALFORMED_KINDS, SyntheticConfig, generate, seed_exam_results

END = date(2026, 3, 1)
CONFIG = SyntheticConfig(students=400, days=28, end_date=END, seed=11)
DIRTY = SyntheticConfig(students=400, days=28, end_date=END, seed=12, malformed=True)
ATTEMPT_SQL = Path(__file__).resolve().parent.parent / "seedtest_pipeline" / "sql" / "attempt_v1.sql"

# One row per element, with the element's raw texts, for the checks below.
ELEMENTS = """
SELECT r.session_id, r.user_id, r.score_raw, r.created_at, q.element, q.position,
       jsonb_typeof(q.element) AS element_type,
       q.element ->> 'question_id' AS question_id, jsonb_typeof(q.element -> 'question_id') AS id_type,
       q.element ->> 'is_correct' AS is_correct, q.element ->> 'correct' AS correct,
       q.element ->> 'time_spent_sec' AS time_spent_sec, q.element ->> 'used_hints' AS used_hints,
       q.element ->> 'topic' AS topic
FROM exam_results r
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(r.result_json -> 'questions') = 'array'
                                             THEN r.result_json -> 'questions' ELSE '[]' END)
  WITH ORDINALITY AS q(element, position)
"""

# SPEC §2.2's malformed kinds, written here independently of the project's view.
FINDINGS = f"""
WITH e AS ({ELEMENTS})
SELECT 'questions_not_array' AS kind, count(*) FROM exam_results
 WHERE result_json ? 'questions' AND jsonb_typeof(result_json -> 'questions') <> 'array'
UNION ALL SELECT 'questions_missing', count(*) FROM exam_results WHERE NOT result_json ? 'questions'
UNION ALL SELECT 'user_id_missing', count(*) FROM exam_results WHERE user_id IS NULL
UNION ALL SELECT 'question_not_object', count(*) FROM e WHERE element_type <> 'object'
UNION ALL SELECT 'question_id_missing', count(*) FROM e
 WHERE element_type = 'object' AND coalesce(question_id, '') = ''
UNION ALL SELECT 'question_id_unreadable', count(*) FROM e
 WHERE element_type = 'object' AND question_id <> '' AND question_id !~ '^[0-9]+$'
UNION ALL SELECT 'correct_unreadable', count(*) FROM e
 WHERE question_id ~ '^[0-9]+$' AND coalesce(is_correct, correct) NOT IN ('true', 'false')
UNION ALL SELECT 'time_spent_unreadable', count(*) FROM e
 WHERE question_id ~ '^[0-9]+$' AND time_spent_sec !~ '^[0-9]+(\\.[0-9]+)?$'
UNION ALL SELECT 'used_hints_unreadable', count(*) FROM e
 WHERE question_id ~ '^[0-9]+$' AND used_hints !~ '^[0-9]+$'
"""


@pytest.fixture(scope="module")
def pg_uri(tmp_path_factory):
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def connect(uri: str, schema: str) -> psycopg.Connection:
    """A connection whose exam_results is the one in `schema` (created on first use)."""
    connection = psycopg.connect(uri, options=f"-c search_path={schema}")
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    connection.execute(synthetic.EXAM_RESULTS_DDL)
    connection.commit()
    return connection


@pytest.fixture(scope="module")
def clean(pg_uri):
    with connect(pg_uri, "clean") as connection:
        summary = seed_exam_results(connection, CONFIG)
        connection.commit()
        yield connection, generate(CONFIG), summary


@pytest.fixture(scope="module")
def dirty(pg_uri):
    with connect(pg_uri, "dirty") as connection:
        summary = seed_exam_results(connection, DIRTY)
        connection.commit()
        yield connection, generate(DIRTY), summary


def elements(connection, where: str = "TRUE") -> list[tuple]:
    return connection.execute(f"SELECT * FROM ({ELEMENTS}) e WHERE {where}").fetchall()


def local_day(column: str) -> str:
    return f"(({column} AT TIME ZONE 'UTC') + interval '9 hours')::date"


# -- determinism and counts ---------------------------------------------------------------------


def test_same_config_gives_byte_identical_copy_text_and_another_seed_does_not():
    first, second = generate(CONFIG), generate(CONFIG)
    assert first.copy_text() == second.copy_text()
    assert first.truth.items.equals(second.truth.items)
    assert first.truth.students.equals(second.truth.students)
    other = generate(SyntheticConfig(**{**vars(CONFIG), "seed": CONFIG.seed + 1}))
    assert other.copy_text() != first.copy_text()
    assert not np.allclose(other.truth.items["b"], first.truth.items["b"])


def test_database_holds_exactly_the_generated_rows(clean):
    connection, data, summary = clean
    rows = connection.execute(
        "SELECT id::text, session_id, user_id, exam_id, org_id, status, result_json, score_raw::int, "
        "created_at, updated_at FROM exam_results ORDER BY session_id"
    ).fetchall()
    expected = data.sessions.sort_values("session_id")
    assert len(rows) == len(expected) == summary.sessions == synthetic.session_count(CONFIG) > 3000
    for row, (_, want) in zip(rows, expected.iterrows()):
        assert row[:6] == (want.id, want.session_id, want.user_id, want.exam_id, want.org_id, want.status)
        assert row[6] == json.loads(want.result_json)
        assert row[7] == want.score_raw
        assert (row[8], row[9]) == (want.created_at.to_pydatetime(), want.updated_at.to_pydatetime())


def test_counts_match_the_config(clean):
    connection, data, summary = clean
    low, high = CONFIG.questions_per_session
    lengths = connection.execute(
        "SELECT min(jsonb_array_length(result_json -> 'questions')), "
        "max(jsonb_array_length(result_json -> 'questions')), "
        "sum(jsonb_array_length(result_json -> 'questions')), count(DISTINCT user_id), count(DISTINCT id), "
        "min(created_at), max(coalesce(updated_at, created_at)) FROM exam_results"
    ).fetchone()
    assert (lengths[0], lengths[1]) == (low, high)
    assert lengths[2] == summary.questions == summary.attempts == len(data.questions)
    assert lengths[3] == summary.students <= CONFIG.students
    assert lengths[3] > 0.95 * CONFIG.students
    assert lengths[4] == summary.sessions
    window_start = CONFIG.start_date
    assert lengths[5].date() >= window_start and lengths[6].date() <= CONFIG.end_date
    assert (summary.first_day, summary.last_day) == (window_start, CONFIG.end_date)
    items = connection.execute(
        f"SELECT min(question_id::bigint), max(question_id::bigint), count(DISTINCT question_id), "
        f"array_agg(DISTINCT topic) FROM ({ELEMENTS}) e"
    ).fetchone()
    assert items[0] >= CONFIG.first_item_id and items[1] < CONFIG.first_item_id + CONFIG.items
    assert items[2] == CONFIG.items
    assert sorted(items[3]) == sorted(CONFIG.topics)
    assert summary.malformed == {kind: 0 for kind in MALFORMED_KINDS}
    assert data.truth.malformed == []


def test_every_row_has_the_documented_shape_and_score_raw_counts_correct_answers(clean):
    connection, _, _ = clean
    bad = connection.execute(f"""
        SELECT count(*) FILTER (WHERE element_type <> 'object'),
               count(*) FILTER (WHERE NOT (id_type = 'number' OR (id_type = 'string' AND question_id ~ '^[0-9]+$'))),
               count(*) FILTER (WHERE (is_correct IS NULL) = (correct IS NULL)),
               count(*) FILTER (WHERE coalesce(is_correct, correct) NOT IN ('true', 'false')),
               count(*) FILTER (WHERE time_spent_sec IS NOT NULL AND NOT (time_spent_sec ~ '^[0-9]+(\\.[0-9])?$'
                                AND time_spent_sec::numeric BETWEEN 2 AND 600)),
               count(*) FILTER (WHERE used_hints IS NOT NULL AND used_hints !~ '^[0-3]$'),
               count(*) FILTER (WHERE topic IS NULL)
        FROM ({ELEMENTS}) e""").fetchone()
    assert bad == (0,) * 7
    shapes = connection.execute(
        "SELECT count(*) FILTER (WHERE jsonb_typeof(result_json -> 'questions') <> 'array'), "
        "count(*) FILTER (WHERE user_id IS NULL), count(*) FILTER (WHERE result_json ->> 'exam_version' IS NULL) "
        "FROM exam_results"
    ).fetchone()
    assert shapes == (0, 0, 0)
    mismatched = connection.execute(f"""
        SELECT count(*) FROM (
          SELECT session_id, min(score_raw) AS score_raw,
                 count(*) FILTER (WHERE coalesce(is_correct, correct) = 'true') AS correct
          FROM ({ELEMENTS}) e GROUP BY session_id) s
        WHERE score_raw <> correct""").fetchone()[0]
    assert mismatched == 0
    plausible = connection.execute(
        "SELECT min(score_scaled), max(score_scaled), min(standard_error), max(standard_error), "
        "min(percentile), max(percentile), corr(score_scaled, percentile) FROM exam_results"
    ).fetchone()
    assert 100 <= plausible[0] < plausible[1] <= 900 and 0 < plausible[2] < plausible[3] <= 100
    assert 0 <= plausible[4] < plausible[5] <= 100 and plausible[6] > 0.9


def test_the_loose_types_of_the_spec_all_occur(clean):
    connection, _, _ = clean
    shares = connection.execute(f"""
        SELECT avg((id_type = 'string')::int), avg((correct IS NOT NULL)::int),
               avg((jsonb_typeof(element -> 'is_correct') = 'string')::int),
               avg((jsonb_typeof(element -> 'time_spent_sec') = 'string')::int),
               avg((jsonb_typeof(element -> 'used_hints') = 'string')::int)
        FROM ({ELEMENTS}) e""").fetchone()
    assert 0.10 < shares[0] < 0.20      # question_id as a string
    assert 0.06 < shares[1] < 0.14      # `correct` instead of is_correct
    assert 0.06 < shares[2] < 0.14      # is_correct as "true"/"false"
    assert 0.04 < shares[3] < 0.12      # time_spent_sec as a string
    assert 0.04 < shares[4] < 0.12
    kinds = Counter(
        "uuid" if u == u.lower() and len(u) == 36 and u.count("-") == 4 else
        "UUID" if len(u) == 36 and u.count("-") == 4 else "other"
        for (u,) in connection.execute("SELECT DISTINCT user_id FROM exam_results")
    )
    total = sum(kinds.values())
    assert 0.82 < kinds["uuid"] / total < 0.92
    assert 0.01 < kinds["UUID"] / total < 0.06
    assert 0.06 < kinds["other"] / total < 0.15


def test_timing_and_hints_present_for_most_sessions_absent_for_some(clean):
    connection, _, _ = clean
    shares = connection.execute(f"""
        SELECT avg((t AND h)::int), avg((NOT t AND NOT h)::int), avg((t AND NOT h)::int), avg((h AND NOT t)::int),
               count(*) FILTER (WHERE t <> t_any OR h <> h_any)
        FROM (SELECT session_id, bool_and(time_spent_sec IS NOT NULL) AS t, bool_or(time_spent_sec IS NOT NULL) AS t_any,
                     bool_and(used_hints IS NOT NULL) AS h, bool_or(used_hints IS NOT NULL) AS h_any
              FROM ({ELEMENTS}) e GROUP BY session_id) s""").fetchone()
    both, neither, time_only, hints_only, mixed = shares
    assert 0.76 < both < 0.84
    assert 0.12 < neither < 0.18
    assert 0.015 < time_only < 0.05 and 0.008 < hints_only < 0.04
    assert mixed == 0  # a per-session client property, not per element


# -- realism: IRT truth, timing, rhythms -------------------------------------------------------


def test_item_truth_is_consistent_with_observed_accuracy(clean):
    connection, data, _ = clean
    observed = dict(connection.execute(f"""
        SELECT question_id::bigint, avg((coalesce(is_correct, correct) = 'true')::int)::float
        FROM ({ELEMENTS}) e GROUP BY 1""").fetchall())
    items = data.truth.items.set_index("item_id")
    ids = sorted(observed)
    p_correct = np.array([observed[i] for i in ids])
    assert np.corrcoef(items.loc[ids, "b"], p_correct)[0, 1] < -0.8
    # The 2PL with the generated θ predicts each item's accuracy (no systematic bias).
    questions = data.questions
    a = items.loc[questions["item_id"], "a"].to_numpy()
    b = items.loc[questions["item_id"], "b"].to_numpy()
    predicted = 1 / (1 + np.exp(-a * (questions["theta"].to_numpy() - b)))
    assert abs(predicted.mean() - questions["correct"].mean()) < 0.01
    students = data.truth.students.set_index("user_id")
    accuracy = dict(connection.execute(f"""
        SELECT user_id, avg((coalesce(is_correct, correct) = 'true')::int)::float FROM ({ELEMENTS}) e
        GROUP BY user_id HAVING count(*) >= 50""").fetchall())
    users = sorted(accuracy)
    assert np.corrcoef(students.loc[users, "theta"], [accuracy[u] for u in users])[0, 1] > 0.7


def test_active_and_new_students_learn_and_the_others_do_not(clean):
    _, data, _ = clean
    students = data.truth.students
    sessions = data.sessions.set_index("session_id")
    q = data.questions.join(sessions["user_id"], on="session_id").join(sessions["created_at"], on="session_id")
    start = students.set_index("user_id")[["theta", "theta_gain", "rhythm"]].rename(columns={"theta": "theta_0"})
    q = q.join(start, on="user_id")
    drift = q["theta"] - q["theta_0"]
    assert (drift >= -1e-12).all() and (drift <= q["theta_gain"] + 1e-12).all()
    learners = q["rhythm"].isin(["active", "new"])
    assert (drift[~learners] == 0).all()
    assert students.loc[students["rhythm"].isin(["active", "new"]), "theta_gain"].between(0, CONFIG.learning).all()
    assert np.corrcoef(q.loc[learners, "created_at"].astype("int64"), drift[learners] / q.loc[learners, "theta_gain"])[0, 1] > 0.9
    flat = generate(SyntheticConfig(**{**vars(CONFIG), "students": 50, "learning": 0.0}))
    assert (flat.truth.students["theta_gain"] == 0).all()


def test_items_repeat_across_sessions_and_never_within_one(clean):
    connection, _, _ = clean
    within, repeated_share = connection.execute(f"""
        SELECT (SELECT count(*) FROM (SELECT session_id, question_id FROM ({ELEMENTS}) e
                                      GROUP BY 1, 2 HAVING count(*) > 1) d),
               (SELECT avg((n > 1)::int) FROM (SELECT user_id, question_id, count(*) AS n FROM ({ELEMENTS}) e
                                               GROUP BY 1, 2) r)""").fetchone()
    assert within == 0
    assert repeated_share > 0.2  # re-attempts exist (recovery KPIs need them)


def test_time_spent_is_shorter_when_correct_and_for_able_students_and_hints_follow_ability(clean):
    _, data, _ = clean
    q = data.questions
    timed = q[q["time_spent_sec"].notna()]
    assert 30 < timed["time_spent_sec"].median() < 90
    assert timed.loc[timed["correct"], "time_spent_sec"].median() < timed.loc[~timed["correct"], "time_spent_sec"].median()
    able, weak = timed[timed["theta"] > 1], timed[timed["theta"] < -1]
    assert able["time_spent_sec"].median() < weak["time_spent_sec"].median()
    hinted = q[q["used_hints"].notna()]
    assert (hinted.loc[hinted["theta"] < -1, "used_hints"] > 0).mean() > 2 * (hinted.loc[hinted["theta"] > 1, "used_hints"] > 0).mean()


def test_rhythms_differ_and_respect_their_days(clean):
    connection, data, _ = clean
    students = data.truth.students.set_index("user_id")
    rows = connection.execute(
        f"SELECT user_id, {local_day('created_at')} AS day, count(*) FROM exam_results GROUP BY 1, 2"
    ).fetchall()
    per_day = Counter()
    days_of = {}
    for user_id, day, count in rows:
        per_day[count] += 1
        days_of.setdefault(user_id, []).append(day)
    assert max(per_day) == 2 and per_day[2] > 0  # a couple of sessions per day at most
    for user_id, days in days_of.items():
        truth = students.loc[user_id]
        assert truth.first_day <= min(days) and max(days) <= truth.last_day, (user_id, truth.rhythm)
    dropped = students[(students["rhythm"] == "dropped") & (students["sessions"] > 0)]
    assert len(dropped) > 20 and (dropped["last_day"] < CONFIG.end_date - timedelta(days=3)).all()
    new = students[students["rhythm"] == "new"]
    assert (new["first_day"] > CONFIG.start_date + timedelta(days=5)).all()
    last_week = CONFIG.end_date - timedelta(days=6)
    recent = {u for u, days in days_of.items() if max(days) >= last_week}
    active = students[students["rhythm"] == "active"].index
    assert sum(u in recent for u in active) > 0.9 * len(active)
    halves = {rhythm: [0, 0] for rhythm in ("active", "fading")}
    middle = CONFIG.start_date + timedelta(days=CONFIG.days // 2)
    for user_id, days in days_of.items():
        rhythm = students.loc[user_id, "rhythm"]
        if rhythm in halves:
            halves[rhythm][0] += sum(d < middle for d in days)
            halves[rhythm][1] += sum(d >= middle for d in days)
    assert halves["fading"][1] < 0.6 * halves["fading"][0]
    assert 0.8 < halves["active"][1] / halves["active"][0] < 1.25


def test_sessions_follow_local_hours(clean):
    connection, _, _ = clean
    night, evening = connection.execute(
        "SELECT avg((h BETWEEN 2 AND 5)::int), avg((h BETWEEN 16 AND 23)::int) "
        "FROM (SELECT extract(hour FROM (created_at AT TIME ZONE 'UTC') + interval '9 hours') AS h "
        "FROM exam_results) s"
    ).fetchone()
    assert night < 0.03 and evening > 0.5


# -- malformed input ----------------------------------------------------------------------------


def test_malformed_kinds_are_injected_and_counted_per_finding(dirty):
    connection, data, summary = dirty
    found = dict(connection.execute(FINDINGS).fetchall())
    generated = Counter(kind for _, kind in data.truth.malformed)
    assert found == summary.malformed == {kind: generated[kind] for kind in MALFORMED_KINDS}
    assert min(found.values()) >= DIRTY.malformed_min
    # Some sessions carry two bad elements: findings are per element.
    per_session = Counter(data.truth.malformed)
    assert max(per_session.values()) == 2
    # Both spellings of a missing question_id occur.
    missing = connection.execute(f"""
        SELECT count(*) FILTER (WHERE question_id = ''), count(*) FILTER (WHERE NOT element ? 'question_id')
        FROM ({ELEMENTS}) e WHERE element_type = 'object'""").fetchone()
    assert min(missing) > 0
    # The listed sessions are the affected ones.
    listed = {session_id for session_id, _ in data.truth.malformed}
    affected = {r[0] for r in connection.execute(f"""
        SELECT session_id FROM exam_results WHERE user_id IS NULL OR jsonb_typeof(result_json -> 'questions')
               IS DISTINCT FROM 'array'
        UNION SELECT session_id FROM ({ELEMENTS}) e WHERE element_type <> 'object'
           OR coalesce(question_id, '') !~ '^[0-9]+$' OR coalesce(is_correct, correct) NOT IN ('true', 'false')
           OR time_spent_sec !~ '^[0-9.]+$' OR used_hints !~ '^[0-9]+$'""")}
    assert affected == listed


def test_malformed_data_keeps_the_valid_rows_valid(clean, dirty):
    connection, data, summary = dirty
    assert dict(clean[0].execute(FINDINGS).fetchall()) == {kind: 0 for kind in MALFORMED_KINDS}
    listed = {session_id for session_id, _ in data.truth.malformed}
    sessions = connection.execute("SELECT count(*) FROM exam_results").fetchone()[0]
    assert len(listed) < 0.05 * sessions
    dropped = sum(summary.malformed[k] for k in ("question_not_object", "question_id_missing", "question_id_unreadable"))
    unarrayed = data.questions["session_id"].isin(
        [s for s, k in data.truth.malformed if k in ("questions_not_array", "questions_missing")]).sum()
    assert summary.attempts == summary.questions - dropped - unarrayed
    readable = connection.execute(
        f"SELECT count(*) FROM ({ELEMENTS}) e WHERE question_id ~ '^[0-9]+$'"
    ).fetchone()[0]
    assert readable == summary.attempts


def test_the_projects_attempt_view_reports_what_the_generator_injected(pg_uri, dirty):
    """Cross-check with the lead's SQL (SPEC §2.2) when it is present in the checkout."""
    if not ATTEMPT_SQL.exists():
        pytest.skip("seedtest_pipeline/sql/attempt_v1.sql not present")
    _, _, summary = dirty
    with connect(pg_uri, "dirty") as connection:
        connection.execute(ATTEMPT_SQL.read_text())
        issues = dict(connection.execute("SELECT kind, count(*) FROM attempt_input_issues GROUP BY kind").fetchall())
        attempts = connection.execute("SELECT count(*) FROM attempt").fetchone()[0]
        connection.rollback()
    assert issues == summary.malformed
    assert attempts == summary.attempts


# -- the writer: transactions, failures, API ------------------------------------------------------


def test_seed_leaves_the_transaction_to_the_caller(pg_uri):
    small = SyntheticConfig(students=30, days=7, end_date=END, seed=3)
    with connect(pg_uri, "scratch") as connection:
        summary = seed_exam_results(connection, small)
        assert connection.execute("SELECT count(*) FROM exam_results").fetchone()[0] == summary.sessions > 0
        connection.rollback()
        assert connection.execute("SELECT count(*) FROM exam_results").fetchone()[0] == 0


def test_seed_through_a_sqlalchemy_connection(pg_uri):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    small = SyntheticConfig(students=30, days=7, end_date=END, seed=4)
    connect(pg_uri, "scratch").close()
    url = pg_uri.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(url, connect_args={"options": "-c search_path=scratch"})
    try:
        with engine.begin() as connection:
            summary = seed_exam_results(connection.connection.driver_connection, small)
            count = connection.execute(sqlalchemy.text("SELECT count(*) FROM exam_results")).scalar()
            assert count == summary.sessions
            connection.execute(sqlalchemy.text("TRUNCATE exam_results"))
    finally:
        engine.dispose()


def test_a_failed_copy_raises_and_stops_the_generator_thread(pg_uri):
    small = SyntheticConfig(students=300, days=28, end_date=END, seed=5)
    with connect(pg_uri, "scratch") as connection:
        seed_exam_results(connection, small)
        with pytest.raises(psycopg.errors.UniqueViolation):
            seed_exam_results(connection, small)  # same session ids again
        connection.rollback()
        assert connection.execute("SELECT count(*) FROM exam_results").fetchone()[0] == 0
    assert not [t for t in threading.enumerate() if t.name == "synthetic-exam-results"]


@pytest.mark.parametrize("changes", [
    {"items": 5}, {"questions_per_session": (0, 3)}, {"questions_per_session": (5, 4)},
    {"rhythm_shares": (0.5, 0.5, 0.5, 0.0)}, {"topics": ("a", "a")}, {"days": 0}, {"students": 0},
    {"untimed_share": 0.99},
])
def test_config_rejects_nonsense(changes):
    with pytest.raises(ValueError):
        SyntheticConfig(**{**vars(CONFIG), **changes})


def test_end_date_defaults_to_yesterday_utc_and_is_fixed_in_the_config():
    config = SyntheticConfig()
    assert isinstance(config.end_date, date)
    from datetime import datetime, timezone
    assert config.end_date == datetime.now(timezone.utc).date() - timedelta(days=1)
    assert config.start_date == config.end_date - timedelta(days=config.days - 1)
