"""features_topic_daily_staging: where the parallel parts of a long backfill meet

A long window is computed by several connections at once (one per part of the window); their rows
meet here, tagged with the run's id, and are then moved into features_topic_daily in one
transaction. UNLOGGED: the rows are scratch, rebuilt by re-running, so they need no WAL.

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
          LIKE features_topic_daily
        );
        CREATE INDEX features_topic_daily_staging_run_idx ON features_topic_daily_staging (run_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE features_topic_daily_staging")
