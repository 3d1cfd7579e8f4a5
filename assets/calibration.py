"""IRT calibration: one run writes mirt_fit_meta, mirt_item_params and mirt_ability together."""

import base64
from datetime import datetime, timedelta, timezone
from typing import Literal

import dagster as dg
import numpy as np
from pydantic import Field

from assets.metadata import row_counts, table_definition
from resources.warehouse import WarehouseResource
from seedtest_pipeline.calibration import (
    ANCHOR_MAX_SE_B, ANCHOR_MIN_RESPONSES, DEFAULT_LOOKBACK_DAYS, GATE_MIN_ANCHOR_SHARE, PLAUSIBLE_A, PLAUSIBLE_B,
    PLAUSIBLE_C, SCALE_MEAN_TOLERANCE, SCALE_SD_TOLERANCE, CalibrationSpec, calibrate, calibration_history,
    history_plot_png, information_plot_png, item_preview, table_row_counts,
)
from seedtest_pipeline.irt import DRIFT_SHIFT, DRIFT_Z, GRADIENT_TOLERANCE
from seedtest_pipeline.markdown import markdown_table

MAX_EXCLUDED_SHARE = 0.2


class CalibrationConfig(dg.Config):
    model: Literal["1PL", "2PL", "3PL"] = Field(
        "2PL", description="IRT model: 2PL (slope and difficulty per item), 1PL (one shared slope) or 3PL "
        "(adds guessing; needs far more answers per item).")
    prior: Literal["default", "none"] = Field(
        "default", description="default: log a ~ N(0, 1) (and c ~ Beta(5, 17) for 3PL) keeps sparse items sane "
        "and slopes positive; none: plain marginal maximum likelihood, negative slopes allowed and flagged.")
    lookback_days: int = Field(DEFAULT_LOOKBACK_DAYS, description="Days of attempts before the window end that "
                               "the calibration reads.")
    first_attempts_only: bool = Field(True, description="Keep each student's first answer to an item in the "
                                      "window (repeats after feedback stay out).")
    min_item_responses: int = Field(20, description="Items with fewer answers (or only one outcome) are left out "
                                    "and listed, never given guessed parameters.")
    as_of: str = Field("", description="ISO date (YYYY-MM-DD): the window ends at the end of that UTC day; "
                       "empty: now.")
    linking_method: Literal["haebara", "mean_sigma"] = Field(
        "haebara", description="How the calibration is put on the reference's scale: Haebara characteristic "
        "curves (robust; default) or mean/sigma of the anchors' b.")
    reference_calibration_id: str = Field(
        "", description="A fixed reference calibration (uuid) to link to; empty: the latest calibration that "
        "passed the quality gate.")


CALIBRATION_ASSETS = ("mirt_item_params", "mirt_ability", "mirt_fit_meta")
OWNERS = ["team:psychometrics"]
TAGS = {"stage": "irt"}
COLUMNS = {
    "mirt_fit_meta": [
        ("calibration_id", "uuid", "One calibration run."),
        ("model", "text", "1PL, 2PL or 3PL."),
        ("spec", "jsonb", "What was asked: model, prior, window, linking method, fixed reference."),
        ("metrics", "jsonb", "Fit report (loglik, iterations, converged and why not, largest gradient), the "
                             "quality gate verdict, θ mean/SD, mean a, scale stability."),
        ("linking", "jsonb", "Method, constants A and B, base calibration, anchors used, screened out, drifted."),
        ("fitted_at", "timestamptz", "The instant the estimates describe: the end of the data window."),
    ],
    "mirt_item_params": [
        ("calibration_id", "uuid", "The calibration (mirt_fit_meta)."),
        ("item_id", "text", "question_id of the platform."),
        ("model", "text", "1PL, 2PL or 3PL."),
        ("params", "jsonb", "{a, b, c} on the linked scale, their standard errors se_a, se_b and n answers."),
        ("version", "text", "model-window end-calibration prefix."),
        ("fitted_at", "timestamptz", "End of the data window."),
    ],
    "mirt_ability": [
        ("id", "bigint", "Row id."),
        ("user_id", "text", "The platform's raw user id."),
        ("theta", "double precision", "EAP ability on the linked scale."),
        ("se", "double precision", "Posterior SD of θ."),
        ("model", "text", "1PL, 2PL or 3PL."),
        ("version", "text", "As in mirt_item_params."),
        ("source", "text", "'calibration' or 'online'."),
        ("calibration_id", "uuid", "The calibration that wrote the row."),
        ("fitted_at", "timestamptz", "The instant θ describes."),
    ],
}
DESCRIPTIONS = {
    "mirt_fit_meta": "One row per calibration: model spec, fit metrics, quality gate, linking constants.",
    "mirt_item_params": "Item parameters {a, b, c} with standard errors per calibration (history kept; latest is "
                        "current).",
    "mirt_ability": "Student θ and se per calibration (source 'calibration') and online update.",
}


