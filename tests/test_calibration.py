"""Calibration against a real PostgreSQL: the synthetic generator's known items are recovered,
history is kept, linking is recorded, and an empty window is a clear no-op."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from seedtest_pipeline import irt, synthetic
from seedtest_pipeline.calibration import CalibrationSpec, calibrate

END = date(2026, 10, 31)
WINDOW_END = datetime(2026, 11, 1, tzinfo=timezone.utc)
# The demo's data: 2,000 students over 8 weeks, 300 items, learning students, every malformed kind.
CONFIG = synthetic.SyntheticConfig(students=2000, days=56, end_date=END, malformed=True)


@pytest.fixture(scope="module")
def truth():
    return synthetic.generate(CONFIG).truth


@pytest.fixture
def seeded(engine, truth):
    with engine.begin() as connection:
        synthetic.seed_exam_results(connection.connection.driver_connection, CONFIG)
    return truth


def test_calibrating_the_demo_data_recovers_the_generator_items(engine, seeded):
    with engine.begin() as connection:
        outcome = calibrate(connection, WINDOW_END)
    report = outcome.calibration.report
    assert report.converged and report.n_items == CONFIG.items
    truth = seeded.items.set_index("item_id").loc[outcome.calibration.items.item_ids.astype(int)]
    # The scale is fixed by the window's students (not N(0, 1): some learn, some dropped out), so
    # compare on the generator's scale: link the estimates to the true b first, as any two
    # calibrations are linked.
    true_items = irt.ItemParams(outcome.calibration.items.item_ids, truth["a"].to_numpy(), truth["b"].to_numpy(),
                                np.zeros(len(truth)), "2PL")
    linked = irt.apply_linking(outcome.calibration, irt.link_mean_sigma(true_items, outcome.calibration.items)).items
    # Sampling error: an item answered n times has se(b) of about 1 / (a·sqrt(n·0.2)) and se(a) of
    # about 1 / sqrt(n·0.2) (θ variance about 1); a correct estimator stays within 3 of them.
    n_per_item = report.n_responses / report.n_items
    rmse_b = float(np.sqrt(np.mean((linked.b - truth["b"].to_numpy()) ** 2)))
    rmse_a = float(np.sqrt(np.mean((linked.a - truth["a"].to_numpy()) ** 2)))
    assert rmse_b < 3 / (truth["a"].mean() * np.sqrt(n_per_item * 0.2))
    assert rmse_a < 3 / np.sqrt(n_per_item * 0.2)


def rows(engine, sql: str) -> list:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).all()


def test_a_second_calibration_keeps_the_first_and_records_its_linking(engine, seeded):
    with engine.begin() as connection:
        first = calibrate(connection, WINDOW_END)
    with engine.begin() as connection:
        second = calibrate(connection, WINDOW_END)
    assert first.calibration_id != second.calibration_id and first.linking is None
    meta = {str(r.calibration_id): r for r in rows(engine, "SELECT calibration_id, linking, metrics FROM mirt_fit_meta")}
    assert set(meta) == {first.calibration_id, second.calibration_id}
    linking = meta[second.calibration_id].linking
    # Same data twice: the scale is already the same, so A = 1 and B = 0.
    assert linking["previous_calibration_id"] == first.calibration_id and linking["common_items"] == CONFIG.items
    assert linking["A"] == pytest.approx(1, abs=1e-6) and linking["B"] == pytest.approx(0, abs=1e-6)
    per_calibration = rows(engine, "SELECT calibration_id, count(*) AS n FROM mirt_item_params GROUP BY 1")
    assert sorted(r.n for r in per_calibration) == [CONFIG.items, CONFIG.items]
    abilities = rows(engine, "SELECT calibration_id, count(*) AS n, min(se) AS se, bool_and(source = 'calibration') AS ok "
                             "FROM mirt_ability GROUP BY 1")
    assert len(abilities) == 2 and all(r.ok and r.se > 0 and r.n == first.calibration.report.n_students for r in abilities)
    assert meta[first.calibration_id].metrics["n_responses"] == first.calibration.report.n_responses


def test_an_empty_window_is_nothing_to_calibrate(engine, seeded):
    with engine.begin() as connection:
        outcome = calibrate(connection, datetime(2025, 1, 1, tzinfo=timezone.utc), CalibrationSpec(lookback_days=7))
    assert outcome.calibration_id is None and outcome.reason.startswith("nothing to calibrate: no attempts")
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta")[0][0] == 0


def test_the_calibration_asset_materialises_three_tables_with_checks(engine, seeded, database_url):
    from assets.calibration import irt_calibration
    from resources.warehouse import WarehouseResource

    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    config = {"ops": {"irt_calibration": {"config": {"as_of": str(END)}}}}
    result = dg.materialize([irt_calibration], resources=resources, run_config=config)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"mirt_fit_meta", "mirt_item_params", "mirt_ability"}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"converged": True, "plausible_parameters": True, "items_left_out": True}
    meta = result.asset_materializations_for_node("irt_calibration")
    item_meta = next(m for m in meta if m.asset_key.to_user_string() == "mirt_item_params").metadata
    assert "data:image/png;base64," in item_meta["information_and_curves"].value

    empty = {"ops": {"irt_calibration": {"config": {"as_of": "2025-01-01", "lookback_days": 7}}}}
    nothing = dg.materialize([irt_calibration], resources=resources, run_config=empty)
    assert nothing.success and not nothing.get_asset_materialization_events()
