"""A calibration run: read a lookback window of attempts, fit, judge the result against the quality
gate, link it to its reference calibration and write mirt_fit_meta, mirt_item_params and
mirt_ability (history kept) in one transaction.

"First attempts" means each student's first answer to an item inside the window (by completed_at,
then session and question order): it keeps the read a set-based range scan of the window instead
of numbering the whole history, and repeats after feedback (practice effects) stay out.

The scale (docs/irt.md): a calibration is ADEQUATE when it converged and at least
GATE_MIN_ANCHOR_SHARE of its items are anchors (ANCHOR_MIN_RESPONSES answers and se(b) <=
ANCHOR_MAX_SE_B). Every calibration links to one reference, never to a chain of predecessors: the
latest adequate calibration of the same model described no later than its own window end, or a
fixed reference calibration chosen by config. Until an adequate calibration exists, calibrations
keep the N(0, 1) scale of their own window. Inadequate calibrations are stored (history) and
flagged in metrics.gate, and never become a reference.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from io import BytesIO

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline import irt

DEFAULT_LOOKBACK_DAYS = 30
# Plausible ranges a psychometrician would question an estimate outside of.
PLAUSIBLE_A = (0.2, 4.0)
PLAUSIBLE_B = (-4.0, 4.0)
PLAUSIBLE_C = (0.0, 0.5)
# The quality gate. An anchor is an item precise enough to carry the scale: answers at least
# ANCHOR_MIN_RESPONSES (2PL slopes need a few hundred answers, the 3PL's guessing far more) and
# se(b) <= ANCHOR_MAX_SE_B logits. Through the demo's single map onto its generator's truth, a
# 2PL calibration's b lay 0.19 logits (RMSE) from the truth at ~450 answers per item and 0.21 at
# ~350: 400 keeps every calibration on the scale within 0.2 (docs/irt.md).
ANCHOR_MIN_RESPONSES = {"1PL": 150, "2PL": 400, "3PL": 1000}
ANCHOR_MAX_SE_B = 0.3
GATE_MIN_ANCHOR_SHARE = 0.8
# scale_stable: the students common to a calibration and its reference keep their mean θ within
# SCALE_MEAN_TOLERANCE logits and their θ SD within SCALE_SD_TOLERANCE (relative). Real learning
# moves a population's mean by a few hundredths a week; a broken link moves it by tenths and the
# SD by half or more.
SCALE_MEAN_TOLERANCE = 0.25
SCALE_SD_TOLERANCE = 0.15
HISTORY_LIMIT = 26

# psycopg's placeholders: these run inside COPY (...) TO STDOUT on the driver's cursor.
RESPONSES_SQL = """
SELECT DISTINCT ON (user_id, item_id) user_id, item_id, correct
FROM attempt_rows
WHERE completed_at >= %(window_start)s AND completed_at < %(window_end)s AND user_id IS NOT NULL
ORDER BY user_id, item_id, completed_at, result_id, question_no
"""
ALL_RESPONSES_SQL = """
SELECT user_id, item_id, correct FROM attempt_rows
WHERE completed_at >= %(window_start)s AND completed_at < %(window_end)s AND user_id IS NOT NULL
"""
# Answers per item as the fit will count them: one per (student, item) pair.
ANSWERS_PER_ITEM_SQL = """
SELECT item_id, count(*) AS answers
FROM (SELECT DISTINCT user_id, item_id FROM attempt_rows
      WHERE completed_at >= :window_start AND completed_at < :window_end AND user_id IS NOT NULL) AS pairs
