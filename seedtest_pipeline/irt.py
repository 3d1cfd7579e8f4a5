"""Item response theory: 1PL/2PL/3PL calibration by marginal maximum likelihood (Bock–Aitkin EM),
EAP abilities, item standard errors and characteristic-curve linking with an item-drift screen.
Plain numpy/scipy over the observed (student, item) pairs.

Model (logistic metric, no 1.7): P(correct | θ) = c + (1 - c) / (1 + exp(-(a·θ + d))), b = -d / a.
1PL shares one discrimination a between all items (θ ~ N(0, 1) fixes the scale); 2PL has c = 0.

The E-step works on a sparse students x (2·items) indicator matrix: column 2j + correct marks the
student's answer to item j. A student's log-likelihood at every quadrature node is that matrix times
the small table log P / log (1 - P) (students x nodes, never students x items), and the expected
counts the M-step needs are the transposed product with the posterior weights.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import optimize, sparse
from scipy.special import expit

MODELS = ("1PL", "2PL", "3PL")
PRIORS = ("default", "none")
LINKING_METHODS = ("haebara", "mean_sigma")
# Quadrature: 31 equally spaced nodes on [-5, 5] weighted by the standard normal density (49 nodes
# changed no estimate in the 4th decimal on the benchmark set).
NODES = np.linspace(-5.0, 5.0, 31)
LOG_WEIGHTS = -0.5 * NODES**2 - np.log(np.exp(-0.5 * NODES**2).sum())
# Default priors: log a ~ N(0, 1) keeps discriminations of sparse items sane; c ~ Beta(5, 17)
# (mean 0.23) keeps guessing away from 0 and 1. Weak: on well-populated items they move nothing.
LOG_A_SD = 1.0
C_BETA = (5.0, 17.0)
# Bounds keep the arithmetic finite; they are not a model. An estimate that ends on one is reported
# (converged = false, with the item named). Without a prior a slope may be negative (a reversed or
# miskeyed item); with the lognormal prior its pull at a = 1e-4, -(1 + log a) / a ≈ 82,000, keeps
# the MAP above the lower bound for any realistic number of answers.
A_MAX = 10.0
A_MIN_WITH_PRIOR = 1e-4
D_MAX = 60.0
C_MAX = 0.95
C_MIN_WITH_PRIOR = 1e-4
# Converged means: the largest component of the gradient of the (penalised) marginal
# log-likelihood at the returned estimates is below this. A component is a sum over an item's
# answers, so 0.1 leaves an item of n answers about 0.1 / (0.2·n) from its optimum in d: 2.5% of a
# standard error at n = 20, far less for larger n. (On the 50k x 400 benchmark the old stopping
# rule, parameter changes below 1e-4, stopped at a gradient of 0.05-0.09.)
GRADIENT_TOLERANCE = 0.1
MAX_STEP = 1.0  # per parameter and M-step: early iterations make no wild jumps
MAX_HALVINGS = 20
# The EM stops without converging when the objective rose by less than this over STALL_STEPS
# E-steps (float32 sums cannot resolve finer changes on large data).
STALL_GAIN = 1e-6
STALL_STEPS = 12
# float32 sums resolve the objective to about this fraction of its size.
OBJECTIVE_RESOLUTION = 2e-8
THREADS = 2
_POOL = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="irt")

# Linking (docs/irt.md): anchors need a slope of at least MIN_ANCHOR_A on both calibrations; an
# anchor whose linked b moved by more than DRIFT_SHIFT logits and by more than DRIFT_Z standard
# errors of that difference has drifted and is left out. At most MAX_DRIFT_SHARE of the anchors
# may drift: beyond that the items no longer define a common scale.
MIN_LINKING_ITEMS = 10
MIN_ANCHOR_A = 0.2
DRIFT_SHIFT = 0.5
DRIFT_Z = 3.0
MAX_DRIFT_SHARE = 1 / 3


@dataclass(frozen=True)
class Responses:
    """Observed (student, item, correct) triples only; labels factorised in sorted order."""

    student_ids: np.ndarray
    item_ids: np.ndarray
    student: np.ndarray
    item: np.ndarray
    correct: np.ndarray
    duplicates: int = 0

    @classmethod
    def from_arrays(cls, students, items, correct) -> "Responses":
        """A (student, item) pair answered more than once keeps its first answer (and is counted)."""
        frame = pd.DataFrame({"student": np.asarray(students), "item": np.asarray(items),
                              "correct": np.asarray(correct).astype(np.uint8)})
        first = ~frame.duplicated(["student", "item"], keep="first")
        frame = frame[first.to_numpy()]
        student_codes, student_ids = pd.factorize(frame["student"], sort=True)
        item_codes, item_ids = pd.factorize(frame["item"], sort=True)
        return cls(
            student_ids=np.asarray(student_ids),
            item_ids=np.asarray(item_ids),
            student=student_codes.astype(np.int32),
            item=item_codes.astype(np.int32),
            correct=frame["correct"].to_numpy(np.uint8),
            duplicates=int((~first).sum()),
        )

    @property
    def n_responses(self) -> int:
        return int(self.student.size)


@dataclass(frozen=True)
class ItemParams:
    """Item parameters; se_a, se_b and responses (answers per item) when the fit computed them."""

    item_ids: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    model: str
    se_a: np.ndarray | None = None
    se_b: np.ndarray | None = None
    responses: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"item": self.item_ids, "a": self.a, "b": self.b, "c": self.c})

    def intercepts(self) -> np.ndarray:
        return -self.a * self.b

    def take(self, index: np.ndarray) -> "ItemParams":
        optional = {name: None if getattr(self, name) is None else getattr(self, name)[index]
                    for name in ("se_a", "se_b", "responses")}
        return ItemParams(self.item_ids[index], self.a[index], self.b[index], self.c[index], self.model, **optional)


@dataclass(frozen=True)
class Abilities:
    student_ids: np.ndarray
    theta: np.ndarray
    se: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"student": self.student_ids, "theta": self.theta, "se": self.se})


@dataclass(frozen=True)
class FitReport:
    model: str
    prior: str
    iterations: int
    loglik: float
    max_change: float
    max_gradient: float
    converged: bool
    seconds: float
    n_students: int
    n_items: int
    n_responses: int
    excluded_items: tuple = field(default_factory=tuple)
    # Why the fit did not converge ("" when it did).
    reason: str = ""
    gradient_tolerance: float = GRADIENT_TOLERANCE
    # Items whose slope came out negative (possible only without a prior): miskeyed or reversed.
    negative_slope_items: tuple = field(default_factory=tuple)

    def as_dict(self) -> dict:
        values = asdict(self)
        values["excluded_items"] = [[str(item), int(n)] for item, n in self.excluded_items]
        values["negative_slope_items"] = [str(item) for item in self.negative_slope_items]
        return values


@dataclass(frozen=True)
class Calibration:
    items: ItemParams
    abilities: Abilities
    report: FitReport


@dataclass(frozen=True)
class ItemDrift:
    """A common item whose b moved between two calibrations (both on the base scale)."""

    item: object
    base_a: float
    base_b: float
    new_a: float
    new_b: float
    shift: float
    z: float  # shift / its standard error; nan when the standard errors are unknown


@dataclass(frozen=True)
class Linking:
    """θ_linked = A·θ + B, b_linked = A·b + B, a_linked = a / A, computed on `items_used`."""

    A: float
    B: float
    method: str
    items_used: tuple = ()
    screened_out: tuple = ()  # (item, reason) of common items not fit to anchor the scale
    drifted: tuple = ()  # ItemDrift of anchors left out because they moved

    @property
    def common_items(self) -> int:
        return len(self.items_used) + len(self.screened_out) + len(self.drifted)


class LinkingNotPossible(ValueError):
    """Two calibrations share too few usable anchor items to be put on one scale."""


class _Design:
    """The two sparse layouts of the responses, built once per fit: rows by student, rows by item."""

    def __init__(self, student: np.ndarray, column: np.ndarray, n_students: int, n_columns: int):
        # float32 halves the memory traffic of the two products, which dominate the time; sums
        # over a student's ~10-100 answers and over an item's students keep ample precision.
        ones = np.ones(student.size, dtype=np.float32)
        by_student = sparse.csr_matrix((ones, (student, column)), shape=(n_students, n_columns))
        # Students split in blocks, one per core: scipy's sparse products release the GIL.
        edges = np.linspace(0, n_students, THREADS + 1).astype(int)
        self.blocks = [(lo, hi, by_student[lo:hi]) for lo, hi in zip(edges, edges[1:]) if hi > lo]

    @classmethod
    def grouped(cls, answers_per_student: np.ndarray, column: np.ndarray, n_columns: int,
                block_students: int | None = None) -> "_Design":
        """From answers already in student order (student i has answers_per_student[i] of them):
        the row layout is those arrays as they are, so building it needs no sort and no copy of
        the answers (the general constructor's sort costs several times the EAP itself)."""
        indptr = np.zeros(answers_per_student.size + 1, dtype=np.int64)
        np.cumsum(answers_per_student, out=indptr[1:])
        index_type = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
        indptr, column = indptr.astype(index_type), column.astype(index_type, copy=False)
        ones = np.ones(column.size, dtype=np.float32)
        design = cls.__new__(cls)
        n_students = answers_per_student.size
        edges = (np.linspace(0, n_students, THREADS + 1).astype(int) if block_students is None
                 else np.append(np.arange(0, n_students, block_students), n_students))
        design.blocks = [
            (lo, hi, sparse.csr_matrix((ones[indptr[lo]:indptr[hi]], column[indptr[lo]:indptr[hi]],
                                        indptr[lo:hi + 1] - indptr[lo]), shape=(hi - lo, n_columns)))
            for lo, hi in zip(edges, edges[1:]) if hi > lo
        ]
        return design

    def log_likelihood(self, table: np.ndarray) -> np.ndarray:
        """students x nodes: the sum of the table rows of each student's answers (rows walked in
        student order, the small table stays in cache)."""
        table = table.astype(np.float32)
        parts = _POOL.map(lambda block: block[2] @ table, self.blocks)
        return np.concatenate(list(parts))

    def expected(self, posterior: np.ndarray) -> np.ndarray:
        """(2·items) x nodes: posterior mass of the students who gave each answer. The transpose
        of the student-ordered layout streams the posterior once and adds into a small table:
        ~7x faster here than walking an item-ordered copy, which jumps around the posterior."""
        parts = _POOL.map(lambda block: block[2].T @ posterior[block[0]:block[1]], self.blocks)
        return np.sum(list(parts), axis=0, dtype=np.float64)


def _probabilities(a, d, c) -> np.ndarray:
    """items x nodes."""
    return c[:, None] + (1.0 - c[:, None]) * expit(a[:, None] * NODES[None, :] + d[:, None])


def _answer_table(a, d, c) -> np.ndarray:
    """(2·items) x nodes: row 2j is log(1 - P_j), row 2j + 1 is log P_j."""
    p = np.clip(_probabilities(a, d, c), 1e-12, 1 - 1e-12)
    table = np.empty((2 * a.size, NODES.size))
    table[0::2] = np.log1p(-p)
    table[1::2] = np.log(p)
    return table


def _posterior(design: _Design, a, d, c) -> tuple[np.ndarray, float]:
    """Posterior weights over the nodes per student (float32), and the marginal log-likelihood."""
    joint = design.log_likelihood(_answer_table(a, d, c))  # float32, students x nodes
    joint += LOG_WEIGHTS.astype(np.float32)
    top = joint.max(axis=1, keepdims=True)
    joint -= top
    np.exp(joint, out=joint)
    total = joint.sum(axis=1, keepdims=True)
    loglik = float(np.log(total, dtype=np.float64).sum() + top.sum(dtype=np.float64))
    joint /= total
    return joint, loglik


def _derivatives(model, a, d, c):
    """P (items x nodes) and its derivatives in the item's own parameters: (a, d), and c for 3PL."""
    s = expit(a[:, None] * NODES + d[:, None])
    p = np.clip(c[:, None] + (1 - c[:, None]) * s, 1e-12, 1 - 1e-12)
    slope = (1 - c[:, None]) * s * (1 - s)
    derivatives = [slope * NODES, slope]
    if model == "3PL":
        derivatives.append(1 - s)
    return p, derivatives


def _gradient_and_information(model, a, d, c, counts, right):
    """Gradient of the expected complete-data log-likelihood and its expected information, per item.

    Parameters per item: (a, d), and c for 3PL. Returns (items x k, items x k x k).
    """
    p, derivatives = _derivatives(model, a, d, c)
    residual = (right - counts * p) / (p * (1 - p))
    k = len(derivatives)
    weight = counts / (p * (1 - p))
    gradient = np.stack([(residual * dp).sum(axis=1) for dp in derivatives], axis=1)
    information = np.empty((a.size, k, k))
    for i in range(k):
        for j in range(i, k):
            information[:, i, j] = information[:, j, i] = (weight * derivatives[i] * derivatives[j]).sum(axis=1)
    return gradient, information


def _log_a_prior(a):
    """The log-normal prior's log-density in a: its gradient and exact curvature (minus its second
    derivative). The curvature, (1/σ² - 1 - log a / σ²) / a², is 2.5x the 1/a² of a quadratic
    approximation near a = 0.08 and negative above a = e^(1 - σ²): the guarded solve copes."""
    log_a = np.log(a)
    variance = LOG_A_SD**2
    gradient = -1 / a - log_a / (variance * a)
    curvature = (1 / variance - 1 - log_a / variance) / a**2
    return gradient, curvature


def _log_c_prior(c):
    alpha, beta = C_BETA
    return (alpha - 1) / c - (beta - 1) / (1 - c), (alpha - 1) / c**2 + (beta - 1) / (1 - c) ** 2


def _scores(model, prior, a, d, c, counts, right):
    """The log-posterior's gradient and information in the model's own parameters.

    1PL: one shared a, so its score and information are sums over items (its prior counted once);
    returned as (score of a, information of a, gradient items x 2, information items x 2 x 2).
    """
    gradient, information = _gradient_and_information(model, a, d, c, counts, right)
    if model == "1PL":
        score_a, information_a = gradient[:, 0].sum(), information[:, 0, 0].sum()
        if prior == "default":
            g, h = _log_a_prior(a[0])
            score_a, information_a = score_a + g, information_a + h
        return score_a, information_a, gradient, information
    if prior == "default":
        g, h = _log_a_prior(a)
        gradient[:, 0] += g
        information[:, 0, 0] += h
        if model == "3PL":
            g, h = _log_c_prior(c)
            gradient[:, 2] += g
            information[:, 2, 2] += h
    return None, None, gradient, information


def _item_log_prior(model, prior, a, c) -> np.ndarray:
    """Per item; 1PL's shared a is left to the caller (counted once)."""
    value = np.zeros(a.size)
    if prior == "none":
        return value
    if model != "1PL":
        log_a = np.log(a)
        value += -log_a - log_a**2 / (2 * LOG_A_SD**2)
    if model == "3PL":
        alpha, beta = C_BETA
        value += (alpha - 1) * np.log(c) + (beta - 1) * np.log1p(-c)
    return value


def _shared_a_log_prior(prior, a: float) -> float:
    if prior == "none":
        return 0.0
    return float(-np.log(a) - np.log(a) ** 2 / (2 * LOG_A_SD**2))


def _item_objective(model, prior, a, d, c, counts, right) -> np.ndarray:
    """Each item's part of the expected complete-data log-posterior, the function the M-step
    raises: the items' parts are independent (1PL: given the shared a)."""
    p = np.clip(_probabilities(a, d, c), 1e-12, 1 - 1e-12)
    value = (right * np.log(p) + (counts - right) * np.log1p(-p)).sum(axis=1)
    return value + _item_log_prior(model, prior, a, c)


def _log_prior(model, prior, a, c) -> float:
    total = float(_item_log_prior(model, prior, a, c).sum())
    return total + (_shared_a_log_prior(prior, a[0]) if model == "1PL" else 0.0)


def _bounds(model, prior) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the rows (a, d, c) of the stacked parameters."""
    a_low = A_MIN_WITH_PRIOR if prior == "default" else -A_MAX
    c_low = C_MIN_WITH_PRIOR if prior == "default" and model == "3PL" else 0.0
    c_high = C_MAX if model == "3PL" else 0.0
    return np.array([a_low, -D_MAX, c_low]), np.array([A_MAX, D_MAX, c_high])


def _held(values: np.ndarray, gradient: np.ndarray, lower, upper) -> np.ndarray:
    """Parameters at (within 1e-8 of) a bound whose gradient pushes outward: items x k."""
    return (((values <= lower + 1e-8) & (gradient < 0))
            | ((values >= upper - 1e-8) & (gradient > 0)))


def _guarded_solve(information: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Newton steps information⁻¹·gradient per item that never fail: the small symmetric matrices
    are inverted through their eigenvalues, taken in absolute value and floored, so a singular or
    indefinite matrix (an item driven to its bounds, or the prior's negative curvature) still
    gives an ascent direction; the step-halving then decides how far to go."""
    information = np.where(np.isfinite(information), information, 0.0)
    gradient = np.where(np.isfinite(gradient), gradient, 0.0)
    values, vectors = np.linalg.eigh(information)
    largest = np.abs(values).max(axis=1, keepdims=True)
    values = np.maximum(np.abs(values), 1e-8 * np.maximum(largest, 1.0))
    return np.einsum("nij,nj,nkj,nk->ni", vectors, 1.0 / values, vectors, gradient)


def _ascend(start: np.ndarray, step: np.ndarray, before: np.ndarray, objective, lower, upper) -> np.ndarray:
    """Step-halving per item: the longest of step, step/2, step/4, ... (kept within the bounds)
    that does not lower that item's objective; an item for which none does keeps its values.
    start and step are items x k; objective(candidate, rows) evaluates the given items."""
    result = start.copy()
    pending = np.arange(start.shape[0])
    length = 1.0
    for _ in range(MAX_HALVINGS):
        candidate = np.clip(start[pending] + length * step[pending], lower, upper)
        after = objective(candidate, pending)
        # Rounding slack: a step that leaves an item at its optimum must not be refused for
        # a change in the 13th digit.
        better = after >= before[pending] - 1e-12 * np.abs(before[pending])
        result[pending[better]] = candidate[better]
        pending = pending[~better]
        if pending.size == 0:
            break
        length /= 2
    return result


def _m_step(model, prior, x, counts, right, scores, bounds):
    """A generalized M-step that never lowers the expected complete-data log-posterior: a guarded
    Fisher-scoring step per item (1PL: the intercepts, then the shared slope), each shortened by
    halving until it does not lower its objective. EM's ascent property then holds for the
    marginal log-posterior at every step."""
    a, d, c = x
    lower, upper = bounds
    _, _, gradient, information = scores
    before = _item_objective(model, prior, a, d, c, counts, right)
    if model == "1PL":
        step = np.clip(gradient[:, 1] / np.maximum(information[:, 1, 1], 1e-12), -MAX_STEP, MAX_STEP)[:, None]
        new_d = _ascend(d[:, None], step, before,
                        lambda cand, rows: _item_objective(model, prior, a[rows], cand[:, 0], c[rows],
                                                           counts[rows], right[rows]),
                        lower[1], upper[1])[:, 0]
        # The shared slope given the new intercepts: its score and information there.
        gradient, information = _gradient_and_information(model, a, new_d, c, counts, right)
        g, h = gradient[:, 0].sum(), information[:, 0, 0].sum()
        if prior == "default":
            prior_g, prior_h = _log_a_prior(a[0])
            g, h = g + prior_g, h + prior_h
        step = np.clip(g / max(abs(h), 1e-12), -MAX_STEP, MAX_STEP)

        def total(cand, rows):
            shared = np.full_like(a, cand[0, 0])
            value = _item_objective(model, prior, shared, new_d, c, counts, right).sum()
            return np.array([value + _shared_a_log_prior(prior, cand[0, 0])])

        start_total = total(a[:1, None], None)
        new_a = _ascend(a[:1, None], np.array([[step]]), start_total, total, lower[0], upper[0])[0, 0]
        return np.stack([np.full_like(a, new_a), new_d, c])
    k = gradient.shape[1]
    current = x[:k].T
    # Projected Newton: a parameter at a bound whose gradient pushes outward stays there, and the
    # step of the others is solved without it (its coupling would turn their direction).
    # A parameter whose full step would cross its bound in the gradient's direction steps to the
    # bound, and the others are solved again without it: else a parameter a hair above its bound
    # keeps turning the step of the others and the halving never finds a gain.
    held = _held(current, gradient, lower[:k], upper[:k])
    to_bound = np.zeros_like(current)
    for _ in range(2):
        free_pair = ~held[:, :, None] & ~held[:, None, :]
        step = _guarded_solve(np.where(free_pair, information, 0.0) + np.eye(k) * held[:, :, None],
                              np.where(held, 0.0, gradient))
        crossing = _held(current + step, gradient, lower[:k], upper[:k]) & ~held
        if not crossing.any():
            break
        held |= crossing
        to_bound = np.where(crossing, np.clip(current + step, lower[:k], upper[:k]) - current, to_bound)
    step = np.where(held, to_bound, step)
    # Shortened as a whole, not per component: clipping components would turn the direction.
    step *= np.minimum(1.0, MAX_STEP / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-300))

    def objective(cand, rows):
        cand_c = cand[:, 2] if k == 3 else c[rows]
        return _item_objective(model, prior, cand[:, 0], cand[:, 1], cand_c, counts[rows], right[rows])

    updated = _ascend(current, step, before, objective, lower[:k], upper[:k])
    result = x.copy()
    result[:k] = updated.T
    return result


