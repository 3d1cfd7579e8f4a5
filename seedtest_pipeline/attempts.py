"""The attempt V1 contract: applying it, proving the lock, and reporting malformed input."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from seedtest_pipeline import migrations
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
REQUIRED_COLUMNS = tuple(name for name, _ in V1_COLUMNS if name not in ("student_id", "topic_id"))
SAMPLE_SESSIONS = 5


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


@dataclass(frozen=True)
class IdentityReport:
    function_immutable: bool
    users_checked: int
    users_with_several_ids: int
    ids_differing_from_rule: int

    @property
    def passed(self) -> bool:
        return self.function_immutable and not self.users_with_several_ids and not self.ids_differing_from_rule


def identity_report(connection: Connection) -> IdentityReport:
    """student_id is one deterministic function of user_id, and the view uses it."""
    immutable = connection.scalar(
        sa.text("SELECT provolatile = 'i' FROM pg_proc WHERE proname = 'seedtest_student_id'")
    )
    row = connection.execute(
        sa.text(
            """
            SELECT count(*) AS users,
                   count(*) FILTER (WHERE ids > 1) AS several,
                   count(*) FILTER (WHERE differs) AS differing
            FROM (SELECT user_id, count(DISTINCT student_id) AS ids,
                         bool_or(student_id IS DISTINCT FROM seedtest_student_id(user_id)) AS differs
                  FROM attempt_rows GROUP BY user_id) AS per_user
            """
        )
    ).one()
    return IdentityReport(bool(immutable), row.users, row.several, row.differing)


def null_counts(connection: Connection) -> dict[str, int]:
    """Nulls per required V1 column (all must be zero)."""
    selects = ", ".join(f"count(*) FILTER (WHERE {c} IS NULL) AS {c}" for c in REQUIRED_COLUMNS)
    row = connection.execute(sa.text(f"SELECT count(*) AS rows, {selects} FROM attempt")).one()
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
        lines += [f"| {k} | {n} | {', '.join(self.samples[k])} |" for k, n in sorted(self.counts.items())]
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
