"""weekly_kpi.kpis under the keys the platform reads: I_t, E_t, R_t, A_t, P, S

Earlier versions of the KPI writer stored the six KPIs under long names (improvement, efficiency,
recovery, engagement, goal_probability, churn_risk), which the platform's API, dashboards and
operator queries (SPEC §9) do not read. This moves them, in place, in the rows this writer wrote
(those holding its `as_of` key). A short key another writer already set is left as it is, and so
is the long one beside it: nothing is overwritten. The downgrade moves them back the same way.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LONG_TO_SHORT = {
    "improvement": "I_t",
    "efficiency": "E_t",
    "recovery": "R_t",
    "engagement": "A_t",
    "goal_probability": "P",
    "churn_risk": "S",
}


def move_keys(renames: dict[str, str]) -> None:
    """Rename kpis keys old -> new in the KPI writer's rows, one key at a time, where the new key
    is free. Set-based: one UPDATE per key."""
    for old, new in renames.items():
        op.execute(
            f"UPDATE weekly_kpi SET kpis = (kpis - '{old}') || jsonb_build_object('{new}', kpis -> '{old}') "
            f"WHERE kpis ? 'as_of' AND kpis ? '{old}' AND NOT kpis ? '{new}'"
        )


def upgrade() -> None:
    move_keys(LONG_TO_SHORT)


def downgrade() -> None:
    move_keys({short: long for long, short in LONG_TO_SHORT.items()})
