"""IRT calibration: one run writes mirt_fit_meta, mirt_item_params and mirt_ability together."""

import base64
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np

from assets.features import markdown_table
from resources.warehouse import WarehouseResource
from seedtest_pipeline.calibration import (
    DEFAULT_LOOKBACK_DAYS, PLAUSIBLE_A, PLAUSIBLE_B, PLAUSIBLE_C, CalibrationSpec, calibrate,
    information_plot_png, item_preview,
)

MAX_EXCLUDED_SHARE = 0.2


class CalibrationConfig(dg.Config):
    model: str = "2PL"  # 1PL | 2PL | 3PL
    prior: str = "default"  # default | none
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    first_attempts_only: bool = True
    min_item_responses: int = 20
    as_of: str = ""  # ISO date: the window ends at the end of that UTC day; empty = now


CALIBRATION_ASSETS = ("mirt_item_params", "mirt_ability", "mirt_fit_meta")


@dg.multi_asset(
    specs=[
        dg.AssetSpec("mirt_fit_meta", deps=["attempt"], group_name="irt", kinds={"postgres"}, skippable=True,
                     description="One row per calibration: model spec, fit metrics, linking constants."),
        dg.AssetSpec("mirt_item_params", deps=["attempt"], group_name="irt", kinds={"postgres"}, skippable=True,
                     description="Item parameters {a, b, c} per calibration (history kept; latest is current)."),
        dg.AssetSpec("mirt_ability", deps=["attempt"], group_name="irt", kinds={"postgres"}, skippable=True,
                     description="Student θ and se per calibration (source 'calibration') and online update."),
    ],
    check_specs=[
        dg.AssetCheckSpec("converged", asset="mirt_fit_meta", description="EM reached its tolerance."),
        dg.AssetCheckSpec("plausible_parameters", asset="mirt_item_params",
                          description=f"a in {PLAUSIBLE_A}, b in {PLAUSIBLE_B}, c in {PLAUSIBLE_C}."),
        dg.AssetCheckSpec("items_left_out", asset="mirt_item_params",
                          description=f"At most {MAX_EXCLUDED_SHARE:.0%} of the window's items had too few responses."),
    ],
    name="irt_calibration",
    # One calibration always writes all three tables together. can_subset makes the outputs optional,
    # so an empty window can yield nothing; a subset selection reports only what was selected.
    can_subset=True,
)
def irt_calibration(context: dg.AssetExecutionContext, config: CalibrationConfig, warehouse: WarehouseResource):
    spec = CalibrationSpec(config.model, config.prior, config.lookback_days, config.first_attempts_only,
                           config.min_item_responses)
    window_end = (
        datetime.fromisoformat(config.as_of).replace(tzinfo=timezone.utc) + timedelta(days=1)
        if config.as_of else datetime.now(timezone.utc)
    )
    with warehouse.begin() as connection:
        outcome = calibrate(connection, window_end, spec)
    if outcome.calibration_id is None:
        # Nothing is written, so nothing is materialised: the run succeeds and says why.
        context.log.warning(outcome.reason)
        return
    calibration, report = outcome.calibration, outcome.calibration.report
    common = {
        "calibration_id": outcome.calibration_id,
        "window": f"{outcome.window_start:%Y-%m-%d %H:%M} .. {outcome.window_end:%Y-%m-%d %H:%M} UTC",
    }
    linking = (
        {"linking_A": dg.MetadataValue.float(outcome.linking.A), "linking_B": dg.MetadataValue.float(outcome.linking.B),
         "linking_common_items": dg.MetadataValue.int(outcome.linking.common_items),
         "previous_calibration_id": outcome.previous_id}
        if outcome.linking else {"linking": "none (first calibration or too few common items)"}
    )
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    plot = base64.b64encode(information_plot_png(calibration.items)).decode()
    results = [dg.MaterializeResult(asset_key="mirt_fit_meta", metadata={
        **common, **linking, "model": report.model, "prior": report.prior,
        "iterations": dg.MetadataValue.int(report.iterations),
        "loglik": dg.MetadataValue.float(report.loglik),
        "max_gradient": dg.MetadataValue.float(report.max_gradient),
        "converged": dg.MetadataValue.bool(report.converged),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "responses": dg.MetadataValue.int(report.n_responses),
    }), dg.MaterializeResult(asset_key="mirt_item_params", metadata={
        **common, "items": dg.MetadataValue.int(report.n_items),
        "items_left_out": dg.MetadataValue.int(len(report.excluded_items)),
        "most_extreme_items": dg.MetadataValue.md(markdown_table(item_preview(calibration.items, report.excluded_items))),
        "information_and_curves": dg.MetadataValue.md(f"![test information](data:image/png;base64,{plot})"),
    }), dg.MaterializeResult(asset_key="mirt_ability", metadata={
        **common, "students": dg.MetadataValue.int(report.n_students),
        "theta_mean": dg.MetadataValue.float(float(calibration.abilities.theta.mean())),
        "theta_sd": dg.MetadataValue.float(float(calibration.abilities.theta.std())),
        "se_median": dg.MetadataValue.float(float(np.median(calibration.abilities.se))),
    })]
    total_items = report.n_items + len(report.excluded_items)
    share = len(report.excluded_items) / total_items
    results += [
        dg.AssetCheckResult(
            check_name="converged", asset_key="mirt_fit_meta", passed=report.converged,
            metadata={"iterations": report.iterations, "max_change": report.max_change},
        ),
        dg.AssetCheckResult(
            check_name="plausible_parameters", asset_key="mirt_item_params",
            passed=not outcome.implausible_items, severity=dg.AssetCheckSeverity.WARN,
            metadata={"implausible_items": dg.MetadataValue.int(len(outcome.implausible_items)),
                      "sample": ", ".join(outcome.implausible_items[:10])},
        ),
        dg.AssetCheckResult(
            check_name="items_left_out", asset_key="mirt_item_params",
            passed=share <= MAX_EXCLUDED_SHARE, severity=dg.AssetCheckSeverity.WARN,
            metadata={"share": dg.MetadataValue.float(round(share, 4)),
                      "left_out": ", ".join(f"{i} ({n})" for i, n in report.excluded_items[:20])},
        ),
    ]
    for result in results:
        if result.asset_key.to_user_string() in selected:
            yield result
