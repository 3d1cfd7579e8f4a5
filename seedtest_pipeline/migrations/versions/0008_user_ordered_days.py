"""Each day's results in user order; whole-result findings from a partial index; kpi_clamp inlined

The features pass groups each day's elements by user and topic. Read through an index on (UTC day,
user_id in the "C" collation), a day's results arrive in user order, so PostgreSQL only sorts each
user's few elements by topic and time (an incremental sort) instead of the whole day. This index
replaces exam_results_completed_day_idx, whose every use (a range of days) it serves as well.

The few results with a whole-result finding (questions missing or not an array, no user_id) get a
partial index by day, so a window's findings are read from it instead of from a scan of every
result in the window (0.6-1.5 s a year's backfill before, under a millisecond now).

kpi_clamp now names x once, so PostgreSQL inlines it into kpi_improvement and every other KPI
instead of calling it through the SQL function executor for each value.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from alembic import op

from seedtest_pipeline.queries import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# On a large production exam_results, create these indexes by hand first with CREATE INDEX
# CONCURRENTLY (same names): the migration then finds them and leaves them alone.
# The index holds only user ids short enough to be keys (256 characters, docs/decisions.md): a
# btree entry must fit in a third of a page, and an index on the raw text would make the
# platform's own insert of a longer user_id fail. (Before revision 0010 this migration indexed the
# raw text of every user_id; 0010 replaces that index where it was built.)
DAY_USER_INDEX = (
    "CREATE INDEX IF NOT EXISTS exam_results_day_user_idx ON exam_results "
    "(((coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date), user_id COLLATE \"C\") "
    "WHERE user_id IS NULL OR length(user_id) <= 256"
)
# The condition is attempt_result_issues' own, so PostgreSQL proves that the index covers it.
MALFORMED_INDEX = (
    "CREATE INDEX IF NOT EXISTS exam_results_malformed_day_idx ON exam_results "
    "(((coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date)) "
    "WHERE NOT result_json @> '{\"questions\": []}' OR user_id IS NULL"
)
DAY_INDEX = (
    "CREATE INDEX IF NOT EXISTS exam_results_completed_day_idx "
    "ON exam_results (((coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date))"
)


def upgrade() -> None:
    op.execute(DAY_USER_INDEX)
    op.execute(MALFORMED_INDEX)
    op.execute("DROP INDEX IF EXISTS exam_results_completed_day_idx")
    run_script(op.get_bind(), "kpi_functions")


def downgrade() -> None:
    op.execute(DAY_INDEX)
    op.execute("DROP INDEX IF EXISTS exam_results_day_user_idx")
    op.execute("DROP INDEX IF EXISTS exam_results_malformed_day_idx")
    # kpi_clamp as 0003 created it.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION kpi_clamp(x float8, lo float8 DEFAULT 0, hi float8 DEFAULT 1)
        RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN x IS NULL THEN NULL ELSE greatest(lo, least(hi, x)) END
        $$;
        """
    )
