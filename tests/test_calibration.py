"""Calibration against a real PostgreSQL: the synthetic generator's known items are recovered,
history is kept, the quality gate decides which calibration carries the scale, linking is
recorded, drift is caught, and an empty window is a clear no-op."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._core.definitions.metadata import TableMetadataSet  # not exported by dagster 1.13.27

from conftest import PIPELINE_TABLES
from seedtest_pipeline import irt, synthetic
from seedtest_pipeline.calibration import (
    SCALE_MEAN_TOLERANCE, CalibrationSpec, calibrate, calibration_history, history_plot_png, scale_stability,
    window_can_pass_gate,
)

END = date(2026, 10, 31)
WINDOW_END = datetime(2026, 11, 1, tzinfo=timezone.utc)
# The demo's data: 2,000 students over 8 weeks, 300 items, learning students, every malformed kind.
# It starts on a Sunday, so the first weekly window holds one day.
CONFIG = synthetic.SyntheticConfig(students=2000, days=56, end_date=END, malformed=True)


@pytest.fixture(scope="module")
def generated():
    return synthetic.generate(CONFIG)


@pytest.fixture(scope="module")
def truth(generated):
    return generated.truth


@pytest.fixture(scope="module")
def demo_database(schema_engine):
    """The demo's data, seeded once for this module: its tests only add calibrations."""
    with schema_engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(PIPELINE_TABLES)} RESTART IDENTITY CASCADE"))
        synthetic.seed_exam_results(connection.connection.driver_connection, CONFIG)
    return schema_engine


@pytest.fixture
def engine(demo_database):
    """Overrides conftest's engine here: the calibrations emptied, the seeded data kept."""
    with demo_database.begin() as connection:
        connection.execute(sa.text("TRUNCATE mirt_ability, mirt_item_params, mirt_fit_meta RESTART IDENTITY"))
    return demo_database


@pytest.fixture
def seeded(engine, truth):
    return truth


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def rmse(x, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(x) - np.asarray(y)) ** 2)))


def test_calibrating_the_demo_data_recovers_the_generator_items(engine, seeded):
    with engine.begin() as connection:
        outcome = calibrate(connection, WINDOW_END)
    report = outcome.calibration.report
    assert report.converged and report.n_items == CONFIG.items and outcome.gate.adequate
    truth = seeded.items.set_index("item_id").loc[outcome.calibration.items.item_ids.astype(int)]
    # The scale is fixed by the window's students (not N(0, 1): some learn, some dropped out), so
    # compare on the generator's scale: link the estimates to the true b first, as any two
    # calibrations are linked.
    true_items = irt.ItemParams(outcome.calibration.items.item_ids, truth["a"].to_numpy(), truth["b"].to_numpy(),
                                np.zeros(len(truth)), "2PL")
    to_truth = irt.link(true_items, outcome.calibration.items, "mean_sigma", drift_shift=np.inf)
    linked = irt.apply_linking(outcome.calibration, to_truth).items
    # Sampling error: an item answered n times has se(b) of about 1 / (a·sqrt(n·0.2)) and se(a) of
    # about 1 / sqrt(n·0.2) (θ variance about 1); a correct estimator stays within 3 of them.
    n_per_item = report.n_responses / report.n_items
    assert rmse(linked.b, truth["b"]) < 3 / (truth["a"].mean() * np.sqrt(n_per_item * 0.2))
    assert rmse(linked.a, truth["a"]) < 3 / np.sqrt(n_per_item * 0.2)
    # The standard errors stored with the items describe that error.
    assert np.median(outcome.calibration.items.se_b) == pytest.approx(rmse(linked.b, truth["b"]), rel=0.5)


