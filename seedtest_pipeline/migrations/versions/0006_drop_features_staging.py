"""Drop features_topic_daily_staging: each features run now keeps its parts in tables of its own

A run creates one unlogged table per part (features_topic_daily_part_*), writes the window from
them in date order and drops them at the end: no shared table to delete from afterwards, no run
column, and each part's rows stay in the order they were computed in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE features_topic_daily_staging")


def downgrade() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE features_topic_daily_staging (
          run_id uuid NOT NULL,
          staged_at timestamptz NOT NULL DEFAULT now(),
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
          findings text[]
        );
        CREATE INDEX features_topic_daily_staging_run_idx ON features_topic_daily_staging (run_id);
        """
    )
