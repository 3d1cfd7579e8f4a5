"""Hostile input (issue 10): values PostgreSQL accepts in exam_results never halt a run, never make
the platform's own inserts fail, and are counted as findings; one student is one user_id."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from factories import insert_results, question, result, utc
from seedtest_pipeline.attempts import input_issues, spelling_collisions
from seedtest_pipeline.calibration import read_window
from seedtest_pipeline.features import write_features
from seedtest_pipeline.hostile import LONG, insert_hostile_results
from seedtest_pipeline.kpi import write_weekly_kpi
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.windows import DayRange

DAY = date(2026, 10, 7)
AT = utc(2026, 10, 7, 12)
KNOWN = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def insert_hostile(engine):
    with engine.begin() as connection:
        return insert_hostile_results(connection, AT, KNOWN)


def feature_rows(engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(
            "SELECT * FROM features_topic_daily ORDER BY date, user_id, topic_id"))]


def test_the_platform_can_insert_every_hostile_row_with_the_pipelines_indexes_in_place(engine):
    # Before revision 0010 an index over the raw user_id made this insert fail ("index row size").
    rows = insert_hostile(engine)
    with engine.connect() as connection:
        stored = connection.scalar(sa.text("SELECT count(*) FROM exam_results WHERE session_id LIKE 'hostile%'"))
        indexes = connection.scalars(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'exam_results'")).all()
    assert stored == len(rows)
    assert any("length(user_id) <= 256" in definition for definition in indexes)


def test_a_day_full_of_hostile_rows_is_written_and_every_finding_counted(engine):
    insert_results(engine, [result(KNOWN, AT, [question(1), question(2, correct=False)], session_id="s-good")])
    rows = insert_hostile(engine)
    outcome = write_features(engine, DayRange(DAY, DAY + timedelta(days=1)))
    features = feature_rows(engine)

    expected = {}
    for row in rows:
        if row.finding and row.finding != "completed_at_in_future":  # those are outside every day
            expected[row.finding] = expected.get(row.finding, 0) + 1
    assert outcome.issues.counts == expected
    assert "hostile|pipe\nand newline" in outcome.issues.samples["question_id_unreadable"]
    # What such rows become: the attempt is kept with the value treated as missing.
    by_user_topic = {(r["user_id"], r["topic_id"]): r for r in features}
    hostile_user = {topic: r for (user, topic), r in by_user_topic.items() if user == "hostile-user"}
    assert set(hostile_user) == {"algebra", "general"}  # the too long / object topics count as 'general'
    assert hostile_user["general"]["attempts"] == 2
    assert hostile_user["algebra"]["attempts"] == 4  # negative and 24-day times, NaN, hints -1: kept
    assert hostile_user["algebra"]["rt_median"] == 30_000  # only the hints row is timed: the times went
    assert hostile_user["algebra"]["hints"] == 0
    # No row for a user nobody can be credited with; nothing longer than a key.
    assert {r["user_id"] for r in features} == {KNOWN, "hostile-user"}
    assert max(len(r["topic_id"]) for r in features) <= 256


def test_the_view_reports_the_same_findings_as_the_features_pass(engine):
    insert_hostile(engine)
    outcome = write_features(engine, DayRange(DAY, DAY + timedelta(days=1)))
    with engine.connect() as connection:
        view = input_issues(connection, datetime.combine(DAY, datetime.min.time(), timezone.utc),
                            datetime.combine(DAY + timedelta(days=1), datetime.min.time(), timezone.utc))
    assert view.counts == outcome.issues.counts


def test_one_student_is_one_user_id_in_features_kpis_and_calibration(engine):
    upper = KNOWN.upper()
    insert_results(engine, [
        result(KNOWN, AT + timedelta(days=d), [question(d), question(100 + d, correct=False)], session_id=f"lower-{d}")
        for d in range(5)
    ] + [
        result(upper, AT + timedelta(days=d, hours=1), [question(200 + d)], session_id=f"upper-{d}")
        for d in range(5)
    ])
    write_features(engine, DayRange(DAY, DAY + timedelta(days=5)))
    features = feature_rows(engine)
    assert {r["user_id"] for r in features} == {KNOWN}
    assert [r["attempts"] for r in features] == [3] * 5  # both spellings' attempts in one row per day

    with engine.begin() as connection:
        write_weekly_kpi(connection, date(2026, 10, 5), date(2026, 11, 1))
        kpi_users = connection.scalars(sa.text("SELECT user_id FROM weekly_kpi")).all()
        responses = read_window(connection, AT - timedelta(days=1), AT + timedelta(days=6), first_only=True)
        collisions = spelling_collisions(connection, AT - timedelta(days=1), AT + timedelta(days=6))
    assert kpi_users == [KNOWN]
    assert list(responses.student_ids) == [KNOWN] and responses.n_responses == 15
    assert collisions.students == 1
    assert collisions.sample == [{"user_id written": KNOWN, "spellings seen": f"{upper}, {KNOWN}"}]


@pytest.mark.parametrize("user_id", ["", "   ", "u" * LONG, None])
def test_a_user_nobody_can_be_credited_with_gets_no_kpis_and_no_theta(engine, user_id):
    insert_results(engine, [result(user_id, AT + timedelta(days=d), [question(d)]) for d in range(3)])
    with engine.begin() as connection:
        write_weekly_kpi(connection, date(2026, 10, 5), date(2026, 11, 1))
        assert connection.scalar(sa.text("SELECT count(*) FROM weekly_kpi")) == 0
        assert read_window(connection, AT - timedelta(days=1), AT + timedelta(days=6), first_only=True).n_responses == 0


def test_markdown_tables_render_whatever_the_data_holds():
    table = markdown_table([{"session": "a|b\nc", "note": "x" * 500}, {"session": None, "note": "\\|"}])
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two rows: no cell broke a row
    assert all(line.count("|") - line.count("\\|") == 3 for line in lines)
    assert "…" in lines[2] and len(lines[2]) < 200
