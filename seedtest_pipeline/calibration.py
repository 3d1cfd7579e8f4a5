"""A calibration run: read a lookback window of attempts, fit, link to the previous calibration and
write mirt_fit_meta, mirt_item_params and mirt_ability (history kept) in one transaction.

"First attempts" means each student's first answer to an item inside the window (by completed_at,
then session and question order): it keeps the read a set-based range scan of the window instead
of numbering the whole history, and repeats after feedback (practice effects) stay out.
"""

from __future__ import annotations

import json
from io import BytesIO
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class CalibrationSpec:
    model: str = "2PL"
    prior: str = "default"
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    first_attempts_only: bool = True
    min_item_responses: int = 20

    def as_dict(self) -> dict:
        return {
            "model": self.model, "prior": self.prior, "lookback_days": self.lookback_days,
            "first_attempts_only": self.first_attempts_only, "min_item_responses": self.min_item_responses,
        }


@dataclass(frozen=True)
class CalibrationOutcome:
    """What a run did. calibration_id is None when there was nothing to calibrate (see reason)."""

    window_start: datetime
    window_end: datetime
    calibration_id: str | None
    reason: str = ""
    calibration: irt.Calibration | None = None
    linking: irt.Linking | None = None
    previous_id: str | None = None
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


def latest_items(connection: Connection, model: str, as_of: datetime) -> tuple[str, irt.ItemParams] | None:
    """The latest calibration of `model` describing a time no later than `as_of`, and its (linked)
    item parameters: a backfill of past calibrations links each to the one before it."""
    latest = connection.execute(
        sa.text("SELECT calibration_id FROM mirt_fit_meta WHERE model = :model AND fitted_at <= :as_of "
                "ORDER BY fitted_at DESC, metrics ->> 'run_at' DESC LIMIT 1"),
        {"model": model, "as_of": as_of},
    ).scalar()
    if latest is None:
        return None
    rows = connection.execute(
        sa.text("SELECT item_id, params FROM mirt_item_params WHERE calibration_id = :id ORDER BY item_id"),
        {"id": latest},
    ).all()
    params = [row.params for row in rows]
    return str(latest), irt.ItemParams(
        np.array([row.item_id for row in rows], dtype=object),
        np.array([p["a"] for p in params]), np.array([p["b"] for p in params]),
        np.array([p["c"] for p in params]), model,
    )


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
        calibration = irt.fit(responses, model=spec.model, prior=spec.prior, min_item_responses=spec.min_item_responses)
    except ValueError as error:
        if "nothing to calibrate" not in str(error):
            raise
        return _nothing(outcome, f"{responses.n_responses} responses, but no item has {spec.min_item_responses} "
                                 "responses with both outcomes")
    previous = latest_items(connection, spec.model, window_end)
    linking = irt.link_mean_sigma(previous[1], calibration.items) if previous else None
    if linking is not None:
        calibration = irt.apply_linking(calibration, linking)
    calibration_id = str(uuid.uuid4())
    # fitted_at is the instant the estimates describe, the end of their data window (θ "as of" it);
    # the wall-clock time of the run is metrics.run_at.
    fitted_at = window_end
    write_calibration(connection, calibration_id, fitted_at, calibration, spec, outcome, linking,
                      previous[0] if previous else None)
    return CalibrationOutcome(
        window_start, window_end, calibration_id, calibration=calibration, linking=linking,
        previous_id=previous[0] if previous else None, read_responses=responses.n_responses,
        fitted_at=fitted_at, implausible_items=implausible(calibration.items),
    )


def _nothing(outcome: CalibrationOutcome, reason: str) -> CalibrationOutcome:
    return CalibrationOutcome(outcome.window_start, outcome.window_end, None, reason=f"nothing to calibrate: {reason}",
                              read_responses=outcome.read_responses)


def write_calibration(connection, calibration_id, fitted_at, calibration, spec, outcome, linking, previous_id) -> None:
    report = calibration.report
    version = f"{spec.model}-{fitted_at:%Y%m%dT%H%M%SZ}-{calibration_id[:8]}"
    metrics = {
        "loglik": report.loglik, "iterations": report.iterations, "converged": report.converged,
        "max_change": report.max_change, "max_gradient": report.max_gradient,
        "n_persons": report.n_students, "n_items": report.n_items, "n_responses": report.n_responses,
        "seconds": report.seconds, "excluded_items": report.as_dict()["excluded_items"],
        "window_start": outcome.window_start.isoformat(), "window_end": outcome.window_end.isoformat(),
        "run_at": connection.scalar(sa.text("SELECT now()")).isoformat(),
    }
    linking_json = (
        {"method": linking.method, "A": linking.A, "B": linking.B, "common_items": linking.common_items,
         "previous_calibration_id": previous_id}
        if linking else {"method": None, "reason": "first calibration" if previous_id is None else "too few common items",
                         "previous_calibration_id": previous_id}
    )
    connection.execute(
        sa.text("INSERT INTO mirt_fit_meta (calibration_id, model, spec, metrics, linking, fitted_at) "
                "VALUES (CAST(:id AS uuid), :model, CAST(:spec AS jsonb), CAST(:metrics AS jsonb), "
                "CAST(:linking AS jsonb), :fitted_at)"),
        {"id": calibration_id, "model": spec.model, "spec": json.dumps(spec.as_dict()),
         "metrics": json.dumps(metrics), "linking": json.dumps(linking_json), "fitted_at": fitted_at},
    )
    items = calibration.items
    connection.execute(
        sa.text("INSERT INTO mirt_item_params (calibration_id, item_id, model, params, version, fitted_at) "
                "VALUES (CAST(:id AS uuid), :item, :model, CAST(:params AS jsonb), :version, :fitted_at)"),
        [
            {"id": calibration_id, "item": str(item), "model": spec.model, "version": version, "fitted_at": fitted_at,
             "params": json.dumps({"a": float(a), "b": float(b), "c": float(c)})}
            for item, a, b, c in zip(items.item_ids, items.a, items.b, items.c)
        ],
    )
    # Abilities can be hundreds of thousands of rows: COPY.
    _copy_abilities(connection, calibration_id, spec.model, version, fitted_at, calibration.abilities)


def _copy_abilities(connection, calibration_id, model, version, fitted_at, abilities) -> None:
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(
        "COPY mirt_ability (user_id, theta, se, model, version, source, calibration_id, fitted_at) FROM STDIN"
    ) as copy:
        for user, theta, se in zip(abilities.student_ids, abilities.theta, abilities.se):
            copy.write_row((str(user), float(theta), float(se) if se > 0 else None, model, version,
                            "calibration", calibration_id, fitted_at))


def item_preview(items: irt.ItemParams, excluded: tuple, limit: int = 10) -> list[dict]:
    """Most extreme items first: farthest from a typical item (b far from 0, a far from 1)."""
    extremeness = np.abs(items.b) + np.abs(np.log(items.a))
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