@dataclass
class _Point:
    """The parameters x = (a, d, c) stacked 3 x items, and what an E-step at x gave."""

    x: np.ndarray
    posterior: np.ndarray
    loglik: float
    objective: float  # marginal log-likelihood + log prior: what EM raises
    counts: np.ndarray
    right: np.ndarray
    scores: tuple
    max_gradient: float  # largest component of the gradient of the objective at x
    max_free_gradient: float  # the same, leaving out components that push against a bound


def _evaluate(design, model, prior, x, bounds) -> _Point:
    a, d, c = x
    posterior, loglik = _posterior(design, a, d, c)
    counts, right = _counts(design, posterior)
    scores = _scores(model, prior, a, d, c, counts, right)
    score_a, _, gradient, _ = scores
    if model == "1PL":
        components = np.stack([np.full(a.size, score_a), gradient[:, 1]])
        components[0, 1:] = 0.0  # the shared slope is one parameter
    else:
        components = gradient.T
    components = np.where(np.isfinite(components), components, np.inf)
    lower, upper = bounds
    rows = components.shape[0]
    free = np.where(_held(x[:rows].T, components.T, lower[:rows], upper[:rows]).T, 0.0, components)
    return _Point(x, posterior, loglik, loglik + _log_prior(model, prior, a, c), counts, right, scores,
                  float(np.abs(components).max()), float(np.abs(free).max()))


