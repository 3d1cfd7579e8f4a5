"""The attempt V1 view: the lock, the identity rule, the row rules and malformed input."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import insert_results, question, result, utc
from seedtest_pipeline.attempts import V1_COLUMNS, apply_schema, identity_report, input_issues, null_counts, view_columns

T0 = utc(2026, 10, 5, 9, 30)


def rows(engine, sql="SELECT * FROM attempt ORDER BY completed_at, session_id, item_id"):
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(sql))]


def expected_student_id(user_id: str | None) -> uuid.UUID | None:
    """SPEC §2.2 written independently of the SQL function."""
    if user_id is None:
        return None
    if re.fullmatch(r"[0-9a-fA-F-]{36}", user_id) and postgres_reads_as_uuid(user_id):
        return uuid.UUID(user_id)
    return uuid.UUID(hashlib.md5(user_id.encode()).hexdigest())


def postgres_reads_as_uuid(text: str) -> bool:
    """PostgreSQL's uuid input: 32 hex digits, a hyphen allowed only after each group of four."""
    digits = 0
    for position, char in enumerate(text):
        if char == "-":
            if digits % 4 or position == 0 or position == len(text) - 1 or text[position - 1] == "-":
                return False
        else:
            digits += 1
    return digits == 32


def expected_id(result_id: str, question_id: str) -> int:
    digest = hashlib.md5(f"{result_id}-{question_id}".encode()).hexdigest()
    return int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)


def test_v1_columns_names_order_and_types_are_locked(engine):
    with engine.connect() as connection:
        assert view_columns(connection) == list(V1_COLUMNS)


def test_view_refuses_a_changed_column_and_is_restored_when_dropped(engine):
    with pytest.raises(sa.exc.ProgrammingError), engine.begin() as connection:
        connection.execute(sa.text("CREATE OR REPLACE VIEW attempt AS SELECT id::text AS id FROM attempt_rows"))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP VIEW attempt"))
    apply_schema(engine)
    with engine.connect() as connection:
        assert view_columns(connection) == list(V1_COLUMNS)


@pytest.mark.parametrize(
    "user_id",
    [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11----",  # 36 chars of the class, not a uuid
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",  # 35 chars
        "a0ee-bc99-9c0b4ef8-bb6d6bb9bd380a11",  # 35 chars, valid for PostgreSQL but not 36
        "a0eebc99-9c0b4ef8-bb6d-6bb9bd38-0a11",  # 36 chars, hyphens where PostgreSQL allows them
        "u-000123",
        "student@example.com",
        "학생-7",
        "",
    ],
)
def test_student_id_follows_the_rule(engine, user_id):
    with engine.connect() as connection:
        first = connection.scalar(sa.text("SELECT seedtest_student_id(:u)"), {"u": user_id})
        again = connection.scalar(sa.text("SELECT seedtest_student_id(:u)"), {"u": user_id})
    assert first == again == expected_student_id(user_id)


def test_null_user_id_gives_null_student_id_and_is_reported(engine):
    insert_results(engine, [result(None, T0, [question(1)])])
    (row,) = rows(engine)
    assert row["student_id"] is None
    with engine.connect() as connection:
        assert input_issues(connection).counts == {"user_id_missing": 1}


