"""exam_results: the platform's table, observed (never written) by the pipeline."""

import dagster as dg

from resources.warehouse import WarehouseResource
from seedtest_pipeline.source import observe

exam_results = dg.AssetSpec(
    "exam_results",
    description="Finished exams, one row per session (owned by the platform; read only). "
    "Observed every few minutes by the exam_results_observer sensor.",
    group_name="source",
    kinds={"postgres"},
    owners=["team:platform"],
    tags={"stage": "source"},
)


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[exam_results.key],  # the asset page lists this sensor as its automation
    description="Records an observation of exam_results (size, freshness) when the table was written to.",
)
def exam_results_observer(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    with warehouse.connect() as connection:
        seen = observe(connection)
    if seen.version == context.cursor:
        return dg.SkipReason(f"exam_results unchanged since the last observation ({seen.version})")
    observation = dg.AssetObservation(
        asset_key=exam_results.key,
        metadata={
            "sessions_estimate": dg.MetadataValue.int(seen.sessions_estimate),
            "sessions_last_24h": dg.MetadataValue.int(seen.sessions_last_day),
            "latest_completed_at": seen.latest_completed_at or "none",
            "lag_hours": dg.MetadataValue.float(seen.lag_hours) if seen.lag_hours is not None else "none",
            "sessions_dated_in_the_future": dg.MetadataValue.int(seen.sessions_in_future),
        },
        tags={"dagster/data_version": seen.version},
    )
    return dg.SensorResult(asset_events=[observation], cursor=seen.version)