GROUP BY item_id
"""
LATEST_ADEQUATE_SQL = """
SELECT calibration_id FROM mirt_fit_meta
WHERE model = :model AND fitted_at <= :as_of AND (metrics -> 'gate' ->> 'adequate')::boolean
ORDER BY fitted_at DESC, metrics ->> 'run_at' DESC LIMIT 1
"""


@dataclass(frozen=True)
class CalibrationSpec:
    model: str = "2PL"
    prior: str = "default"
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    first_attempts_only: bool = True
    min_item_responses: int = 20
    linking_method: str = "haebara"
    # A fixed reference calibration; None links to the latest adequate one.
    reference_calibration_id: str | None = None

    def as_dict(self) -> dict:
        return {
            "model": self.model, "prior": self.prior, "lookback_days": self.lookback_days,
            "first_attempts_only": self.first_attempts_only, "min_item_responses": self.min_item_responses,
            "linking_method": self.linking_method, "reference_calibration_id": self.reference_calibration_id,
        }


@dataclass(frozen=True)
class Gate:
    """Whether a calibration may serve as the reference later calibrations link to."""

    adequate: bool
    reasons: tuple
    items: int
    anchors: int
    median_responses: float
    median_se_b: float

    def as_dict(self) -> dict:
        return {
            "adequate": self.adequate, "reasons": list(self.reasons), "items": self.items, "anchors": self.anchors,
            "median_responses": self.median_responses, "median_se_b": _json_number(self.median_se_b),
            "thresholds": {"anchor_min_responses": ANCHOR_MIN_RESPONSES, "anchor_max_se_b": ANCHOR_MAX_SE_B,
                           "min_anchor_share": GATE_MIN_ANCHOR_SHARE},
        }


@dataclass(frozen=True)
class Reference:
    """A stored calibration that others link to, with its items on its stored scale."""

    calibration_id: str
    choice: str  # "latest adequate" or "fixed reference"
    items: irt.ItemParams
    # Mean and SD of its ability distribution on its stored scale: its fit's N(0, 1) moved by
    # its own linking constants.
    population: tuple


@dataclass(frozen=True)
class ScaleStability:
    passed: bool
    students: int
    mean_shift: float
    sd_ratio: float
    note: str = ""

    def as_dict(self) -> dict:
        return {"passed": self.passed, "common_students": self.students, "mean_shift": _json_number(self.mean_shift),
                "sd_ratio": _json_number(self.sd_ratio), "note": self.note,
                "tolerance": {"mean": SCALE_MEAN_TOLERANCE, "sd_relative": SCALE_SD_TOLERANCE}}


@dataclass(frozen=True)
class CalibrationOutcome:
    """What a run did. calibration_id is None when there was nothing to calibrate (see reason)."""

    window_start: datetime
    window_end: datetime
    calibration_id: str | None
    reason: str = ""
    calibration: irt.Calibration | None = None
    gate: Gate | None = None
    reference: Reference | None = None
    linking: irt.Linking | None = None
    linking_reason: str = ""
    stability: ScaleStability | None = None
    read_responses: int = 0
    fitted_at: datetime | None = None
    implausible_items: list = field(default_factory=list)


def read_window(connection: Connection, window_start: datetime, window_end: datetime, first_only: bool) -> irt.Responses:
    """The window's responses, streamed out of PostgreSQL with COPY into columns (a window can
    hold millions of answers; no Python object per row)."""
    query = RESPONSES_SQL if first_only else ALL_RESPONSES_SQL
    buffer = BytesIO()
    cursor = connection.connection.driver_connection.cursor()
    window = {"window_start": window_start, "window_end": window_end}
    with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", window) as copy:
        for chunk in copy:
            buffer.write(chunk)
    if not buffer.tell():
        return irt.Responses.from_arrays([], [], [])
    buffer.seek(0)
    frame = pd.read_csv(buffer, header=None, names=["user_id", "item_id", "correct"],
                        dtype={"user_id": str, "item_id": str, "correct": str}, keep_default_na=False)
    return irt.Responses.from_arrays(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(),
                                     (frame["correct"] == "t").to_numpy(np.uint8))


def assess_gate(calibration: irt.Calibration) -> Gate:
    items, report = calibration.items, calibration.report
    anchor = (items.responses >= ANCHOR_MIN_RESPONSES[report.model]) & (items.se_b <= ANCHOR_MAX_SE_B)
    anchors, total = int(anchor.sum()), int(items.item_ids.size)
    reasons = []
    if not report.converged:
        reasons.append(f"did not converge ({report.reason})")
    if anchors < GATE_MIN_ANCHOR_SHARE * total:
        reasons.append(f"{anchors} of {total} items are anchors (at least {GATE_MIN_ANCHOR_SHARE:.0%} needed: "
                       f">= {ANCHOR_MIN_RESPONSES[report.model]} answers and se(b) <= {ANCHOR_MAX_SE_B})")
    if anchors < irt.MIN_LINKING_ITEMS:
        reasons.append(f"fewer than {irt.MIN_LINKING_ITEMS} anchors")
    return Gate(adequate=not reasons, reasons=tuple(reasons), items=total, anchors=anchors,
                median_responses=float(np.median(items.responses)), median_se_b=float(np.nanmedian(items.se_b)))


def window_can_pass_gate(connection: Connection, window_end: datetime, spec: CalibrationSpec = CalibrationSpec()) -> tuple[bool, str]:
    """Whether the window holds enough answers for its calibration to pass the gate: at least
    GATE_MIN_ANCHOR_SHARE of the items that would be calibrated have ANCHOR_MIN_RESPONSES answers.
    Necessary, not sufficient (the fit must also converge and reach the se(b) threshold); one
    set-based count, no fit."""
    window_start = window_end - timedelta(days=spec.lookback_days)
    window = {"window_start": window_start, "window_end": window_end}
    answers = np.array([row.answers for row in connection.execute(sa.text(ANSWERS_PER_ITEM_SQL), window)], dtype=int)
    calibrated = answers[answers >= spec.min_item_responses]
    enough = int((calibrated >= ANCHOR_MIN_RESPONSES[spec.model]).sum())
    verdict = (f"{enough} of {calibrated.size} items have >= {ANCHOR_MIN_RESPONSES[spec.model]} answers "
               f"in {window_start:%Y-%m-%d}..{window_end:%Y-%m-%d}")
    return calibrated.size > 0 and enough >= max(GATE_MIN_ANCHOR_SHARE * calibrated.size, irt.MIN_LINKING_ITEMS), verdict


def reference_calibration(connection: Connection, spec: CalibrationSpec, as_of: datetime) -> Reference | None:
    """The calibration a new one links to: spec.reference_calibration_id when given (it must exist
    and be of the same model), else the latest adequate calibration of the model described no later
    than `as_of` (a backfill of past calibrations links each to the adequate one before it)."""
    if spec.reference_calibration_id:
        row = connection.execute(
            sa.text("SELECT calibration_id, model FROM mirt_fit_meta WHERE calibration_id = CAST(:id AS uuid)"),
            {"id": spec.reference_calibration_id},
        ).first()
        if row is None:
            raise ValueError(f"reference calibration {spec.reference_calibration_id} not found in mirt_fit_meta")
        if row.model != spec.model:
            raise ValueError(f"reference calibration {spec.reference_calibration_id} is {row.model}, not {spec.model}")
        calibration_id, choice = str(row.calibration_id), "fixed reference"
    else:
        found = connection.execute(sa.text(LATEST_ADEQUATE_SQL), {"model": spec.model, "as_of": as_of}).scalar()
        if found is None:
            return None
        calibration_id, choice = str(found), "latest adequate"
    linking = connection.execute(sa.text("SELECT linking FROM mirt_fit_meta WHERE calibration_id = CAST(:id AS uuid)"),
                                 {"id": calibration_id}).scalar()
    population = (linking["B"], linking["A"]) if linking.get("A") else (0.0, 1.0)
    return Reference(calibration_id, choice, stored_items(connection, calibration_id, spec.model), population)


@dataclass(frozen=True)
class StoredCalibration:
    """A stored calibration with its items: what scores students against it."""

    calibration_id: str
    model: str
    version: str
    fitted_at: str  # ISO text, as it left PostgreSQL
    adequate: bool | None  # the quality gate's verdict; None for rows from before the gate
    gate_reasons: tuple
    items: irt.ItemParams


def latest_calibration(connection: Connection, model: str) -> StoredCalibration | None:
    """The current parameters of `model` (SPEC §3): the latest calibration's, whatever the quality
    gate said of it (the verdict comes along); None before the first calibration."""
    row = connection.execute(
        sa.text(
            "SELECT calibration_id, to_char(fitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS fitted_at, "
            "(metrics -> 'gate' ->> 'adequate')::boolean AS adequate, metrics -> 'gate' -> 'reasons' AS reasons, "
            "(SELECT version FROM mirt_item_params i WHERE i.calibration_id = m.calibration_id LIMIT 1) AS version "
            "FROM mirt_fit_meta m WHERE model = :model ORDER BY m.fitted_at DESC, metrics ->> 'run_at' DESC LIMIT 1"
        ),
        {"model": model},
    ).first()
    if row is None:
        return None
    calibration_id = str(row.calibration_id)
    return StoredCalibration(calibration_id, model, row.version or "", row.fitted_at, row.adequate,
                             tuple(row.reasons or ()), stored_items(connection, calibration_id, model))


def stored_items(connection: Connection, calibration_id: str, model: str) -> irt.ItemParams:
    rows = connection.execute(
        sa.text("SELECT item_id, params FROM mirt_item_params WHERE calibration_id = CAST(:id AS uuid) ORDER BY item_id"),
        {"id": calibration_id},
    ).all()
    params = [row.params for row in rows]

    def column(key):  # rows written before standard errors were stored lack them
        values = [p.get(key) for p in params]
        return None if any(v is None for v in values) else np.array(values, dtype=float)

    return irt.ItemParams(
        np.array([row.item_id for row in rows], dtype=object),
        np.array([p["a"] for p in params]), np.array([p["b"] for p in params]),
        np.array([p["c"] for p in params]), model,
        se_a=column("se_a"), se_b=column("se_b"), responses=column("n"),
    )


def scale_stability(connection: Connection, reference_id: str, abilities: irt.Abilities) -> ScaleStability:
    """How the θ of the students common to this calibration and its reference moved."""
    rows = connection.execute(
        sa.text("SELECT user_id, theta FROM mirt_ability WHERE calibration_id = CAST(:id AS uuid) AND source = 'calibration'"),
        {"id": reference_id},
    ).all()
    before = pd.Series({row.user_id: row.theta for row in rows}, dtype=float)
    now = pd.Series(abilities.theta, index=abilities.student_ids.astype(str))
    common = before.index.intersection(now.index)
    if common.size < 2:
        return ScaleStability(True, int(common.size), float("nan"), float("nan"),
                              "fewer than two students in common with the reference: nothing to compare")
    shift = float(now[common].mean() - before[common].mean())
    ratio = float(now[common].std() / before[common].std())
    passed = abs(shift) <= SCALE_MEAN_TOLERANCE and abs(ratio - 1) <= SCALE_SD_TOLERANCE
    return ScaleStability(passed, int(common.size), shift, ratio)


def implausible(items: irt.ItemParams) -> list[str]:
    outside = (
        (items.a < PLAUSIBLE_A[0]) | (items.a > PLAUSIBLE_A[1])
        | (items.b < PLAUSIBLE_B[0]) | (items.b > PLAUSIBLE_B[1])
        | (items.c < PLAUSIBLE_C[0]) | (items.c > PLAUSIBLE_C[1])
    )
    return [str(item) for item in items.item_ids[outside]]


def calibrate(connection: Connection, window_end: datetime, spec: CalibrationSpec = CalibrationSpec()) -> CalibrationOutcome:
    """Run one calibration over [window_end - lookback, window_end) in the caller's transaction."""
    window_start = window_end - timedelta(days=spec.lookback_days)
    responses = read_window(connection, window_start, window_end, spec.first_attempts_only)
    outcome = CalibrationOutcome(window_start, window_end, None, read_responses=responses.n_responses)
    if responses.n_responses == 0:
        return _nothing(outcome, f"no attempts between {window_start:%Y-%m-%d %H:%M} and {window_end:%Y-%m-%d %H:%M} UTC")
    try:
        calibration = irt.fit(responses, model=spec.model, prior=spec.prior, min_item_responses=spec.min_item_responses,
                              standard_errors=True)
    except ValueError as error:
        if "nothing to calibrate" not in str(error):
            raise
        return _nothing(outcome, f"{responses.n_responses} responses, but no item has {spec.min_item_responses} "
                                 "responses with both outcomes")
    gate = assess_gate(calibration)
    reference = reference_calibration(connection, spec, window_end)
    linking, linking_reason, stability = None, "", None
    if reference is None:
        linking_reason = "no adequate calibration yet: this one keeps its window's N(0, 1) scale"
    else:
        try:
            linking = irt.link(reference.items, calibration.items, spec.linking_method,
                               min_responses=ANCHOR_MIN_RESPONSES[spec.model], max_se_b=ANCHOR_MAX_SE_B,
                               base_population=reference.population)
            calibration = irt.apply_linking(calibration, linking)
        except irt.LinkingNotPossible as error:
            linking_reason = f"not linked: {error}"
        stability = scale_stability(connection, reference.calibration_id, calibration.abilities)
    calibration_id = str(uuid.uuid4())
    # fitted_at is the instant the estimates describe, the end of their data window (θ "as of" it);
    # the wall-clock time of the run is metrics.run_at.
    result = CalibrationOutcome(
        window_start, window_end, calibration_id, calibration=calibration, gate=gate, reference=reference,
        linking=linking, linking_reason=linking_reason, stability=stability,
        read_responses=responses.n_responses, fitted_at=window_end, implausible_items=implausible(calibration.items),
    )
    write_calibration(connection, result, spec)
    return result


