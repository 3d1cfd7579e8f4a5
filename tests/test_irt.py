"""The IRT engine on simulated data with known truth (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from seedtest_pipeline import irt


def simulate(students, items, per_student, *, model="2PL", seed=1, theta_mean=0.0, item_offset=0):
    """Responses of `students` to `per_student` random items each; returns (responses, truth)."""
    rng = np.random.default_rng(seed)
    item_rng = np.random.default_rng(1000 + item_offset)  # the same items for every cohort
    a = np.full(items, 1.2) if model == "1PL" else item_rng.lognormal(0, 0.3, items)
    b = item_rng.normal(0, 1, items)
    c = item_rng.uniform(0.1, 0.3, items) if model == "3PL" else np.zeros(items)
    theta = rng.normal(theta_mean, 1, students)
    chosen = np.argsort(rng.random((students, items)), axis=1)[:, :per_student].ravel()
    student = np.repeat(np.arange(students), per_student)
    p = c[chosen] + (1 - c[chosen]) / (1 + np.exp(-a[chosen] * (theta[student] - b[chosen])))
    correct = (rng.random(p.size) < p).astype(np.uint8)
    responses = irt.Responses.from_arrays([f"s{n:06d}" for n in student], chosen, correct)
    return responses, {"a": a, "b": b, "c": c, "theta": theta}


def aligned(calibration, truth):
    items = calibration.items.item_ids.astype(int)
    students = np.array([int(s[1:]) for s in calibration.abilities.student_ids])
    return items, students


def rmse(x, y):
    return float(np.sqrt(np.mean((x - y) ** 2)))


@pytest.fixture(scope="module")
def two_pl():
    responses, truth = simulate(8000, 60, 30)
    return responses, truth, irt.fit(responses)


def test_2pl_recovers_known_parameters_within_sampling_error(two_pl):
    responses, truth, calibration = two_pl
    items, students = aligned(calibration, truth)
    # ~4,000 answers per item: the standard errors are about 0.04 for a and 0.04 for b, so an
    # RMSE of 2-3 standard errors is the most a correct estimator gives (a wrong one misses by more).
    assert rmse(calibration.items.a, truth["a"][items]) < 0.08
    assert rmse(calibration.items.b, truth["b"][items]) < 0.08
    assert np.corrcoef(calibration.abilities.theta, truth["theta"][students])[0, 1] > 0.90
    assert calibration.report.converged and calibration.report.n_responses == 8000 * 30


def test_the_marginal_likelihood_gradient_is_zero_at_the_estimates(two_pl):
    _, _, calibration = two_pl
    # Scores are sums over ~4,000 answers each; a non-optimum shows gradients of order 10-1000.
    assert calibration.report.max_gradient < 0.5
    stopped_early = irt.fit(two_pl[0], max_iterations=2)
    assert not stopped_early.report.converged
    assert stopped_early.report.max_gradient > 20 * calibration.report.max_gradient


def test_default_priors_move_dense_estimates_by_less_than_a_hundredth():
    responses, _ = simulate(6000, 20, 20, seed=3)
    with_prior = irt.fit(responses, prior="default").items
    without = irt.fit(responses, prior="none").items
    assert np.abs(with_prior.a - without.a).max() < 0.01
    assert np.abs(with_prior.b - without.b).max() < 0.01


def test_priors_keep_a_sparse_item_sane():
    responses, _ = simulate(30, 5, 5, seed=4)
    without = irt.fit(responses, prior="none", min_item_responses=5).items
    with_prior = irt.fit(responses, prior="default", min_item_responses=5).items
    assert np.all(with_prior.a < 4) and np.abs(np.log(with_prior.a)).max() <= np.abs(np.log(without.a)).max()


def test_1pl_and_3pl_recover_their_truth():
    responses, truth = simulate(6000, 30, 20, model="1PL", seed=5)
    calibration = irt.fit(responses, model="1PL")
    items, _ = aligned(calibration, truth)
    assert np.ptp(calibration.items.a) == 0 and abs(calibration.items.a[0] - 1.2) < 0.06
    assert rmse(calibration.items.b, truth["b"][items]) < 0.08
    responses, truth = simulate(15000, 30, 30, model="3PL", seed=6)
    calibration = irt.fit(responses, model="3PL")
    items, _ = aligned(calibration, truth)
    assert calibration.report.converged
    assert rmse(calibration.items.b, truth["b"][items]) < 0.25  # c and b trade off: 3PL is weakly identified
    assert abs(calibration.items.c.mean() - truth["c"].mean()) < 0.06


def test_eap_alone_with_given_parameters_skips_unknown_items(two_pl):
    responses, truth, calibration = two_pl
    alone = irt.eap(responses, calibration.items)
    assert np.allclose(alone.theta, calibration.abilities.theta, atol=1e-6)
    assert np.all(alone.se > 0)
    extra = irt.Responses.from_arrays(["new", "new", "nobody"], ["unknown", "i3", "unknown"], [1, 1, 0])
    known = irt.ItemParams(np.array(["i3"]), np.array([1.0]), np.array([0.0]), np.array([0.0]), "2PL")
    result = irt.eap(extra, known)
    assert list(result.student_ids) == ["new"]  # 'nobody' answered only an unknown item: no row
    assert result.theta[0] > 0 and 0 < result.se[0] < 1


def test_items_with_too_few_responses_or_one_outcome_are_listed_not_guessed():
    responses, _ = simulate(2000, 10, 10, seed=7)
    students = list(responses.student_ids[responses.student]) + ["x1", "x2", "x3", "x4"]
    items = list(responses.item_ids[responses.item]) + [98, 98, 99, 99]
    correct = list(responses.correct) + [1, 1, 1, 0]
    calibration = irt.fit(irt.Responses.from_arrays(students, items, correct), min_item_responses=20)
    assert dict(calibration.report.excluded_items) == {98: 2, 99: 2}
    assert 98 not in calibration.items.item_ids and calibration.items.item_ids.size == 10
    assert "x1" not in calibration.abilities.student_ids  # answered only excluded items


def test_fitting_is_deterministic_and_duplicates_are_counted():
    responses, _ = simulate(1500, 12, 8, seed=8)
    first, second = irt.fit(responses), irt.fit(responses)
    assert np.array_equal(first.items.a, second.items.a) and np.array_equal(first.abilities.theta, second.abilities.theta)
    doubled = irt.Responses.from_arrays(["s", "s", "t"], [1, 1, 1], [1, 0, 0])
    assert doubled.duplicates == 1 and doubled.n_responses == 2 and doubled.correct[0] == 1


def test_linking_recovers_a_cohort_shift():
    first, _ = simulate(10000, 40, 25, seed=9)
    second, _ = simulate(10000, 40, 25, seed=10, theta_mean=0.3)
    old, new = irt.fit(first), irt.fit(second)
    linking = irt.link_mean_sigma(old.items, new.items)
    assert linking is not None and linking.common_items == 40
    linked = irt.apply_linking(new, linking)
    shift = linked.abilities.theta.mean() - old.abilities.theta.mean()
    assert abs(shift - 0.3) < 0.05
    assert irt.link_mean_sigma(old.items, irt.ItemParams(np.array([0]), np.ones(1), np.zeros(1), np.zeros(1), "2PL")) is None


def test_information_peaks_at_the_item_difficulty():
    items = irt.ItemParams(np.array(["i"]), np.array([1.5]), np.array([0.7]), np.array([0.0]), "2PL")
    grid = np.linspace(-3, 3, 601)
    info = irt.information(items, grid)[0]
    assert grid[info.argmax()] == pytest.approx(0.7, abs=0.01) and info.max() == pytest.approx(1.5**2 / 4)


def test_bad_arguments_are_refused_with_the_allowed_values():
    responses, _ = simulate(100, 5, 5, seed=11)
    with pytest.raises(ValueError, match="1PL"):
        irt.fit(responses, model="4PL")
    with pytest.raises(ValueError, match="nothing to calibrate"):
        irt.fit(responses, min_item_responses=10**6)


def test_cli_fits_a_gzipped_csv_and_counts_rejected_rows(tmp_path):
    import gzip
    import json

    from seedtest_pipeline.cli import main

    responses, _ = simulate(1500, 12, 8, seed=12)
    lines = ["student,item,correct"] + [
        f"{s},{i},{c}" for s, i, c in zip(responses.student_ids[responses.student], responses.item_ids[responses.item], responses.correct)
    ]
    lines += ["s1,3,maybe", ",4,1"]
    path = tmp_path / "responses.csv.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert main(["irt", "fit", str(path), str(tmp_path / "out")]) == 0
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["converged"] and fit["rows_rejected"] == 2 and fit["rejected_sample_lines"] == [len(lines) - 1, len(lines)]
    assert fit["rows_read"] == len(lines) - 1 and fit["n_responses"] == responses.n_responses
    items = (tmp_path / "out" / "items.csv").read_text().splitlines()
    assert items[0] == "item,a,b,c" and len(items) == 13
    assert (tmp_path / "out" / "theta.csv").read_text().splitlines()[0] == "student,theta,se"


def test_cli_names_a_wrong_header_and_refuses_empty_input(tmp_path, capsys):
    from seedtest_pipeline.cli import main

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user,item,correct\nu,1,1\n")
    assert main(["irt", "fit", str(wrong), str(tmp_path / "out")]) == 2
    assert "missing column(s) student" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["irt", "fit", str(empty), str(tmp_path / "out")]) == 2
    assert "empty file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
