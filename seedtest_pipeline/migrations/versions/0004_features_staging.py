"""features_topic_daily_staging: where the parallel parts of a long backfill meet

Every features run computes its window here first, in one or more parts on separate connections
(one per part of a long window), tagged with the run's id; the rows then move into
features_topic_daily in one transaction. Each group also carries the findings of the input it
could not read, so the malformed-input report needs no second pass. UNLOGGED: the rows are
scratch, rebuilt by re-running, so they need no WAL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE features_topic_daily_staging (
          run_id uuid NOT NULL,
          staged_at timestamptz NOT NULL DEFAULT now(),
          -- features_topic_daily's columns, nullable: a group may hold only unreadable input
          user_id text,
          topic_id text,
          date date,
          attempts integer,
          correct integer,
          hints integer,
          avg_time_ms integer,
          rt_median integer,
          rt_correct_median integer,
          improvement numeric,
          last_seen_at timestamptz,
          computed_at timestamptz,
          -- what the row rules could not read in this group: 'kind:session_id' per finding
          findings text[]
        );
        CREATE INDEX features_topic_daily_staging_run_idx ON features_topic_daily_staging (run_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE features_topic_daily_staging")