def _nothing(outcome: CalibrationOutcome, reason: str) -> CalibrationOutcome:
    return CalibrationOutcome(outcome.window_start, outcome.window_end, None, reason=f"nothing to calibrate: {reason}",
                              read_responses=outcome.read_responses)


def _json_number(value) -> float | None:
    """JSON (and jsonb) have no NaN or infinity: an unknown figure is null."""
    value = float(value)
    return value if math.isfinite(value) else None


def linking_record(outcome: CalibrationOutcome) -> dict:
    """What goes into mirt_fit_meta.linking."""
    reference = outcome.reference
    record = {"base_calibration_id": reference.calibration_id if reference else None,
              "base_choice": reference.choice if reference else None}
    linking = outcome.linking
    if linking is None:
        return {**record, "method": None, "reason": outcome.linking_reason}
    return {
        **record, "method": linking.method, "A": linking.A, "B": linking.B, "common_items": linking.common_items,
        "items_used": [str(item) for item in linking.items_used],
        "items_screened_out": [{"item": str(item), "reason": reason} for item, reason in linking.screened_out],
        "items_drifted": [{"item": str(d.item), "base_a": d.base_a, "base_b": d.base_b, "new_a": d.new_a,
                           "new_b": d.new_b, "shift": d.shift, "z": _json_number(d.z)} for d in linking.drifted],
    }


