"""The attempt V1 contract: applying it, proving the lock, and reporting malformed input.

The lock checks (names, order and types of the view; the identity function) read the catalog and
a fixed set of reference user ids, so they are exact and take milliseconds whatever the history.
The data checks (required values, malformed input, user ids spelled several ways) read a bounded
recent window of exam_results through its completed_at index: a full scan of a production
history would take an hour. Each daily features partition reports its own window's findings.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from seedtest_pipeline import migrations
from seedtest_pipeline.markdown import cell
from seedtest_pipeline.queries import run_script

# SPEC §2.2: frozen names, order and types (as PostgreSQL's format_type prints them).
V1_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "bigint"),
    ("student_id", "uuid"),
    ("item_id", "bigint"),
    ("correct", "boolean"),
    ("response_time_ms", "integer"),
    ("hint_used", "boolean"),
    ("completed_at", "timestamp with time zone"),
    ("started_at", "timestamp with time zone"),
    ("attempt_no", "integer"),
    ("session_id", "text"),
    ("topic_id", "text"),
)
# Columns that always hold a value. attempt_no is row_number() (never null) and the only column the
# window cannot check without numbering the whole history, so the windowed check leaves it out.
REQUIRED_COLUMNS = tuple(name for name, _ in V1_COLUMNS if name not in ("student_id", "topic_id", "attempt_no"))
SAMPLE_SESSIONS = 5
DEFAULT_CHECK_DAYS = 7
# Spellings that exercise every branch of the identity rule (SPEC §2.2) and of the user key.
REFERENCE_USER_IDS = (
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "a0eebc999c0b4ef8bb6d6bb9bd380a11----",
    "a0eebc99-9c0b4ef8-bb6d-6bb9bd38-0a11",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
    "u-000123",
    "학생-7",
    "",
)


def apply_schema(engine: Engine) -> str:
    """Bring the schema to head and re-apply the V1 view (restores it if someone dropped it)."""
    migrations.upgrade(engine)
    with engine.begin() as connection:
        run_script(connection, "attempt_v1")
    return migrations.head_revision()


def view_columns(connection: Connection, view: str = "attempt") -> list[tuple[str, str]]:
    rows = connection.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(:view) AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"view": view},
    )
    return [tuple(row) for row in rows]


def student_id_rule(user_id: str | None) -> uuid.UUID | None:
    """SPEC §2.2's student_id rule in Python, to check the database function against."""
    if user_id is None:
        return None
    # 36 characters of hex and hyphens that PostgreSQL reads as a uuid: 32 hex digits in groups
    # of four, a hyphen allowed only between groups.
    if len(user_id) == 36 and re.fullmatch(r"[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}", user_id):
        return uuid.UUID(user_id.replace("-", ""))
    return uuid.UUID(hashlib.md5(user_id.encode()).hexdigest())


@dataclass(frozen=True)
class IdentityReport:
    function_immutable: bool
    views_use_function: bool
    reference_ids_checked: int
    reference_ids_differing: list[str]

    @property
    def passed(self) -> bool:
        return self.function_immutable and self.views_use_function and not self.reference_ids_differing


def identity_report(connection: Connection) -> IdentityReport:
    """student_id is one immutable function that follows the rule, and the view uses it (catalog
    and reference values: milliseconds, whatever the history)."""
    immutable = connection.scalar(
        sa.text("SELECT provolatile = 'i' FROM pg_proc WHERE proname = 'seedtest_student_id'")
    )
    definition = connection.scalar(sa.text("SELECT pg_get_viewdef('attempt_rows'::regclass)")) or ""
    found = connection.execute(
        sa.text("SELECT u, seedtest_student_id(u) AS student_id, seedtest_student_id(seedtest_user_key(u)) AS via_key "
                "FROM unnest(CAST(:ids AS text[])) AS u"),
        {"ids": list(REFERENCE_USER_IDS)},
    ).all()
    differing = [
        row.u for row in found
        if row.student_id != student_id_rule(row.u) or (row.u.strip() and row.via_key != row.student_id)
    ]
    return IdentityReport(bool(immutable), "seedtest_student_id(" in definition, len(found), differing)