def test_a_second_calibration_keeps_the_first_and_records_its_linking(engine, seeded):
    with engine.begin() as connection:
        first = calibrate(connection, WINDOW_END)
    with engine.begin() as connection:
        second = calibrate(connection, WINDOW_END)
    assert first.calibration_id != second.calibration_id and first.linking is None
    meta = {str(r.calibration_id): r for r in rows(engine, "SELECT calibration_id, linking, metrics, spec FROM mirt_fit_meta")}
    assert set(meta) == {first.calibration_id, second.calibration_id}
    assert meta[first.calibration_id].linking == {
        "base_calibration_id": None, "base_choice": None, "method": None,
        "reason": "no adequate calibration yet: this one keeps its window's N(0, 1) scale"}
    linking = meta[second.calibration_id].linking
    # Same data twice: the scale is already the same, so A = 1 and B = 0, every item an anchor.
    assert linking["base_calibration_id"] == first.calibration_id and linking["base_choice"] == "latest adequate"
    assert linking["method"] == "haebara" and linking["common_items"] == CONFIG.items
    assert len(linking["items_used"]) + len(linking["items_screened_out"]) == CONFIG.items
    assert len(linking["items_used"]) >= 0.8 * CONFIG.items and linking["items_drifted"] == []
    assert {entry["reason"] for entry in linking["items_screened_out"]} <= {"fewer than 400 answers", "se(b) above 0.3"}
    assert linking["A"] == pytest.approx(1, abs=1e-6) and linking["B"] == pytest.approx(0, abs=1e-6)
    metrics = meta[second.calibration_id].metrics
    assert metrics["gate"]["adequate"] and metrics["scale_stability"]["passed"]
    assert metrics["scale_stability"]["mean_shift"] == pytest.approx(0, abs=1e-6)
    assert meta[second.calibration_id].spec["linking_method"] == "haebara"
    per_calibration = rows(engine, "SELECT calibration_id, count(*) AS n, bool_and(params ? 'se_b' AND params ? 'n') AS se "
                                   "FROM mirt_item_params GROUP BY 1")
    assert sorted(r.n for r in per_calibration) == [CONFIG.items, CONFIG.items] and all(r.se for r in per_calibration)
    abilities = rows(engine, "SELECT calibration_id, count(*) AS n, min(se) AS se, bool_and(source = 'calibration') AS ok "
                             "FROM mirt_ability GROUP BY 1")
    assert len(abilities) == 2 and all(r.ok and r.se > 0 and r.n == first.calibration.report.n_students for r in abilities)
    assert meta[first.calibration_id].metrics["n_responses"] == first.calibration.report.n_responses


def test_an_empty_window_is_nothing_to_calibrate(engine, seeded):
    with engine.begin() as connection:
        outcome = calibrate(connection, datetime(2025, 1, 1, tzinfo=timezone.utc), CalibrationSpec(lookback_days=7))
    assert outcome.calibration_id is None and outcome.reason.startswith("nothing to calibrate: no attempts")
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta")[0][0] == 0


def week_ends(config: synthetic.SyntheticConfig) -> list[date]:
    """One calibration per ISO week end, as the demo runs them (the last one on the last day)."""
    monday = config.start_date - timedelta(days=config.start_date.weekday())
    ends = []
    while monday <= config.end_date:
        ends.append(min(monday + timedelta(days=6), config.end_date))
        monday += timedelta(days=7)
    return ends


def window_students_true_theta(generated, window_start, window_end) -> pd.Series:
    """Each student's true θ in a window: the mean of their θ over their answers there (they learn)."""
    answers = generated.questions[generated.questions["malformed"].isna()].merge(
        generated.sessions[["session_id", "user_id", "updated_at"]], on="session_id")
    inside = answers[(answers["updated_at"] >= window_start) & (answers["updated_at"] < window_end)
                     & answers["user_id"].notna()]
    return inside.groupby("user_id")["theta"].mean()