def write_calibration(connection: Connection, outcome: CalibrationOutcome, spec: CalibrationSpec) -> None:
    calibration, calibration_id, fitted_at = outcome.calibration, outcome.calibration_id, outcome.fitted_at
    report, items, abilities = calibration.report, calibration.items, calibration.abilities
    version = f"{spec.model}-{fitted_at:%Y%m%dT%H%M%SZ}-{calibration_id[:8]}"
    report_values = report.as_dict()
    metrics = {
        "loglik": report.loglik, "iterations": report.iterations, "converged": report.converged,
        "reason": report.reason, "gradient_tolerance": report.gradient_tolerance,
        "max_change": _json_number(report.max_change), "max_gradient": report.max_gradient,
        "n_persons": report.n_students, "n_items": report.n_items, "n_responses": report.n_responses,
        "seconds": report.seconds, "excluded_items": report_values["excluded_items"],
        "negative_slope_items": report_values["negative_slope_items"],
        "window_start": outcome.window_start.isoformat(), "window_end": outcome.window_end.isoformat(),
        "run_at": connection.scalar(sa.text("SELECT now()")).isoformat(),
        # On the stored (linked) scale: what the history plot and the reports show.
        "theta_mean": float(abilities.theta.mean()), "theta_sd": float(abilities.theta.std()),
        "mean_a": float(items.a.mean()), "sd_b": float(items.b.std()),
        "gate": outcome.gate.as_dict(),
        "scale_stability": outcome.stability.as_dict() if outcome.stability else None,
    }
    connection.execute(
        sa.text("INSERT INTO mirt_fit_meta (calibration_id, model, spec, metrics, linking, fitted_at) "
                "VALUES (CAST(:id AS uuid), :model, CAST(:spec AS jsonb), CAST(:metrics AS jsonb), "
                "CAST(:linking AS jsonb), :fitted_at)"),
        {"id": calibration_id, "model": spec.model, "spec": json.dumps(spec.as_dict()),
         "metrics": json.dumps(metrics, allow_nan=False), "linking": json.dumps(linking_record(outcome), allow_nan=False),
         "fitted_at": fitted_at},
    )
    connection.execute(
        sa.text("INSERT INTO mirt_item_params (calibration_id, item_id, model, params, version, fitted_at) "
                "VALUES (CAST(:id AS uuid), :item, :model, CAST(:params AS jsonb), :version, :fitted_at)"),
        [
            {"id": calibration_id, "item": str(item), "model": spec.model, "version": version, "fitted_at": fitted_at,
             "params": json.dumps({"a": float(a), "b": float(b), "c": float(c), "se_a": _json_number(se_a),
                                   "se_b": _json_number(se_b), "n": int(n)}, allow_nan=False)}
            for item, a, b, c, se_a, se_b, n in zip(items.item_ids, items.a, items.b, items.c, items.se_a, items.se_b,
                                                     items.responses)
        ],
    )
    # Abilities can be hundreds of thousands of rows: COPY.
    copy_abilities(connection, calibration_id, spec.model, version, fitted_at, abilities)


