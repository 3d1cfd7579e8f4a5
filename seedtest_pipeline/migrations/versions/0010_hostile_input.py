"""Hostile input: bounded indexes on exam_results, one user_id per student, plausible values

- The day-and-user index of the first 0008 indexed the raw text of every user_id, so the platform's
  own insert of a user_id longer than about 2,700 bytes failed ("index row size exceeds"). It is
  replaced by exam_results_day_user_idx, which holds only user ids of at most 256 characters
  (created by 0008 since; here for databases that ran the first 0008).
- Whole-result findings now include user ids that are blank or too long, so their partial index
  has a new condition (seedtest_user_key(user_id) IS NULL) and a new name.
- The row rules gain seedtest_user_key, plausible ranges and the topic rules (attempt_v1.sql), and
  the features merge of a student's spellings its two helpers (kpi_functions.sql).

On a large production exam_results, create the two indexes by hand first with CREATE INDEX
CONCURRENTLY (same names and definitions): the migration then finds them and leaves them alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from alembic import op

from seedtest_pipeline.queries import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DAY = "((coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date)"
# The condition is attempt_result_issues' own, so PostgreSQL proves that the index covers it.
FINDINGS_INDEX = (
    f"CREATE INDEX IF NOT EXISTS exam_results_findings_day_idx ON exam_results ({DAY}) "
    "WHERE NOT result_json @> '{\"questions\": []}' OR seedtest_user_key(user_id) IS NULL"
)
MALFORMED_INDEX_0008 = (
    f"CREATE INDEX IF NOT EXISTS exam_results_malformed_day_idx ON exam_results ({DAY}) "
    "WHERE NOT result_json @> '{\"questions\": []}' OR user_id IS NULL"
)
DAY_USER_INDEX = (
    f"CREATE INDEX IF NOT EXISTS exam_results_day_user_idx ON exam_results ({DAY}, user_id COLLATE \"C\") "
    "WHERE user_id IS NULL OR length(user_id) <= 256"
)


def upgrade() -> None:
    run_script(op.get_bind(), "kpi_functions")
    run_script(op.get_bind(), "attempt_v1")
    op.execute("DROP INDEX IF EXISTS exam_results_completed_day_user_idx")
    op.execute(DAY_USER_INDEX)
    op.execute(FINDINGS_INDEX)
    op.execute("DROP INDEX IF EXISTS exam_results_malformed_day_idx")


def downgrade() -> None:
    # The views keep their added columns (a view cannot drop columns in place); the code of 0009
    # reads them as before. The raw-text user index is not rebuilt: it rejected platform rows.
    op.execute(MALFORMED_INDEX_0008)
    op.execute("DROP INDEX IF EXISTS exam_results_findings_day_idx")
