"""Hand-made exam_results rows for tests."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa


def question(question_id, correct=True, seconds=30, hints=0, topic="algebra", **extra) -> dict:
    element = {"question_id": question_id, "is_correct": correct, "topic": topic, **extra}
    if seconds is not None:
        element["time_spent_sec"] = seconds
    if hints is not None:
        element["used_hints"] = hints
    return element


def result(user_id, completed_at: datetime, questions, session_id=None, result_id=None) -> dict:
    return {
        "id": result_id or str(uuid.uuid4()),
        "session_id": session_id or f"s-{uuid.uuid4().hex[:12]}",
        "user_id": user_id,
        "result_json": questions if isinstance(questions, dict) else {"questions": questions},
        "completed_at": completed_at,
    }


def insert_results(engine, results: list[dict]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO exam_results (id, session_id, user_id, result_json, created_at, updated_at) "
                "VALUES (CAST(:id AS uuid), :session_id, :user_id, CAST(:result_json AS jsonb), "
                ":completed_at, :completed_at)"
            ),
            [{**r, "result_json": json.dumps(r["result_json"], ensure_ascii=False)} for r in results],
        )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
