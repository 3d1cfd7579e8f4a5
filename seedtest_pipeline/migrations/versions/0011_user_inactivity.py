"""user_inactivity (SPEC §7) and a per-student index on exam_results for the online θ update

- user_inactivity: per UTC day, one row per user inactive on that day (docs/decisions.md,
  "Inactivity"). The primary key leads with the day: the daily asset replaces one day's rows, and
  readers select days. A second index finds one user's history.
- exam_results_student_completed_idx: (student_id rule, completion time) for sessions whose user_id
  can be a key. The online θ update reads the 30-day window of each student of a batch through it:
  a few index probes per student instead of every session of 30 days. It holds a uuid and a
  timestamp, bounded values, so no row the platform accepts can be refused by it; its expression is
  the identity rule that SPEC §2.2 freezes, so it never has to be rebuilt for a new rule.

On a large production exam_results, create the index by hand first with CREATE INDEX CONCURRENTLY
(same name and definition): the migration then finds it and leaves it alone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STUDENT_INDEX = (
    "CREATE INDEX IF NOT EXISTS exam_results_student_completed_idx ON exam_results "
    "(seedtest_student_id(user_id), (coalesce(updated_at, created_at))) WHERE length(user_id) <= 256"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE user_inactivity (
          day date NOT NULL,
          user_id text NOT NULL,
          last_activity_at timestamptz NOT NULL,
          days_inactive integer NOT NULL CHECK (days_inactive > 0),
          sessions_56d integer NOT NULL CHECK (sessions_56d >= 0),
          threshold_days integer NOT NULL CHECK (threshold_days >= 0),
          computed_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (day, user_id)
        );
        CREATE INDEX user_inactivity_user_day_idx ON user_inactivity (user_id, day DESC);
        """
    )
    op.execute(STUDENT_INDEX)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS exam_results_student_completed_idx")
    op.execute("DROP TABLE user_inactivity")