def test_weekly_calibrations_keep_the_generator_scale_from_a_one_day_start(engine, seeded, generated):
    assert CONFIG.start_date.weekday() == 6  # a Sunday: the first weekly window holds one day
    outcomes = []
    for as_of in week_ends(CONFIG):
        window_end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=timezone.utc) + timedelta(days=1)
        with engine.begin() as connection:
            outcomes.append(calibrate(connection, window_end))
    one_day = outcomes[0]
    assert one_day.read_responses < 0.1 * outcomes[-1].read_responses
    # Windows of 1, 8 and 15 days hold ~30, ~230 and ~360 answers per item, below the gate's 400:
    # stored (history) and flagged, on their own N(0, 1) scale, never a base.
    assert [o.gate.adequate for o in outcomes] == [False] * 3 + [True] * (len(outcomes) - 3)
    assert all(o.linking is None and o.reference is None for o in outcomes[:3])
    adequate = [o for o in outcomes if o.gate.adequate]
    stored = {str(r.calibration_id): r.metrics["gate"]["adequate"]
              for r in rows(engine, "SELECT calibration_id, metrics FROM mirt_fit_meta")}
    assert stored == {o.calibration_id: o.gate.adequate for o in outcomes}
    # Chain-free: each calibration links to the latest adequate one before it, never to a flagged one.
    for previous, outcome in zip(adequate, adequate[1:]):
        assert outcome.reference.calibration_id == previous.calibration_id and outcome.linking is not None
        assert outcome.stability.passed and not outcome.linking.drifted
    assert adequate[0].reference is None  # the first adequate calibration sets the scale

    # On the generator's scale through ONE linear map (least squares over every adequate
    # calibration's b), each adequate calibration agrees with the truth.
    items = seeded.items.set_index("item_id")
    estimated_b = np.concatenate([o.calibration.items.b for o in adequate])
    true_b = np.concatenate([items.loc[o.calibration.items.item_ids.astype(int), "b"] for o in adequate])
    scale, shift = np.polyfit(estimated_b, true_b, 1)
    for outcome in adequate:
        calibration = outcome.calibration
        truth = items.loc[calibration.items.item_ids.astype(int)]
        true_theta = window_students_true_theta(generated, outcome.window_start, outcome.window_end)
        assert rmse(scale * calibration.items.b + shift, truth["b"]) <= 0.2
        assert abs((calibration.items.a / scale).mean() - truth["a"].mean()) <= 0.1
        assert abs(scale * calibration.abilities.theta.std() / true_theta.std() - 1) <= 0.15
    # The history the UI plots: every stored calibration, the flagged ones marked.
    with engine.connect() as connection:
        history = calibration_history(connection, "2PL")
    assert len(history) == len(outcomes) and history["adequate"].tolist() == [o.gate.adequate for o in outcomes]
    assert history_plot_png(history).startswith(b"\x89PNG")


def test_the_pre_check_tells_windows_that_cannot_pass_the_gate(engine, seeded):
    one_week_end = datetime(2026, 9, 14, tzinfo=timezone.utc)
    with engine.begin() as connection:
        one_day, why = window_can_pass_gate(connection, datetime(2026, 9, 7, tzinfo=timezone.utc))
        one_week, _ = window_can_pass_gate(connection, one_week_end)
        full, _ = window_can_pass_gate(connection, WINDOW_END)
    assert not one_day and not one_week and full  # the full window's calibration passes (tests above)
    assert why.startswith("0 of ") and "items have >= 400 answers in 2026-08-08..2026-09-07" in why


def test_a_fixed_reference_is_used_whatever_came_after(engine, seeded):
    with engine.begin() as connection:
        reference = calibrate(connection, WINDOW_END - timedelta(days=7))
        later = calibrate(connection, WINDOW_END - timedelta(days=3))
        fixed = calibrate(connection, WINDOW_END, CalibrationSpec(reference_calibration_id=reference.calibration_id))
    # By default the latest adequate calibration (`later`) would be the reference.
    assert later.gate.adequate and later.reference.calibration_id == reference.calibration_id
    assert fixed.reference.calibration_id == reference.calibration_id and fixed.reference.choice == "fixed reference"
    with pytest.raises(ValueError, match="not found"), engine.begin() as connection:
        calibrate(connection, WINDOW_END, CalibrationSpec(reference_calibration_id="00000000-0000-0000-0000-000000000000"))


def test_scale_stability_catches_a_stretched_scale(engine, seeded):
    with engine.begin() as connection:
        base = calibrate(connection, WINDOW_END)
    abilities = base.calibration.abilities
    with engine.connect() as connection:
        same = scale_stability(connection, base.calibration_id, abilities)
        stretched = scale_stability(connection, base.calibration_id,
                                    irt.Abilities(abilities.student_ids, 1.9 * abilities.theta, abilities.se))
        moved = scale_stability(connection, base.calibration_id, irt.Abilities(
            abilities.student_ids, abilities.theta + 2 * SCALE_MEAN_TOLERANCE, abilities.se))
    assert same.passed and same.students == abilities.theta.size and same.sd_ratio == pytest.approx(1)
    assert not stretched.passed and stretched.sd_ratio == pytest.approx(1.9)
    assert not moved.passed and moved.mean_shift == pytest.approx(2 * SCALE_MEAN_TOLERANCE)


