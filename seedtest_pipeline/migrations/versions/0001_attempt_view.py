"""exam_results for local runs, the student identity function and the attempt V1 view

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

from seedtest_pipeline.queries import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Marks a table this migration created, so the downgrade never drops the platform's own table.
LOCAL_TABLE_COMMENT = "created by seedtest-pipeline for local runs"


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
          IF to_regclass('exam_results') IS NULL THEN
            CREATE TABLE exam_results (
              id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
              session_id text NOT NULL UNIQUE,
              user_id text NULL,
              exam_id integer,
              org_id integer,
              status text NOT NULL DEFAULT 'ready',
              result_json jsonb NOT NULL,
              score_raw numeric,
              score_scaled numeric,
              standard_error numeric,
              percentile numeric,
              created_at timestamptz NOT NULL DEFAULT now(),
              updated_at timestamptz NOT NULL DEFAULT now()
            );
            COMMENT ON TABLE exam_results IS '%s';
          END IF;
        END $$;
        """
        % LOCAL_TABLE_COMMENT
    )
    # Partitioned reads select a completed_at window; this index makes that a range scan.
    op.execute(
        "CREATE INDEX IF NOT EXISTS exam_results_completed_at_idx "
        "ON exam_results ((coalesce(updated_at, created_at)))"
    )
    run_script(op.get_bind(), "attempt_v1")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS attempt")
    op.execute("DROP VIEW IF EXISTS attempt_input_issues")
    op.execute("DROP VIEW IF EXISTS attempt_result_issues")
    op.execute("DROP VIEW IF EXISTS attempt_rows")
    op.execute("DROP VIEW IF EXISTS attempt_elements")
    for function in (
        "seedtest_questions(jsonb)",
        "seedtest_read_numeric(text)",
        "seedtest_read_seconds(text)",  # the script's seconds reader before 0005
        "seedtest_read_bool(text)",
        "seedtest_read_int(text)",
        "seedtest_read_bigint(text)",
        "seedtest_user_key(text)",
        "seedtest_student_id(text)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("DROP INDEX IF EXISTS exam_results_completed_at_idx")
    # The local exam_results is dropped only while it is empty: its rows are the platform's (or a
    # seed's), never the pipeline's, and a downgrade must not lose them.
    op.execute(
        f"""
        DO $$
        BEGIN
          IF obj_description(to_regclass('exam_results'), 'pg_class') = '{LOCAL_TABLE_COMMENT}' THEN
            IF EXISTS (SELECT FROM exam_results) THEN
              RAISE EXCEPTION USING MESSAGE = 'exam_results holds ' || (SELECT count(*) FROM exam_results)
                || ' rows that the pipeline did not write: the downgrade to base keeps them and stops '
                || 'here (nothing was changed). Drop or empty exam_results yourself if they may go, '
                || 'then downgrade again.';
            END IF;
            DROP TABLE exam_results;
          END IF;
        END $$;
        """
    )