def _spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        name, deps=["attempt"], group_name="irt", kinds={"postgres"}, skippable=True, owners=OWNERS, tags=TAGS,
        description=DESCRIPTIONS[name], metadata=table_definition(name, COLUMNS[name]),
    )


@dg.multi_asset(
    specs=[_spec(name) for name in ("mirt_fit_meta", "mirt_item_params", "mirt_ability")],
    check_specs=[
        dg.AssetCheckSpec("converged", asset="mirt_fit_meta",
                          description=f"The largest gradient component is below {GRADIENT_TOLERANCE}."),
        dg.AssetCheckSpec("quality_gate", asset="mirt_fit_meta",
                          description=f"Converged and at least {GATE_MIN_ANCHOR_SHARE:.0%} of the items are anchors "
                                      f"(>= {ANCHOR_MIN_RESPONSES['2PL']} answers for 2PL, se(b) <= {ANCHOR_MAX_SE_B}): "
                                      "later calibrations may link to it."),
        dg.AssetCheckSpec("scale_stable", asset="mirt_ability",
                          description=f"The students common to this and the reference calibration keep their "
                                      f"linked θ mean within {SCALE_MEAN_TOLERANCE} and SD within "
                                      f"{SCALE_SD_TOLERANCE:.0%}."),
        dg.AssetCheckSpec("item_drift", asset="mirt_item_params",
                          description=f"No anchor item's b moved by more than {DRIFT_SHIFT} logits and {DRIFT_Z} "
                                      "standard errors since the reference (drifted items are left out of the linking)."),
        dg.AssetCheckSpec("plausible_parameters", asset="mirt_item_params",
                          description=f"a in {PLAUSIBLE_A}, b in {PLAUSIBLE_B}, c in {PLAUSIBLE_C}."),
        dg.AssetCheckSpec("items_left_out", asset="mirt_item_params",
                          description=f"At most {MAX_EXCLUDED_SHARE:.0%} of the window's items had too few responses."),
    ],
    name="irt_calibration",
    # One calibration at a time, whatever launched it (schedule, Launchpad, backfill): each links
    # to the latest adequate calibration, so two at once could both miss the other.
    pool="irt_calibration",
    # One calibration always writes all three tables together. can_subset makes the outputs optional,
    # so an empty window can yield nothing; a subset selection reports only what was selected.
    can_subset=True,
)
def irt_calibration(context: dg.AssetExecutionContext, config: CalibrationConfig, warehouse: WarehouseResource):
    with warehouse.retried_when_unreachable(context):
        spec = CalibrationSpec(config.model, config.prior, config.lookback_days, config.first_attempts_only,
                               config.min_item_responses, config.linking_method, config.reference_calibration_id or None)
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
        with warehouse.connect() as connection:
            rows = table_row_counts(connection)
            history = calibration_history(connection, spec.model)
        calibration, report, gate = outcome.calibration, outcome.calibration.report, outcome.gate
        common = {
            "calibration_id": outcome.calibration_id,
            "window": f"{outcome.window_start:%Y-%m-%d %H:%M} .. {outcome.window_end:%Y-%m-%d %H:%M} UTC",
        }
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        results = [
            dg.MaterializeResult(asset_key="mirt_fit_meta", metadata={
                **common, **_linking_metadata(outcome), "model": report.model, "prior": report.prior,
                "adequate_reference": dg.MetadataValue.bool(gate.adequate),
                "iterations": dg.MetadataValue.int(report.iterations),
                "loglik": dg.MetadataValue.float(report.loglik),
                "max_gradient": dg.MetadataValue.float(report.max_gradient),
                "converged": dg.MetadataValue.bool(report.converged),
                "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
                "responses": dg.MetadataValue.int(report.n_responses),
                "calibration_history": dg.MetadataValue.md(_history_table(history)),
                "scale_across_calibrations": dg.MetadataValue.md(_png(history_plot_png(history), "scale history")),
                **row_counts(rows["mirt_fit_meta"]),
            }),
            dg.MaterializeResult(asset_key="mirt_item_params", metadata={
                **common, "items": dg.MetadataValue.int(report.n_items),
                "items_left_out": dg.MetadataValue.int(len(report.excluded_items)),
                "negative_slopes": ", ".join(str(item) for item in report.negative_slope_items) or "none",
                "most_extreme_items": dg.MetadataValue.md(markdown_table(item_preview(calibration.items, report.excluded_items))),
                "information_and_curves": dg.MetadataValue.md(_png(information_plot_png(calibration.items), "test information")),
                **row_counts(rows["mirt_item_params"]),
            }),
            dg.MaterializeResult(asset_key="mirt_ability", metadata={
                **common, "students": dg.MetadataValue.int(report.n_students),
                "theta_mean": dg.MetadataValue.float(float(calibration.abilities.theta.mean())),
                "theta_sd": dg.MetadataValue.float(float(calibration.abilities.theta.std())),
                "se_median": dg.MetadataValue.float(float(np.median(calibration.abilities.se))),
                **row_counts(rows["mirt_ability"]),
            }),
        ]
        results += _checks(outcome)
        for result in results:
            if result.asset_key.to_user_string() in selected:
                yield result