def test_id_item_and_value_rules_on_hand_made_rows(engine):
    r = result(
        "u-1",
        T0,
        [
            question(101, correct=True, seconds=12.3456, hints=2, topic="대수"),
            {"question_id": "102", "is_correct": "", "correct": "t", "time_spent_sec": "7.5", "used_hints": "0"},
            {"question_id": " 103 ", "is_correct": "FALSE", "topic": ""},
            {"question_id": 104, "correct": "yes", "time_spent_sec": 0.4},
        ],
    )
    insert_results(engine, [r])
    by_item = {row["item_id"]: row for row in rows(engine)}
    assert set(by_item) == {101, 102, 103, 104}
    assert by_item[101]["id"] == expected_id(r["id"], "101")
    assert by_item[103]["id"] == expected_id(r["id"], " 103 ")
    assert by_item[101]["student_id"] == expected_student_id("u-1")
    assert [by_item[i]["correct"] for i in (101, 102, 103, 104)] == [True, True, False, True]
    assert [by_item[i]["response_time_ms"] for i in (101, 102, 103, 104)] == [12346, 7500, 0, 400]
    assert [by_item[i]["hint_used"] for i in (101, 102, 103, 104)] == [True, False, False, False]
    assert by_item[101]["topic_id"] == "대수" and by_item[103]["topic_id"] is None
    assert by_item[101]["completed_at"] == T0
    assert by_item[101]["started_at"] == T0 - timedelta(seconds=12)
    assert by_item[102]["started_at"] == T0 - timedelta(seconds=8)  # round(7.5) = 8
    assert by_item[103]["started_at"] == T0


def test_completed_at_prefers_updated_at(engine):
    insert_results(engine, [result("u-1", T0, [question(1)])])
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE exam_results SET updated_at = created_at + interval '5 minutes'"))
    (row,) = rows(engine)
    assert row["completed_at"] == T0 + timedelta(minutes=5)


def test_attempt_no_orders_by_completed_at_then_result_id(engine):
    later = result("u-1", T0 + timedelta(days=1), [question(7)])
    tie_b = result("u-1", T0, [question(7)], result_id="bbbbbbbb-0000-0000-0000-000000000000")
    tie_a = result("u-1", T0, [question(7)], result_id="aaaaaaaa-0000-0000-0000-000000000000")
    other_user = result("u-2", T0, [question(7)])
    insert_results(engine, [later, tie_b, tie_a, other_user])
    numbered = {
        (r["session_id"]): r["attempt_no"] for r in rows(engine)
    }
    assert numbered[tie_a["session_id"]] == 1
    assert numbered[tie_b["session_id"]] == 2
    assert numbered[later["session_id"]] == 3
    assert numbered[other_user["session_id"]] == 1


MALFORMED = {
    "question_id_unreadable": [{"question_id": "q-17", "is_correct": True}],
    "question_id_missing": [{"is_correct": True}, {"question_id": "", "is_correct": True}],
    "correct_unreadable": [{"question_id": 5, "is_correct": "maybe"}],
    "used_hints_unreadable": [{"question_id": 5, "is_correct": True, "used_hints": "1.5"}],
    "time_spent_unreadable": [{"question_id": 5, "is_correct": True, "time_spent_sec": "fast"}],
    "question_not_object": [42, "q", None, [1, 2]],
    "questions_not_array": {"questions": {"question_id": 5}},
    "questions_missing": {"answers": []},
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_kind_is_survived_and_counted(engine, kind):
    bad = result("u-bad", T0, MALFORMED[kind], session_id=f"bad-{kind}")
    good = result("u-good", T0, [question(1), question(2, correct=False)])
    insert_results(engine, [bad, good])
    attempts = rows(engine)
    kept_bad = [r for r in attempts if r["session_id"] == bad["session_id"]]
    # Only the readable question_id kinds keep their row (with the value treated as missing).
    assert len(kept_bad) == (1 if kind in ("correct_unreadable", "used_hints_unreadable", "time_spent_unreadable") else 0)
    for row in kept_bad:
        assert (row["correct"], row["hint_used"]) == (kind == "used_hints_unreadable" or kind == "time_spent_unreadable", False)
        assert row["response_time_ms"] == 0
    assert len([r for r in attempts if r["session_id"] == good["session_id"]]) == 2
    with engine.connect() as connection:
        issues = input_issues(connection)
        nulls = null_counts(connection, T0 - timedelta(days=1), T0 + timedelta(days=1))
        assert nulls.pop("rows") == len(attempts) and not any(nulls.values())
    findings = len(MALFORMED[kind]) if isinstance(MALFORMED[kind], list) else 1
    assert issues.counts == {kind: findings}
    assert issues.samples[kind] == [bad["session_id"]]


def test_whole_result_findings_of_a_window_are_found_through_the_partial_index(engine):
    # The view's condition and the index's must stay the same: otherwise PostgreSQL cannot prove
    # that the index holds every result with a finding, and reads all results of the window.
    insert_results(engine, [
        result(None, T0, [question(1)], session_id="s-nobody"),
        result("u-1", T0, {"answers": []}, session_id="s-no-questions"),
        result("u-2", T0, [question(2)]),
    ])
    query = (
        "SELECT session_id, kind FROM attempt_result_issues "
        "WHERE (completed_at AT TIME ZONE 'UTC')::date >= :first AND (completed_at AT TIME ZONE 'UTC')::date < :end"
    )
    window = {"first": T0.date(), "end": T0.date() + timedelta(days=1)}
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL enable_seqscan = off"))  # the tables are tiny here
        plan = "\n".join(connection.scalars(sa.text(f"EXPLAIN {query}"), window))
        found = sorted(tuple(row) for row in connection.execute(sa.text(query), window))
    assert "exam_results_findings_day_idx" in plan, plan
    assert found == [("s-no-questions", "questions_missing"), ("s-nobody", "user_id_missing")]


def test_identity_check_reads_the_catalog_and_reference_ids(engine):
    with engine.connect() as connection:
        report = identity_report(connection)
    assert report.passed and report.function_immutable and report.views_use_function
    assert report.reference_ids_checked >= 8 and report.reference_ids_differing == []


def test_identity_check_fails_when_the_function_departs_from_the_rule(engine):
    with engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE OR REPLACE FUNCTION seedtest_student_id(user_id text) RETURNS uuid LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT md5(user_id)::uuid $$"  # forgets the uuid branch
        ))
        report = identity_report(connection)
        connection.rollback()
    assert not report.passed
    assert "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" in report.reference_ids_differing