def _stopping_reason(point: _Point, model, bounds, item_ids, tolerance) -> str:
    if point.max_gradient < tolerance:
        return ""
    lower, upper = bounds
    names = ("a", "d", "c")
    rows = 3 if model == "3PL" else 2
    at_bound = [f"{item_ids[j]} ({names[r]} = {point.x[r, j]:.3g})"
                for r in range(rows) for j in np.flatnonzero((point.x[r] <= lower[r]) | (point.x[r] >= upper[r]))]
    return (f"largest gradient component {point.max_gradient:.3g} >= {tolerance}: "
            f"{len(at_bound)} parameter(s) at a bound, {', '.join(at_bound[:5])}"
            + (" ..." if len(at_bound) > 5 else ""))


def _accelerated_em(design, model, prior, x, max_iterations, tolerance, bounds):
    """EM with SQUAREM extrapolation (Varadhan & Roland 2008, scheme S3): from x0, two EM steps
    give x1 and x2, a step length from their differences, and an extrapolated point that is kept
    only when its objective is not below x1's (otherwise x2 is). Every EM step raises the
    objective (see _m_step), so the sequence never falls. Stops when the gradient at an evaluated
    point is below `tolerance` (components pushing against a bound left out), at the iteration
    limit, or when the objective stalled; returns the best point seen, the E-steps taken, the
    last change and why it stopped ("" when the free gradient met the tolerance)."""
    current = _evaluate(design, model, prior, x, bounds)
    best, iterations, change = current, 1, np.inf
    history = [current.objective]

    def done(point):
        return point.max_free_gradient < tolerance

    while not done(current):
        if iterations >= max_iterations:
            return best, iterations, change, f"iteration limit ({max_iterations} E-steps) reached"
        if len(history) > STALL_STEPS and history[-1] - history[-1 - STALL_STEPS] < STALL_GAIN:
            return best, iterations, change, f"the objective stopped rising over {STALL_STEPS} E-steps"
        x1 = _m_step(model, prior, current.x, current.counts, current.right, current.scores, bounds)
        first = _evaluate(design, model, prior, x1, bounds)
        iterations += 1
        change = float(np.abs(x1 - current.x).max())
        best = first if first.objective >= best.objective else best
        history.append(best.objective)
        if done(first) or iterations >= max_iterations:
            current = first
            continue
        x2 = _m_step(model, prior, x1, first.counts, first.right, first.scores, bounds)
        r, v = x1 - current.x, x2 - 2 * x1 + current.x
        alpha = min(-np.sqrt((r * r).sum() / max((v * v).sum(), 1e-300)), -1.0)
        lower, upper = bounds
        jump = np.clip(current.x - 2 * alpha * r + alpha**2 * v, lower[:, None], upper[:, None])
        extrapolated = _evaluate(design, model, prior, jump, bounds)
        iterations += 1
        # Within the objective's float32 resolution two points are told apart by their gradients.
        resolution = OBJECTIVE_RESOLUTION * abs(first.objective)
        if np.isfinite(extrapolated.objective) and (
            extrapolated.objective > first.objective + resolution
            or (extrapolated.objective >= first.objective - resolution
                and extrapolated.max_free_gradient <= first.max_free_gradient)
        ):
            current = extrapolated
        else:
            current = _evaluate(design, model, prior, x2, bounds)
            iterations += 1
        change = float(np.abs(current.x - x1).max())
        best = current if current.objective >= best.objective else best
        history.append(best.objective)
    return current, iterations, change, ""