def _png(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _linking_metadata(outcome) -> dict:
    reference = outcome.reference
    base = {"reference": f"{reference.calibration_id} ({reference.choice})" if reference else "none"}
    linking = outcome.linking
    if linking is None:
        return {**base, "linking": outcome.linking_reason}
    return {
        **base, "linking": linking.method,
        "linking_A": dg.MetadataValue.float(linking.A), "linking_B": dg.MetadataValue.float(linking.B),
        "linking_items_used": dg.MetadataValue.int(len(linking.items_used)),
        "linking_items_screened_out": dg.MetadataValue.int(len(linking.screened_out)),
        "linking_items_drifted": dg.MetadataValue.int(len(linking.drifted)),
    }


def _history_table(history) -> str:
    def figure(value, digits=3):
        return "" if value is None or value != value else round(float(value), digits)

    return markdown_table([
        {"fitted_at": f"{row.fitted_at:%Y-%m-%d %H:%M}", "calibration": row.calibration_id[:8],
         "adequate": "yes" if row.adequate else "no", "responses": row.responses, "θ SD": figure(row.theta_sd),
         "mean a": figure(row.mean_a), "A": figure(row.A), "B": figure(row.B), "base": row.base,
         "drifted": row.drifted}
        for row in history.iloc[::-1].itertuples()
    ])


def _checks(outcome) -> list[dg.AssetCheckResult]:
    report, gate, linking, stability = (outcome.calibration.report, outcome.gate, outcome.linking, outcome.stability)
    total_items = report.n_items + len(report.excluded_items)
    share = len(report.excluded_items) / total_items
    drifted = linking.drifted if linking else ()
    if stability is None:
        scale = {"passed": True, "metadata": {"note": outcome.linking_reason}}
    else:
        scale = {"passed": stability.passed, "metadata": {
            "common_students": dg.MetadataValue.int(stability.students),
            "mean_shift": dg.MetadataValue.float(stability.mean_shift),
            "sd_ratio": dg.MetadataValue.float(stability.sd_ratio),
            "linked": "yes" if linking else outcome.linking_reason,
            "note": stability.note,
        }}
    return [
        dg.AssetCheckResult(
            check_name="converged", asset_key="mirt_fit_meta", passed=report.converged,
            metadata={"iterations": report.iterations, "max_gradient": report.max_gradient,
                      "tolerance": report.gradient_tolerance, "reason": report.reason or "converged"},
        ),
        dg.AssetCheckResult(
            check_name="quality_gate", asset_key="mirt_fit_meta", passed=gate.adequate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"anchors": dg.MetadataValue.int(gate.anchors), "items": dg.MetadataValue.int(gate.items),
                      "median_answers_per_item": dg.MetadataValue.float(gate.median_responses),
                      "median_se_b": dg.MetadataValue.float(gate.median_se_b),
                      "reasons": "; ".join(gate.reasons) or "adequate: may serve as the reference"},
        ),
        dg.AssetCheckResult(check_name="scale_stable", asset_key="mirt_ability", **scale),
        dg.AssetCheckResult(
            check_name="item_drift", asset_key="mirt_item_params", passed=not drifted,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"drifted_items": dg.MetadataValue.int(len(drifted)),
                      "items": dg.MetadataValue.md(markdown_table(
                          [{"item": str(d.item), "reference a": round(d.base_a, 3), "reference b": round(d.base_b, 3),
                            "new a": round(d.new_a, 3), "new b": round(d.new_b, 3), "Δb": round(d.shift, 3),
                            "z": round(d.z, 1) if d.z == d.z else ""} for d in drifted],
                          empty="_no drifted item_" if linking else f"_not linked: {outcome.linking_reason}_"))},
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