# jsonb cannot hold U+0000 and PostgreSQL rejects lone surrogates, so no stored result contains either.
texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    texts, st.sampled_from(["1", " 2 ", "1.5", "true", "yes", "", "-0", "9" * 20, "1e3"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=6)
question_ids = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65),
                         st.text(alphabet="0123456789 +-.ae", max_size=5),
                         st.sampled_from(["12", " 13", "+14", "1.0", "x1", ""]))
elements = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"question_id": question_ids},
        optional={k: json_values for k in ("is_correct", "correct", "time_spent_sec", "used_hints", "topic")},
    ),
)
result_documents = st.one_of(
    st.fixed_dictionaries({"questions": st.lists(elements, max_size=6)}),
    st.fixed_dictionaries({"questions": json_values}),
    json_values,
)


def readable_question_id(value) -> bool:
    """question_id whose ->> text PostgreSQL reads as a bigint (floats are not generated here)."""
    if isinstance(value, bool) or value is None:
        return False
    text = str(value)
    return bool(re.fullmatch(r"\s*[+-]?[0-9]{1,19}\s*", text)) and -(2**63) <= int(text) < 2**63


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents=st.lists(result_documents, min_size=1, max_size=5))
def test_random_json_never_breaks_the_view(engine, documents):
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE exam_results"))
        connection.execute(
            sa.text(
                "INSERT INTO exam_results (session_id, user_id, result_json) "
                "VALUES (:s, 'u-1', CAST(:doc AS jsonb))"
            ),
            [{"s": f"s{i}", "doc": json.dumps(doc)} for i, doc in enumerate(documents)],
        )
        count = connection.scalar(sa.text("SELECT count(*) FROM attempt"))
        checks = connection.execute(
            sa.text("SELECT count(*) FILTER (WHERE correct IS NULL OR hint_used IS NULL OR attempt_no IS NULL) FROM attempt")
        ).scalar()
        input_issues(connection)
    expected = sum(
        1
        for doc in documents
        if isinstance(doc, dict) and isinstance(doc.get("questions"), list)
        for element in doc["questions"]
        if isinstance(element, dict) and readable_question_id(element.get("question_id"))
    )
    assert count == expected
    assert checks == 0
