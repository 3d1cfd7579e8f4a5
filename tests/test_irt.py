"""The IRT engine on simulated data with known truth (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from seedtest_pipeline import irt


def simulate(students, items, per_student, *, model="2PL", seed=1, theta_mean=0.0, item_offset=0, b_shift=None):
    """Responses of `students` to `per_student` random items each; returns (responses, truth).
    b_shift {item: logits} moves those items' b for this cohort only (item parameter drift)."""
    rng = np.random.default_rng(seed)
    item_rng = np.random.default_rng(1000 + item_offset)  # the same items for every cohort
    a = np.full(items, 1.2) if model == "1PL" else item_rng.lognormal(0, 0.3, items)
    b = item_rng.normal(0, 1, items)
    for item, shift in (b_shift or {}).items():
        b[item] += shift
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
    return responses, truth, irt.fit(responses, standard_errors=True)


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
    assert calibration.report.max_gradient < calibration.report.gradient_tolerance == irt.GRADIENT_TOLERANCE
    stopped_early = irt.fit(two_pl[0], max_iterations=2)
    report = stopped_early.report
    assert not report.converged and report.max_gradient >= report.gradient_tolerance
    assert report.reason.startswith("iteration limit") and f"{report.max_gradient:.3g}" in report.reason
    assert report.max_gradient > 20 * calibration.report.max_gradient


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


def test_the_slope_prior_uses_its_exact_curvature():
    def log_density(a):  # log a ~ N(0, LOG_A_SD²), as a density in a
        return -np.log(a) - np.log(a) ** 2 / (2 * irt.LOG_A_SD**2)

    for a in (0.05, 0.08, 0.3, 1.0, 3.0):
        gradient, curvature = irt._log_a_prior(np.array(a))
        step = 1e-4 * a
        assert gradient == pytest.approx((log_density(a + step) - log_density(a - step)) / (2 * step), rel=1e-6)
        second = (log_density(a + step) - 2 * log_density(a) + log_density(a - step)) / step**2
        assert curvature == pytest.approx(-second, rel=1e-4, abs=1e-6)


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