def _counts(design: _Design, posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    expected = design.expected(posterior)
    right = expected[1::2]
    return expected[0::2] + right, right


def _starting_values(model, responses: Responses, n_items: int):
    seen = np.bincount(responses.item, minlength=n_items)
    right = np.bincount(responses.item, weights=responses.correct, minlength=n_items)
    p = np.clip((right + 0.5) / (seen + 1.0), 0.02, 0.98)
    a = np.ones(n_items)
    c = np.full(n_items, 0.2 if model == "3PL" else 0.0)
    d = np.log((p - c).clip(0.01) / (1 - p))
    return a, d, c


def _included_items(responses: Responses, min_item_responses: int) -> tuple[np.ndarray, tuple]:
    n_items = responses.item_ids.size
    seen = np.bincount(responses.item, minlength=n_items)
    right = np.bincount(responses.item, weights=responses.correct, minlength=n_items)
    keep = (seen >= min_item_responses) & (right > 0) & (right < seen)
    excluded = tuple((responses.item_ids[j], int(seen[j])) for j in np.flatnonzero(~keep))
    return keep, excluded


def _restrict(responses: Responses, keep_items: np.ndarray) -> Responses:
    """Only the responses to kept items; students and items re-indexed (students left with none drop)."""
    mask = keep_items[responses.item]
    return Responses.from_arrays(
        responses.student_ids[responses.student[mask]],
        responses.item_ids[responses.item[mask]],
        responses.correct[mask],
    )


def fit(
    responses: Responses,
    model: str = "2PL",
    prior: str = "default",
    *,
    min_item_responses: int = 20,
    max_iterations: int = 500,
    gradient_tolerance: float = GRADIENT_TOLERANCE,
    start: ItemParams | None = None,
    standard_errors: bool = False,
) -> Calibration:
    """Calibrate the items by MML-EM and estimate every student's θ by EAP.

    Never raises on hard data: a fit that cannot reach the tolerance returns its best estimates
    with converged = false and the reason. standard_errors adds se_a, se_b and the answers per item
    to the item parameters (one more pass over the responses).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, not {model!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, not {prior!r}")
    started = time.perf_counter()
    keep, excluded = _included_items(responses, min_item_responses)
    data = responses if keep.all() else _restrict(responses, keep)
    n_items = data.item_ids.size
    if n_items == 0:
        raise ValueError("nothing to calibrate: no item has enough responses with both outcomes")
    design = _Design(data.student, 2 * data.item + data.correct, data.student_ids.size, 2 * n_items)
    a, d, c = _starting_values(model, data, n_items)
    if start is not None:
        a, d, c = _warm_start(start, data.item_ids, a, d, c)
    if model == "1PL":
        a = np.full(n_items, a.mean())
    bounds = _bounds(model, prior)
    x = np.clip(np.stack([a, d, c]), bounds[0][:, None], bounds[1][:, None])
    point, iterations, change, stopped = _accelerated_em(design, model, prior, x, max_iterations,
                                                         gradient_tolerance, bounds)
    a, d, c = point.x
    converged = point.max_gradient < gradient_tolerance
    if converged:
        reason = ""
    elif stopped:
        reason = f"{stopped}; largest gradient component {point.max_gradient:.3g} >= {gradient_tolerance}"
    else:  # the free components met the tolerance: what is left pushes against a bound
        reason = _stopping_reason(point, model, bounds, data.item_ids, gradient_tolerance)
    items = ItemParams(data.item_ids, a, -d / a, c, model)
    if standard_errors:
        se_a, se_b = _item_standard_errors(model, prior, data, point.posterior, a, d, c)
        items = replace(items, se_a=se_a, se_b=se_b,
                        responses=np.bincount(data.item, minlength=n_items))
    theta, se = _eap_moments(point.posterior)
    report = FitReport(
        model=model, prior=prior, iterations=iterations, loglik=point.loglik, max_change=change,
        max_gradient=point.max_gradient, converged=converged,
        seconds=time.perf_counter() - started, n_students=int(data.student_ids.size),
        n_items=int(n_items), n_responses=data.n_responses, excluded_items=excluded, reason=reason,
        gradient_tolerance=gradient_tolerance,
        negative_slope_items=tuple(data.item_ids[a < 0]),
    )
    return Calibration(items, Abilities(data.student_ids, theta, se), report)


def _item_standard_errors(model, prior, data: Responses, posterior, a, d, c, chunk: int = 1 << 18):
    """se(a) and se(b) per item from the cross-product of the students' scores (the XPD estimate of
    the observed information, item by item; the prior's exact curvature added for a MAP).

    A student's score for item j is Σ_k w_k ∂ log P(y | θ_k) / ∂(a, d[, c]) over the posterior
    weights w: one gather of the posterior row per response, in chunks. 1PL: b's error from the
    item's own intercept (the shared slope is known far better than any intercept), a's from the
    students' summed slope scores. se is nan where the information is not positive definite.
    """
    p, derivatives = _derivatives(model, a, d, c)
    k = len(derivatives)
    # Rows 2j + y of a (2·items) x nodes table per parameter: ∂ log P(y) / ∂ parameter at each node.
    tables = []
    for dp in derivatives:
        table = np.empty((2 * a.size, NODES.size), dtype=np.float32)
        table[0::2] = -dp / (1 - p)
        table[1::2] = dp / p
        tables.append(table)
    column = 2 * data.item.astype(np.int64) + data.correct
    cross = np.zeros((a.size, k, k))
    slope_per_student = np.zeros(data.student_ids.size) if model == "1PL" else None
    for lo in range(0, data.n_responses, chunk):
        rows = slice(lo, lo + chunk)
        weights = posterior[data.student[rows]]
        scores = [np.einsum("rk,rk->r", weights, table[column[rows]], dtype=np.float64) for table in tables]
        item = data.item[rows]
        for i in range(k):
            for j in range(i, k):
                cross[:, i, j] += np.bincount(item, weights=scores[i] * scores[j], minlength=a.size)
        if slope_per_student is not None:
            slope_per_student += np.bincount(data.student[rows], weights=scores[0], minlength=data.student_ids.size)
    cross = cross + np.transpose(np.triu(cross, 1), (0, 2, 1))
    if model == "1PL":
        information_a = float((slope_per_student**2).sum())
        information_d = cross[:, 1, 1]
        if prior == "default":
            information_a += _log_a_prior(a[0])[1]
        se_a = np.full(a.size, 1 / np.sqrt(information_a) if information_a > 0 else np.nan)
        se_d = np.where(information_d > 0, 1 / np.sqrt(np.maximum(information_d, 1e-300)), np.nan)
        return se_a, se_d / np.abs(a)
    if prior == "default":
        cross[:, 0, 0] += _log_a_prior(a)[1]
        if model == "3PL":
            cross[:, 2, 2] += _log_c_prior(c)[1]
    values, vectors = np.linalg.eigh(np.where(np.isfinite(cross), cross, 0.0))
    positive = values.min(axis=1) > 1e-10 * np.maximum(values.max(axis=1), 1e-300)
    covariance = np.einsum("nij,nj,nkj->nik", vectors, 1 / np.where(positive[:, None], values, 1.0), vectors)
    var_a, var_d, cov_ad = covariance[:, 0, 0], covariance[:, 1, 1], covariance[:, 0, 1]
    b = -d / a
    var_b = (b**2 * var_a + var_d + 2 * b * cov_ad) / a**2  # delta method on b = -d / a
    se_a = np.where(positive, np.sqrt(np.maximum(var_a, 0)), np.nan)
    se_b = np.where(positive, np.sqrt(np.maximum(var_b, 0)), np.nan)
    return se_a, se_b


def _warm_start(start: ItemParams, item_ids, a, d, c):
    known = pd.Series(np.arange(start.item_ids.size), index=start.item_ids)
    position = known.reindex(item_ids).to_numpy()
    found = ~np.isnan(position)
    index = position[found].astype(int)
    a, d, c = a.copy(), d.copy(), c.copy()
    a[found], d[found], c[found] = start.a[index], start.intercepts()[index], start.c[index]
    return a, d, c


def _eap_moments(posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = posterior @ NODES
    variance = np.maximum(posterior @ NODES**2 - mean**2, 0.0)
    return mean, np.sqrt(variance)


def eap(responses: Responses, items: ItemParams) -> Abilities:
    """EAP θ and posterior SD from given item parameters. Responses to items without parameters are
    skipped; a student left with no usable response gets no row. Students come out in the order of
    responses.student_ids."""
    n_items = items.item_ids.size
    position = pd.Series(np.arange(n_items), index=items.item_ids).reindex(responses.item_ids).to_numpy()
    # Answers to items without parameters go to one extra, flat item (a = 0, d = 0, c = 0: P = 0.5
    # at every node), which scales every node's likelihood alike and so leaves the posterior as it
    # is: no answer has to be filtered out of the arrays.
    unknown = np.isnan(position)
    row = (2 * np.where(unknown, n_items, position)).astype(np.int32)[responses.item]
    row += responses.correct
    student = responses.student
    if (student[1:] < student[:-1]).any():  # group the answers by student (usually they are)
        order = np.argsort(student, kind="stable")
        student, row = student[order], row[order]
    answers = np.diff(np.searchsorted(student, np.arange(responses.student_ids.size + 1, dtype=student.dtype)))
    usable = answers - np.bincount(student[row >= 2 * n_items], minlength=answers.size) if unknown.any() else answers
    answered = np.flatnonzero(answers)
    keep = usable[answered] > 0
    if not keep.any():
        return Abilities(np.array([], dtype=object), np.array([]), np.array([]))
    design = _Design.grouped(answers[answered], row, 2 * (n_items + 1), block_students=EAP_BLOCK_STUDENTS)
    flat = np.zeros(1)
    table = _answer_table(np.concatenate([items.a, flat]), np.concatenate([items.intercepts(), flat]),
                          np.concatenate([items.c, flat])).astype(np.float32)
    scored = list(_POOL.map(lambda block: _eap_block(block[2], table), design.blocks))
    theta, se = np.concatenate([t for t, _ in scored]), np.concatenate([s for _, s in scored])
    return Abilities(np.asarray(responses.student_ids)[answered[keep]], theta[keep], se[keep])


# Students per block of the EAP: a block's nodes x students table (1 MB) stays in the CPU cache
# through the whole chain of operations on it, and the blocks spread over the threads.
EAP_BLOCK_STUDENTS = 8192
_LOG_WEIGHTS_32 = LOG_WEIGHTS.astype(np.float32)[:, None]
_MOMENT_NODES = np.stack([np.ones_like(NODES), NODES, NODES**2])


def _eap_block(block: sparse.csr_matrix, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ and se of one block of students: their posterior over the nodes, nodes x students (the
    max and the sums over nodes then run along contiguous rows: ~3x faster than across them)."""
    joint = np.ascontiguousarray((block @ table).T)
    joint += _LOG_WEIGHTS_32
    joint -= joint.max(axis=0)
    np.exp(joint, out=joint)
    # The sums in float64: the variance is then exact for these float32 weights (no cancellation).
    total, first, second = _MOMENT_NODES @ joint.astype(np.float64)
    mean = first / total
    return mean, np.sqrt(np.maximum(second / total - mean**2, 0.0))


# ------------------------------------------------------------------------------------------------
# Linking: constants that put a new calibration on the scale of a base calibration.
# ------------------------------------------------------------------------------------------------


def _icc(a, b, c, theta) -> np.ndarray:
    """items x len(theta), in the (a, b) form: c + (1 - c) / (1 + exp(-a (θ - b)))."""
    return c[:, None] + (1 - c[:, None]) * expit(a[:, None] * (np.asarray(theta)[None, :] - b[:, None]))


def _mean_sigma(base: ItemParams, new: ItemParams) -> tuple[float, float]:
    spread = new.b.std()
    if not spread > 0:
        raise LinkingNotPossible("the anchors' b do not vary")
    scale = float(base.b.std() / spread)
    return scale, float(base.b.mean() - scale * new.b.mean())


def _haebara(base: ItemParams, new: ItemParams, weights, base_population) -> tuple[float, float]:
    """Symmetric Haebara: minimise, over A and B, the weighted squared differences between each
    anchor's two characteristic curves, integrated over the new calibration's N(0, 1) population
    (mapped onto the base scale) and over the base calibration's population (mapped onto the new
    scale). Curves, not b alone: an item with a poorly determined b has a flat curve and little say."""
    density = np.exp(LOG_WEIGHTS)
    mean, sd = base_population
    theta_base = mean + sd * NODES
    new_on_new = _icc(new.a, new.b, new.c, NODES)
    base_on_base = _icc(base.a, base.b, base.c, theta_base)

    def loss(constants):
        scale, shift = np.exp(constants[0]), constants[1]
        base_on_new = _icc(base.a, base.b, base.c, scale * NODES + shift)
        new_on_base = _icc(new.a / scale, scale * new.b + shift, new.c, theta_base)
        per_item = ((base_on_new - new_on_new) ** 2 + (base_on_base - new_on_base) ** 2) @ density
        return float(weights @ per_item)

    try:
        scale, shift = _mean_sigma(base, new)
        start = [np.log(np.clip(scale, 0.25, 4.0)), float(np.clip(shift, -3.0, 3.0))]
    except LinkingNotPossible:
        start = [0.0, 0.0]
    solution = optimize.minimize(loss, start, method="BFGS", options={"gtol": 1e-10})
    return float(np.exp(solution.x[0])), float(solution.x[1])


def _shift_errors(base: ItemParams, new: ItemParams, scale: float) -> np.ndarray:
    if base.se_b is None or new.se_b is None:
        return np.full(base.b.size, np.nan)
    return np.sqrt(base.se_b**2 + (scale * new.se_b) ** 2)


def link(
    base: ItemParams,
    new: ItemParams,
    method: str = "haebara",
    *,
    min_items: int = MIN_LINKING_ITEMS,
    min_responses: int = 0,
    max_se_b: float = np.inf,
    drift_shift: float = DRIFT_SHIFT,
    drift_z: float = DRIFT_Z,
    base_population: tuple[float, float] = (0.0, 1.0),
) -> Linking:
    """Constants putting `new` on the scale of `base` through their common items.

    Anchors: common items with a slope of at least MIN_ANCHOR_A on both sides and, where the
    parameters carry them, at least `min_responses` answers and se(b) <= `max_se_b` on both sides;
    the others are screened out with the reason. Haebara weights each anchor by the inverse of
    the variance of its b difference (equal weights without standard errors). Then the drift
    screen: while some anchor's linked b moved by more than `drift_shift` and by more than `drift_z`
    standard errors, the one that moved most (in standard errors) is left out and the constants
    are computed again. base_population: mean and SD of the base calibration's ability
    distribution on its own (stored) scale. Raises LinkingNotPossible with the reason.
    """
    if method not in LINKING_METHODS:
        raise ValueError(f"linking method must be one of {LINKING_METHODS}, not {method!r}")
    _, in_base, in_new = np.intersect1d(base.item_ids, new.item_ids, return_indices=True)
    base, new = base.take(in_base), new.take(in_new)
    reasons = np.full(base.item_ids.size, "", dtype=object)
    checks = [(np.minimum(base.a, new.a) < MIN_ANCHOR_A, f"slope below {MIN_ANCHOR_A}")]
    if base.responses is not None and new.responses is not None:
        checks.append((np.minimum(base.responses, new.responses) < min_responses, f"fewer than {min_responses} answers"))
    if base.se_b is not None and new.se_b is not None:
        too_uncertain = ~(np.maximum(base.se_b, new.se_b) <= max_se_b)  # nan counts as too uncertain
        checks.append((too_uncertain, f"se(b) above {max_se_b:g}"))
    for failed, reason in checks:
        reasons[failed & (reasons == "")] = reason
    screened = tuple((base.item_ids[j], reasons[j]) for j in np.flatnonzero(reasons != ""))
    anchors = np.flatnonzero(reasons == "")
    if anchors.size < min_items:
        raise LinkingNotPossible(f"{anchors.size} usable anchor items of {base.item_ids.size} common "
                                 f"(at least {min_items} needed)")
    def describe(index: int, scale: float, shift: float) -> ItemDrift:
        new_b = scale * new.b[index] + shift
        moved = new_b - base.b[index]
        error = _shift_errors(base.take([index]), new.take([index]), scale)[0]
        return ItemDrift(item=base.item_ids[index], base_a=float(base.a[index]), base_b=float(base.b[index]),
                         new_a=float(new.a[index] / scale), new_b=float(new_b), shift=float(moved),
                         z=float(moved / error))

    drifted: list[int] = []
    max_drifted = int(MAX_DRIFT_SHARE * anchors.size)
    while True:
        used_base, used_new = base.take(anchors), new.take(anchors)
        if method == "mean_sigma":
            scale, shift = _mean_sigma(used_base, used_new)
        else:
            errors = _shift_errors(used_base, used_new, 1.0)
            weights = 1 / errors**2 if np.isfinite(errors).all() else np.ones(anchors.size)
            scale, shift = _haebara(used_base, used_new, weights / weights.mean(), base_population)
        moved = scale * used_new.b + shift - used_base.b
        z = moved / _shift_errors(used_base, used_new, scale)
        suspicious = (np.abs(moved) > drift_shift) & ~(np.abs(z) <= drift_z)  # unknown z: the shift alone
        if not suspicious.any():
            break
        if len(drifted) >= max_drifted or anchors.size - 1 < min_items:
            raise LinkingNotPossible(
                f"more than {len(drifted)} of {len(drifted) + anchors.size} anchor items moved "
                f"(|Δb| > {drift_shift} and > {drift_z} standard errors): they no longer define a common scale")
        severity = np.where(np.isfinite(z), np.abs(z), np.abs(moved))
        worst = int(np.argmax(np.where(suspicious, severity, -np.inf)))
        drifted.append(int(anchors[worst]))
        anchors = np.delete(anchors, worst)
    return Linking(A=scale, B=shift, method=method, items_used=tuple(base.item_ids[anchors]), screened_out=screened,
                   drifted=tuple(describe(index, scale, shift) for index in drifted))


def apply_linking(calibration: Calibration, linking: Linking) -> Calibration:
    items, abilities = calibration.items, calibration.abilities
    scaled = {}
    if items.se_a is not None:
        scaled = {"se_a": items.se_a / linking.A, "se_b": items.se_b * linking.A}
    linked_items = replace(items, a=items.a / linking.A, b=linking.A * items.b + linking.B, **scaled)
    linked_abilities = Abilities(abilities.student_ids, linking.A * abilities.theta + linking.B, linking.A * abilities.se)
    return Calibration(linked_items, linked_abilities, calibration.report)


def information(items: ItemParams, theta: np.ndarray) -> np.ndarray:
    """Item information at each θ: items x len(theta)."""
    theta = np.asarray(theta, dtype=float)
    s = expit(items.a[:, None] * (theta[None, :] - items.b[:, None]))
    p = items.c[:, None] + (1 - items.c[:, None]) * s
    return items.a[:, None] ** 2 * ((p - items.c[:, None]) / (1 - items.c[:, None])) ** 2 * (1 - p) / p