def run_asset(database_url, config: dict):
    from assets.calibration import irt_calibration
    from resources.warehouse import WarehouseResource

    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    return dg.materialize([irt_calibration], resources=resources,
                          run_config={"ops": {"irt_calibration": {"config": config}}})


def test_the_calibration_asset_materialises_three_tables_with_checks(engine, seeded, database_url):
    result = run_asset(database_url, {"as_of": str(END)})
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"mirt_fit_meta", "mirt_item_params", "mirt_ability"}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"converged": True, "quality_gate": True, "scale_stable": True, "item_drift": True,
                      "plausible_parameters": True, "items_left_out": True}
    meta = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("irt_calibration")}
    assert "data:image/png;base64," in meta["mirt_item_params"]["information_and_curves"].value
    assert "data:image/png;base64," in meta["mirt_fit_meta"]["scale_across_calibrations"].value
    assert meta["mirt_fit_meta"]["calibration_history"].value.count("\n") == 2  # header, rule, one calibration
    counts = {table: rows(engine, f"SELECT count(*) FROM {table}")[0][0] for table in meta}
    assert {table: m["dagster/row_count"].value for table, m in meta.items()} == counts

    second = run_asset(database_url, {"as_of": str(END)})
    meta = {m.asset_key.to_user_string(): m.metadata for m in second.asset_materializations_for_node("irt_calibration")}
    assert meta["mirt_fit_meta"]["linking_A"].value == pytest.approx(1, abs=1e-6)
    assert meta["mirt_fit_meta"]["calibration_history"].value.count("\n") == 3

    empty = run_asset(database_url, {"as_of": "2025-01-01", "lookback_days": 7})
    assert empty.success and not empty.get_asset_materialization_events()


def test_item_drift_is_a_warning_listing_the_item_with_its_old_and_new_parameters(engine, seeded, database_url):
    assert run_asset(database_url, {"as_of": str(END)}).success
    # The reference says item 1001 was 1.5 logits harder than this window's data show.
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE mirt_item_params SET params = jsonb_set(params, '{b}', to_jsonb((params->>'b')::float8 + 1.5)) "
            "WHERE item_id = '1001' RETURNING params"))
    result = run_asset(database_url, {"as_of": str(END)})
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    drift = checks["item_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["drifted_items"].value == 1
    table = drift.metadata["items"].value
    assert table.splitlines()[0] == "| item | reference a | reference b | new a | new b | Δb | z |"
    assert table.splitlines()[2].startswith("| 1001 |")
    assert checks["scale_stable"].passed and checks["quality_gate"].passed
    (latest,) = rows(engine, "SELECT linking FROM mirt_fit_meta ORDER BY metrics->>'run_at' DESC LIMIT 1")
    (drifted,) = latest.linking["items_drifted"]
    assert drifted["item"] == "1001" and drifted["shift"] == pytest.approx(-1.5, abs=0.3)
    assert "1001" not in latest.linking["items_used"]


def test_the_calibration_assets_follow_the_conventions_users_expect():
    from assets.calibration import CalibrationConfig, irt_calibration

    fields = CalibrationConfig.model_json_schema()["properties"]
    assert all(field.get("description") for field in fields.values())
    assert fields["model"]["enum"] == ["1PL", "2PL", "3PL"] and fields["prior"]["enum"] == ["default", "none"]
    assert fields["linking_method"]["enum"] == list(irt.LINKING_METHODS)
    config_schema = irt_calibration.op.config_schema.as_field().config_type
    assert {"model", "prior", "as_of", "reference_calibration_id"} <= set(config_schema.fields)
    assert irt_calibration.op.pool == "irt_calibration"
    for key, spec in irt_calibration.specs_by_key.items():
        assert spec.owners == ["team:psychometrics"] and spec.tags["stage"] == "irt"
        table = TableMetadataSet.extract(spec.metadata)
        assert table.table_name == key.to_user_string()
        assert table.column_schema.columns[0].name in {"calibration_id", "id"}
        assert all(column.description for column in table.column_schema.columns)