def copy_abilities(connection, calibration_id, model, version, fitted_at, abilities, source="calibration") -> None:
    """Append abilities to mirt_ability in one COPY. `fitted_at` is one instant for all rows, or a
    sequence with one per student (the online update: each student's latest session). An se that
    is not positive is written as unknown (NULL), never 0."""
    per_student = isinstance(fitted_at, (list, tuple, np.ndarray))
    instants = fitted_at if per_student else [fitted_at] * abilities.student_ids.size
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(
        "COPY mirt_ability (user_id, theta, se, model, version, source, calibration_id, fitted_at) FROM STDIN"
    ) as copy:
        for user, theta, se, at in zip(abilities.student_ids, abilities.theta, abilities.se, instants):
            copy.write_row((str(user), float(theta), float(se) if se > 0 else None, model, version,
                            source, calibration_id, at))


def table_row_counts(connection: Connection) -> dict[str, int]:
    return {table: int(connection.scalar(sa.text(f"SELECT count(*) FROM {table}")))
            for table in ("mirt_fit_meta", "mirt_item_params", "mirt_ability")}


def calibration_history(connection: Connection, model: str, limit: int = HISTORY_LIMIT) -> pd.DataFrame:
    """The latest `limit` stored calibrations of `model`, oldest first: what the scale did."""
    rows = connection.execute(
        sa.text("SELECT calibration_id, fitted_at, metrics, linking FROM mirt_fit_meta WHERE model = :model "
                "ORDER BY fitted_at DESC, metrics ->> 'run_at' DESC LIMIT :limit"),
        {"model": model, "limit": limit},
    ).all()
    records = [{
        "calibration_id": str(row.calibration_id), "fitted_at": row.fitted_at,
        "adequate": bool((row.metrics.get("gate") or {}).get("adequate")),
        "responses": row.metrics.get("n_responses"), "theta_sd": row.metrics.get("theta_sd"),
        "mean_a": row.metrics.get("mean_a"), "A": row.linking.get("A"), "B": row.linking.get("B"),
        "base": (row.linking.get("base_calibration_id") or "")[:8],
        "drifted": len(row.linking.get("items_drifted") or []),
    } for row in reversed(rows)]
    return pd.DataFrame(records, columns=["calibration_id", "fitted_at", "adequate", "responses", "theta_sd", "mean_a",
                                          "A", "B", "base", "drifted"])