def dense(students, a, b, c, seed):
    """Every student answers every item (a fixed test form), θ ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, students)
    p = c + (1 - c) / (1 + np.exp(-a * (theta[:, None] - b)))
    answers = (rng.random(p.shape) < p).astype(np.uint8)
    student, item = np.nonzero(np.ones_like(answers))
    return irt.Responses.from_arrays(student, item, answers.ravel())


def objective(calibration, prior):
    """What the EM maximises: the marginal log-likelihood plus the log prior."""
    items = calibration.items
    return calibration.report.loglik + irt._log_prior(items.model, prior, items.a, items.c)


def independent_optimum(responses, model, prior):
    """The same objective maximised another way, as a reference: L-BFGS-B over all item parameters
    at once (within the engine's bounds), the marginal log-likelihood summed in float64 from a
    cold start; its gradient by Fisher's identity."""
    from scipy import optimize, sparse

    n_items = responses.item_ids.size
    answers = sparse.csr_matrix((np.ones(responses.n_responses), (responses.student, 2 * responses.item + responses.correct)),
                                shape=(responses.student_ids.size, 2 * n_items))
    k = 3 if model == "3PL" else 2
    lower, upper = irt._bounds(model, prior)

    def negative(vector):
        a, d = vector[:n_items], vector[n_items:2 * n_items]
        c = vector[2 * n_items:] if k == 3 else np.zeros(n_items)
        joint = answers @ irt._answer_table(a, d, c) + irt.LOG_WEIGHTS
        top = joint.max(axis=1, keepdims=True)
        weights = np.exp(joint - top)
        total = weights.sum(axis=1, keepdims=True)
        expected = answers.T @ (weights / total)
        _, _, gradient, _ = irt._scores(model, prior, a, d, c, expected[0::2] + expected[1::2], expected[1::2])
        value = float((np.log(total) + top).sum()) + irt._log_prior(model, prior, a, c)
        return -value, -gradient.T.ravel()

    start = np.concatenate([np.ones(n_items), np.zeros(n_items), np.full(n_items, 0.2)])[: k * n_items]
    bounds = [(lower[r], upper[r]) for r in range(k) for _ in range(n_items)]
    solution = optimize.minimize(negative, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                 options={"maxiter": 20000, "maxfun": 50000, "ftol": 1e-15, "gtol": 1e-8})
    return -solution.fun


def reversed_items_data(seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.lognormal(0, 0.3, 20), rng.normal(0, 1, 20)
    a[3], a[11] = -0.8, -1.2  # two reversed (miskeyed) items
    return dense(1500, a, b, np.zeros(20), seed + 1), a


def test_without_a_prior_reversed_items_are_recovered_and_flagged():
    responses, true_a = reversed_items_data()
    calibration = irt.fit(responses, prior="none", standard_errors=True)
    report, items = calibration.report, calibration.items
    assert report.converged and report.max_gradient < report.gradient_tolerance
    assert set(report.negative_slope_items) == {3, 11}
    # ~1,500 answers per item: se(a) about 0.08; within 3 standard errors, as sampling allows.
    z = (items.a - true_a) / items.se_a
    assert np.all(np.abs(z[[3, 11]]) < 3)
    assert objective(calibration, "none") >= independent_optimum(responses, "2PL", "none") - 0.01


def test_with_the_default_prior_slopes_stay_positive_and_the_map_is_reached():
    responses, _ = reversed_items_data()
    calibration = irt.fit(responses, prior="default")
    report = calibration.report
    # The prior's exact curvature: the reversed items settle at small positive slopes, well away
    # from any bound, and the fit meets the gradient tolerance (no oscillation).
    assert report.converged and report.iterations < 60 and not report.negative_slope_items
    assert np.all(calibration.items.a > 0) and np.all(calibration.items.a[[3, 11]] < 0.1)
    assert objective(calibration, "default") >= independent_optimum(responses, "2PL", "default") - 0.01


def step_item_3pl(seed=0):
    """A 600 x 32 form under 3PL in which item 5 is answered right by everyone above θ = -0.5 and
    item 9 by nearly everyone: without a prior the likelihood keeps rising as their slope or
    guessing grows, so the fit ends on a bound."""
    rng = np.random.default_rng(100 + seed)
    a, b, c = rng.lognormal(0.2, 0.3, 32), rng.normal(0, 1, 32), rng.uniform(0.05, 0.3, 32)
    a[5], b[5], c[5] = 12.0, -0.5, 0.3
    a[9], b[9], c[9] = 2.0, -3.0, 0.0
    return dense(600, a, b, c, 200 + seed)


def test_3pl_on_a_step_like_item_ends_with_its_best_solution_and_an_honest_report():
    responses = step_item_3pl()
    calibration = irt.fit(responses, model="3PL", prior="none")  # the previous engine: "Singular matrix"
    report = calibration.report
    assert not report.converged and report.max_gradient >= report.gradient_tolerance
    assert "at a bound" in report.reason and "5 (a = 10)" in report.reason
    assert np.all(np.isfinite(calibration.items.a)) and np.all(np.isfinite(calibration.abilities.theta))
    assert objective(calibration, "none") >= independent_optimum(responses, "3PL", "none") - 0.5
    with_prior = irt.fit(responses, model="3PL", prior="default")
    assert with_prior.report.converged and with_prior.report.reason == ""


def test_every_em_step_raises_the_objective():
    responses = step_item_3pl()
    design = irt._Design(responses.student, 2 * responses.item + responses.correct, responses.student_ids.size,
                         2 * responses.item_ids.size)
    for model, prior in (("3PL", "none"), ("3PL", "default"), ("1PL", "default"), ("2PL", "none")):
        bounds = irt._bounds(model, prior)
        a, d, c = irt._starting_values(model, responses, responses.item_ids.size)
        point = irt._evaluate(design, model, prior, np.stack([a, d, c]), bounds)
        values = [point.objective]
        for _ in range(25):  # plain EM, no extrapolation
            x = irt._m_step(model, prior, point.x, point.counts, point.right, point.scores, bounds)
            point = irt._evaluate(design, model, prior, x, bounds)
            values.append(point.objective)
        # float32 sums resolve the objective to ~1e-8 of its size (here ~2e-4)
        assert np.all(np.diff(values) >= -1e-7 * abs(values[0])), (model, prior, np.diff(values).min())


def test_linking_recovers_a_cohort_shift():
    first, _ = simulate(10000, 40, 25, seed=9)
    second, _ = simulate(10000, 40, 25, seed=10, theta_mean=0.3)
    old, new = irt.fit(first, standard_errors=True), irt.fit(second, standard_errors=True)
    for method in irt.LINKING_METHODS:
        linking = irt.link(old.items, new.items, method)
        assert linking.common_items == 40 and len(linking.items_used) == 40 and not linking.drifted
        linked = irt.apply_linking(new, linking)
        shift = linked.abilities.theta.mean() - old.abilities.theta.mean()
        assert abs(shift - 0.3) < 0.05, (method, shift)
    few = old.items.take(np.arange(irt.MIN_LINKING_ITEMS - 1))
    with pytest.raises(irt.LinkingNotPossible, match="usable anchor items"):
        irt.link(few, new.items)


def test_a_drifted_item_is_flagged_and_left_out_of_the_linking():
    first, truth = simulate(6000, 40, 20, seed=21)
    second, _ = simulate(6000, 40, 20, seed=22, theta_mean=0.3, b_shift={7: 1.0})
    old, new = irt.fit(first, standard_errors=True), irt.fit(second, standard_errors=True)
    linking = irt.link(old.items, new.items)
    assert [d.item for d in linking.drifted] == [7] and 7 not in linking.items_used
    (drift,) = linking.drifted
    assert abs(drift.shift - 1.0) < 4 * np.hypot(old.items.se_b[7], new.items.se_b[7]) and drift.z > irt.DRIFT_Z
    # The other items, linked, agree with the truth (one linear map from the first calibration's scale).
    true_b = truth["b"][old.items.item_ids.astype(int)]
    scale, shift = np.polyfit(old.items.b, true_b, 1)
    linked = irt.apply_linking(new, linking).items
    others = linked.item_ids != 7
    assert rmse(scale * linked.b[others] + shift, true_b[others]) <= 0.2
    assert abs(linking.B - 0.3) < 0.05  # the cohort's shift, undisturbed by the drifted item


def test_standard_errors_match_the_sampling_error(two_pl):
    _, truth, calibration = two_pl
    items = calibration.items
    true_a, true_b = truth["a"][items.item_ids.astype(int)], truth["b"][items.item_ids.astype(int)]
    # The estimates' own scale is the sample's N(0, 1): one linear map onto the truth first.
    scale, shift = np.polyfit(items.b, true_b, 1)
    z_b = (scale * items.b + shift - true_b) / (scale * items.se_b)
    z_a = (items.a / scale - true_a) / (items.se_a / scale)
    # 60 items: the SD of 60 standard normal draws lies within 0.75..1.25 with ~99.5% probability.
    assert 0.75 < z_b.std() < 1.25 and 0.75 < z_a.std() < 1.25, (z_a.std(), z_b.std())
    assert np.all(items.responses == np.bincount(two_pl[0].item))
