"""KPI formula functions (SPEC §4)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

from seedtest_pipeline.queries import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(op.get_bind(), "kpi_functions")


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION kpi_churn_risk(integer, bigint, float8, bigint);
        DROP FUNCTION kpi_goal_probability(float8, float8, float8);
        DROP FUNCTION kpi_engagement(bigint, bigint, float8, float8, float8);
        DROP FUNCTION kpi_recovery(bigint, bigint);
        DROP FUNCTION kpi_efficiency(float8, float8);
        DROP FUNCTION kpi_improvement(bigint, bigint, bigint, bigint);
        DROP FUNCTION kpi_clamp(float8, float8, float8);
        DROP FUNCTION seedtest_sorted_median(integer[]);
        DROP FUNCTION IF EXISTS seedtest_sorted(integer[]);
        DROP AGGREGATE IF EXISTS seedtest_concat(anycompatiblearray);
        """
    )
