"""Day-ordered reads: exam_results by UTC day, features_topic_daily keyed date first

The features pass selects its window by UTC day and reads it in day order from an index on that
day, so PostgreSQL sorts each day's attempts on their own (in memory) instead of the whole window.
features_topic_daily's primary key leads with the date: every reader selects a date range, a
backfill appends in date order, and the separate date index becomes redundant (one index to
maintain instead of two). The key's columns are those of SPEC §3; only their order changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# On a large production exam_results, create this index by hand first with CREATE INDEX
# CONCURRENTLY (same name): the migration then finds it and leaves it alone.
DAY_INDEX = (
    "CREATE INDEX IF NOT EXISTS exam_results_completed_day_idx "
    "ON exam_results (((coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date))"
)


def upgrade() -> None:
    op.execute(DAY_INDEX)
    op.execute(
        """
        ALTER TABLE features_topic_daily DROP CONSTRAINT features_topic_daily_pkey;
        ALTER TABLE features_topic_daily ADD PRIMARY KEY (date, user_id, topic_id);
        DROP INDEX features_topic_daily_date_idx;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX features_topic_daily_date_idx ON features_topic_daily (date);
        ALTER TABLE features_topic_daily DROP CONSTRAINT features_topic_daily_pkey;
        ALTER TABLE features_topic_daily ADD PRIMARY KEY (user_id, topic_id, date);
        DROP INDEX exam_results_completed_day_idx;
        """
    )
