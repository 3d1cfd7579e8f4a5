"""attempt: the schema-locked V1 view over exam_results, with checks that prove the lock."""

import dagster as dg

from resources.warehouse import WarehouseResource
from seedtest_pipeline.attempts import (
    V1_COLUMNS,
    apply_schema,
    identity_report,
    input_issues,
    null_counts,
    view_columns,
)

CHECKS = {
    "v1_schema_locked": "The 11 V1 columns, in order, with their types.",
    "student_id_deterministic": "One immutable identity function; each user_id maps to one student_id.",
    "required_columns_not_null": "No nulls in the columns that must always have a value.",
    "malformed_input": "What the row rules left out or could not read (counts by kind, sample sessions).",
}


@dg.asset(
    deps=["exam_results"],
    group_name="attempts",
    kinds={"postgres"},
    description="View `attempt` (V1): one row per answered question. Materialising it migrates the "
    "schema to head and re-applies the view.",
    check_specs=[dg.AssetCheckSpec(name, asset="attempt", description=text) for name, text in CHECKS.items()],
)
def attempt(warehouse: WarehouseResource) -> dg.MaterializeResult:
    revision = apply_schema(warehouse.engine())
    with warehouse.connect() as connection:
        columns = view_columns(connection)
        identity = identity_report(connection)
        nulls = null_counts(connection)
        issues = input_issues(connection)
    rows = nulls.pop("rows")
    columns_table = "\n".join(
        ["| # | column | type |", "|---:|---|---|"] + [f"| {i} | {n} | {t} |" for i, (n, t) in enumerate(columns, 1)]
    )
    return dg.MaterializeResult(
        metadata={
            "schema_revision": revision,
            "rows": dg.MetadataValue.int(rows),
            "columns": dg.MetadataValue.md(columns_table),
            "malformed_findings": dg.MetadataValue.int(issues.total),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="v1_schema_locked",
                passed=columns == list(V1_COLUMNS),
                metadata={"found": str(columns)} if columns != list(V1_COLUMNS) else {},
            ),
            dg.AssetCheckResult(
                check_name="student_id_deterministic",
                passed=identity.passed,
                metadata={
                    "function_immutable": identity.function_immutable,
                    "users_checked": identity.users_checked,
                    "users_with_several_student_ids": identity.users_with_several_ids,
                    "student_ids_differing_from_rule": identity.ids_differing_from_rule,
                },
            ),
            dg.AssetCheckResult(
                check_name="required_columns_not_null",
                passed=not any(nulls.values()),
                metadata={column: dg.MetadataValue.int(n) for column, n in nulls.items()},
            ),
            dg.AssetCheckResult(
                check_name="malformed_input",
                passed=issues.total == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "findings": dg.MetadataValue.int(issues.total),
                    "by_kind": dg.MetadataValue.md(issues.as_table()),
                },
            ),
        ],
    )
