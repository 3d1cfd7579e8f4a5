"""exam_results: the platform's table, observed (never written) by the pipeline."""

import dagster as dg
import sqlalchemy as sa

from resources.warehouse import WarehouseResource

exam_results = dg.AssetSpec(
    "exam_results",
    description="Finished exams, one row per session (owned by the platform; read only). "
    "Observed every few minutes by the exam_results_observer sensor.",
    group_name="source",
    kinds={"postgres"},
)


def observe_exam_results(warehouse: WarehouseResource) -> dg.AssetObservation:
    """Size and freshness; the data version changes whenever rows arrive or change."""
    with warehouse.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT count(*) AS sessions, max(coalesce(updated_at, created_at)) AS latest, "
                "extract(epoch FROM now() - max(coalesce(updated_at, created_at))) AS lag_seconds "
                "FROM exam_results"
            )
        ).one()
    latest = row.latest.isoformat() if row.latest else "none"
    return dg.AssetObservation(
        asset_key=exam_results.key,
        metadata={
            "sessions": dg.MetadataValue.int(row.sessions),
            "latest_completed_at": latest,
            "lag_hours": dg.MetadataValue.float(round(float(row.lag_seconds or 0) / 3600, 2)),
        },
        tags={"dagster/data_version": f"{row.sessions}:{latest}"},
    )


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def exam_results_observer(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Records an observation of exam_results when its size or latest row changed."""
    observation = observe_exam_results(warehouse)
    version = observation.tags["dagster/data_version"]
    if version == context.cursor:
        return dg.SkipReason(f"exam_results unchanged ({version})")
    return dg.SensorResult(asset_events=[observation], cursor=version)
