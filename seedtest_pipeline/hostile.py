"""Hostile exam_results rows: values PostgreSQL accepts that no client should send.

The demo inserts them next to its generated data and the tests use them one by one: none of them
may halt a run, block the platform's inserts or lose another row (docs/decisions.md, "Hostile
input"). Each row's session id says what it holds.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

LONG = 3_200  # characters: beyond what a btree index entry can hold (about 2,700 bytes)


@dataclass(frozen=True)
class HostileResult:
    session_id: str
    user_id: str | None
    result_json: object
    completed_at: str  # text PostgreSQL reads as a timestamptz ('infinity' included)
    finding: str  # the finding kind the row rules report for it ('' when it is only a duplicate identity)


def _question(question_id, **fields) -> dict:
    return {"question_id": question_id, "is_correct": True, "time_spent_sec": 30, "used_hints": 0,
            "topic": "algebra", **fields}


def hostile_results(completed_at: datetime, known_uuid_user: str | None) -> list[HostileResult]:
    """One row per hostile kind, completed at `completed_at` (except the ones about time itself).
    `known_uuid_user` is a lower-case uuid user_id that already has sessions: its upper-case
    spelling is the same student (no such row without one)."""
    at = completed_at.isoformat()
    big_topic = {"name": "대수", "path": ["수학", "대수"] * 700}
    rows = [
        HostileResult("hostile-long-topic", "hostile-user", {"questions": [_question(9001, topic="t" * LONG)]},
                      at, "topic_too_long"),
        HostileResult("hostile-object-topic", "hostile-user", {"questions": [_question(9002, topic=big_topic)]},
                      at, "topic_unreadable"),
        HostileResult("hostile-long-user", "u" * LONG, {"questions": [_question(9003)]}, at, "user_id_too_long"),
        HostileResult("hostile-negative-time", "hostile-user", {"questions": [_question(9004, time_spent_sec=-5)]},
                      at, "time_spent_implausible"),
        HostileResult("hostile-24-days", "hostile-user",
                      {"questions": [_question(9005, time_spent_sec=24 * 86_400)]}, at, "time_spent_implausible"),
        HostileResult("hostile-nan-time", "hostile-user", {"questions": [_question(9006, time_spent_sec="NaN")]},
                      at, "time_spent_implausible"),
        HostileResult("hostile-negative-hints", "hostile-user", {"questions": [_question(9007, used_hints=-1)]},
                      at, "used_hints_implausible"),
        HostileResult("hostile-empty-user", "", {"questions": [_question(9008)]}, at, "user_id_missing"),
        HostileResult("hostile-blank-user", "   ", {"questions": [_question(9009)]}, at, "user_id_missing"),
        HostileResult("hostile|pipe\nand newline", "hostile-user", {"questions": [{"question_id": "q|1"}]},
                      at, "question_id_unreadable"),
        HostileResult("hostile-huge-question-id", "hostile-user", {"questions": [_question(10**30)]},
                      at, "question_id_unreadable"),
        HostileResult("hostile-infinity", "hostile-user", {"questions": [_question(9011)]},
                      "infinity", "completed_at_in_future"),
        HostileResult("hostile-year-12000", "hostile-user", {"questions": [_question(9012)]},
                      "12000-01-01T00:00:00+00:00", "completed_at_in_future"),
    ]
    if known_uuid_user:
        rows.append(HostileResult("hostile-upper-case-uuid", known_uuid_user.upper(), {"questions": [_question(9010)]},
                                  at, ""))
    return rows


def insert_hostile_results(connection, completed_at: datetime, known_uuid_user: str | None) -> list[HostileResult]:
    """Insert the hostile rows on a SQLAlchemy connection (the caller commits); returns them."""
    rows = hostile_results(completed_at, known_uuid_user)
    connection.execute(
        sa.text(
            "INSERT INTO exam_results (id, session_id, user_id, result_json, created_at, updated_at) "
            "VALUES (CAST(:id AS uuid), :session_id, :user_id, CAST(:result_json AS jsonb), "
            "CAST(:completed_at AS timestamptz) - interval '1 minute', CAST(:completed_at AS timestamptz))"
        ),
        [
            {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, row.session_id)), "session_id": row.session_id,
             "user_id": row.user_id, "result_json": json.dumps(row.result_json, ensure_ascii=False),
             "completed_at": row.completed_at}
            for row in rows
        ],
    )
    return rows