def history_plot_png(history: pd.DataFrame) -> bytes:
    """θ SD, mean a and the linking constants across the stored calibrations, as a PNG; hollow
    markers are calibrations below the gate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, panels = plt.subplots(1, 3, figsize=(11, 3.0), dpi=100, sharex=True)
    x = np.arange(len(history))
    adequate = history["adequate"].to_numpy(bool)
    series = [("θ SD", ["theta_sd"]), ("mean a", ["mean_a"]), ("linking A, B", ["A", "B"])]
    for panel, (title, columns) in zip(panels, series):
        for column, colour in zip(columns, ("#1f5f8b", "#c0504d")):
            values = pd.to_numeric(history[column], errors="coerce").to_numpy(float)
            panel.plot(x, values, color=colour, linewidth=1, label=column if len(columns) > 1 else None)
            panel.scatter(x[adequate], values[adequate], color=colour, s=18, zorder=3)
            panel.scatter(x[~adequate], values[~adequate], facecolors="none", edgecolors=colour, s=18, zorder=3)
        panel.set_title(title)
        if len(columns) > 1:
            panel.legend(fontsize=7)
    labels = [f"{t:%m-%d}" for t in history["fitted_at"]]
    for panel in panels:
        panel.set_xticks(x, labels, rotation=60, fontsize=7)
    figure.suptitle("stored calibrations (hollow: below the gate, never a reference)", fontsize=9)
    # Fixed margins: tight_layout would double the drawing time of this small figure.
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.22, top=0.82, wspace=0.25)
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def item_preview(items: irt.ItemParams, excluded: tuple, limit: int = 10) -> list[dict]:
    """Most extreme items first: farthest from a typical item (b far from 0, a far from 1)."""
    extremeness = np.abs(items.b) + np.abs(np.log(np.abs(items.a)))
    order = np.argsort(-extremeness, kind="stable")[:limit]
    return [
        {"item": str(items.item_ids[j]), "a": round(float(items.a[j]), 3), "b": round(float(items.b[j]), 3),
         "c": round(float(items.c[j]), 3)}
        for j in order
    ]


def information_plot_png(items: irt.ItemParams) -> bytes:
    """Test information and the most extreme items' characteristic curves, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    theta = np.linspace(-4, 4, 161)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    left.plot(theta, irt.information(items, theta).sum(axis=0), color="#1f5f8b")
    left.set(title="Test information", xlabel="θ", ylabel="information")
    for row in item_preview(items, (), limit=6):
        p = row["c"] + (1 - row["c"]) / (1 + np.exp(-row["a"] * (theta - row["b"])))
        right.plot(theta, p, label=f"{row['item']} (a={row['a']:.2f}, b={row['b']:.2f})")
    right.set(title="Most extreme items", xlabel="θ", ylabel="P(correct)", ylim=(0, 1))
    right.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
