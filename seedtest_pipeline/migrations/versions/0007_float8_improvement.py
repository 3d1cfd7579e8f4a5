"""kpi_improvement in float8 throughout

The exposure term min(1, n_r / 30) was computed in numeric, which made kpi_improvement cost about
twice as much per call; the features pass calls it once per user and day (hundreds of thousands
of times in a backfill). Results agree to float8 precision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op

from seedtest_pipeline.queries import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(op.get_bind(), "kpi_functions")


def downgrade() -> None:
    # kpi_improvement as 0003 created it: the exposure term in numeric.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION kpi_improvement(correct_recent bigint, attempts_recent bigint,
                                                   correct_previous bigint, attempts_previous bigint)
        RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT kpi_clamp(
            (correct_recent::float8 / nullif(attempts_recent, 0)
               - correct_previous::float8 / nullif(attempts_previous, 0))
            * least(1.0, attempts_recent / 30.0)
            * (1 - least(0.5, 1.96 * sqrt((correct_recent::float8 / nullif(attempts_recent, 0))
                                          * (1 - correct_recent::float8 / nullif(attempts_recent, 0))
                                          / nullif(attempts_recent, 0)))),
            -1, 1)
        $$;
        """
    )