@dataclass(frozen=True)
class Spellings:
    """Students whose user_id arrived spelled several ways in the window (the same uuid in upper
    and lower case, say), and the one user_id the pipeline writes for each."""

    students: int
    sample: list[dict]


def spelling_collisions(connection: Connection, window_start: datetime, window_end: datetime) -> Spellings:
    rows = connection.execute(
        sa.text(
            """
            SELECT seedtest_user_key(user_id) AS written, array_agg(DISTINCT user_id ORDER BY user_id) AS spellings
            FROM exam_results
            WHERE coalesce(updated_at, created_at) >= :window_start AND coalesce(updated_at, created_at) < :window_end
              AND seedtest_user_key(user_id) IS NOT NULL
            GROUP BY 1 HAVING count(DISTINCT user_id) > 1 ORDER BY 1
            """
        ),
        {"window_start": window_start, "window_end": window_end},
    ).all()
    sample = [{"user_id written": row.written, "spellings seen": ", ".join(row.spellings)} for row in rows[:SAMPLE_SESSIONS]]
    return Spellings(len(rows), sample)


def null_counts(connection: Connection, window_start: datetime, window_end: datetime) -> dict[str, int]:
    """Attempts of the window and the nulls per required V1 column among them (all must be zero)."""
    selects = ", ".join(f"count(*) FILTER (WHERE {c} IS NULL) AS {c}" for c in REQUIRED_COLUMNS)
    row = connection.execute(
        sa.text(f"SELECT count(*) AS rows, {selects} FROM attempt_rows "
                "WHERE completed_at >= :window_start AND completed_at < :window_end"),
        {"window_start": window_start, "window_end": window_end},
    ).one()
    return dict(row._mapping)


@dataclass(frozen=True)
class InputIssues:
    """What the row rules left out or could not read: counts by kind, sample session ids."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_table(self) -> str:
        lines = ["| kind | findings | sample sessions |", "|---|---:|---|"]
        lines += [f"| {k} | {n} | {', '.join(cell(s) for s in self.samples[k])} |" for k, n in sorted(self.counts.items())]
        return "\n".join(lines)


def input_issues(
    connection: Connection, window_start: datetime | None = None, window_end: datetime | None = None
) -> InputIssues:
    """Findings of attempt_input_issues, for a completed_at window or the whole table."""
    condition = "TRUE"
    params: dict = {"samples": SAMPLE_SESSIONS}
    if window_start is not None:
        condition = "completed_at >= :window_start AND completed_at < :window_end"
        params |= {"window_start": window_start, "window_end": window_end}
    rows = connection.execute(
        sa.text(
            f"""
            SELECT kind, count(*) AS findings,
                   (array_agg(DISTINCT session_id ORDER BY session_id))[1:CAST(:samples AS int)] AS samples
            FROM attempt_input_issues WHERE {condition} GROUP BY kind
            """
        ),
        params,
    )
    counts, samples = {}, {}
    for row in rows:
        counts[row.kind] = row.findings
        samples[row.kind] = list(row.samples)
    return InputIssues(counts, samples)


def merge_issues(parts) -> InputIssues:
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    for part in parts:
        for kind, count in part.counts.items():
            counts[kind] = counts.get(kind, 0) + count
            samples[kind] = sorted({*samples.get(kind, []), *part.samples[kind]})[:SAMPLE_SESSIONS]
    return InputIssues(counts, samples)


def sessions_in_the_future(connection: Connection, now: datetime) -> InputIssues:
    """Sessions completed more than a day after `now` (or at 'infinity'): no partition window will
    ever hold them. Read from the completed_at index: milliseconds."""
    row = connection.execute(
        sa.text(
            "SELECT count(*) AS sessions, (array_agg(session_id ORDER BY session_id))[1:CAST(:samples AS int)] AS sample "
            "FROM exam_results WHERE coalesce(updated_at, created_at) > CAST(:now AS timestamptz) + interval '1 day'"
        ),
        {"now": now, "samples": SAMPLE_SESSIONS},
    ).one()
    if not row.sessions:
        return InputIssues()
    return InputIssues({"completed_at_in_future": row.sessions}, {"completed_at_in_future": list(row.sample)})
