"""Benchmarks for the IRT engine (issue 3). Prints figures; never run by the tests.

Simulated 2PL truth: a ~ LogNormal(0, 0.3), b ~ N(0, 1), θ ~ N(0, 1), logistic metric; each
student answers `per_student` distinct random items.

1. fit + EAP time and peak memory on 50,000 x 400 x 40 (2M responses) and 200,000 x 1,000 x 50
   (10M responses). Each case runs in a fresh subprocess. Memory: the peak of what the fit
   allocates (tracemalloc, which sees numpy and scipy buffers), and the whole process's peak RSS
   (ru_maxrss), which also holds the interpreter, the libraries and the simulated data.
2. accuracy: RMSE(a), RMSE(b), corr(EAP θ, true θ), and for comparison the correlation that EAP
   reaches with the *true* item parameters (the most any calibration can give on that data);
   E-steps and the largest gradient component at the estimates; the time of a fit that also
   computes the items' standard errors (what a calibration run does).
3. the whole `seedtest-pipeline irt fit` command on a CSV of the 50k set (process start to exit).

    .venv/bin/python bench/bench_irt.py
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "irt"
CASES = ((50_000, 400, 40), (200_000, 1_000, 50))
REPEATS = 3


def simulate(students: int, items: int, per_student: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0, 0.3, items)
    b = rng.normal(0, 1, items)
    theta = rng.normal(0, 1, students)
    chosen = np.empty((students, per_student), dtype=np.int32)
    for lo in range(0, students, 20_000):  # distinct items per student, in memory-bounded blocks
        hi = min(students, lo + 20_000)
        chosen[lo:hi] = np.argsort(rng.random((hi - lo, items), dtype=np.float32), axis=1)[:, :per_student]
    item = chosen.ravel()
    student = np.repeat(np.arange(students, dtype=np.int32), per_student)
    p = 1 / (1 + np.exp(-a[item] * (theta[student] - b[item])))
    correct = (rng.random(p.size) < p).astype(np.uint8)
    return student, item, correct, a, b, theta


def measure(students: int, items: int, per_student: int) -> dict:
    from seedtest_pipeline import irt

    student, item, correct, a, b, theta = simulate(students, items, per_student)
    responses = irt.Responses(np.arange(students), np.arange(items), student, item, correct)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        calibration = irt.fit(responses)  # the fit ends with the EAP of every student
        timings.append(time.perf_counter() - started)
    peak_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with_errors = []  # what a calibration run pays: the fit plus the items' standard errors
    for _ in range(REPEATS):
        started = time.perf_counter()
        irt.fit(responses, standard_errors=True)
        with_errors.append(time.perf_counter() - started)
    tracemalloc.start()  # a separate, untimed run: what the fit itself allocates at its peak
    irt.fit(responses)
    fit_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    report = calibration.report
    with_truth = irt.eap(responses, irt.ItemParams(np.arange(items), a, b, np.zeros(items), "2PL"))
    return {
        "responses": int(student.size),
        "seconds_median": statistics.median(timings),
        "seconds_all": [round(t, 3) for t in timings],
        "seconds_with_se_median": statistics.median(with_errors),
        "peak_rss_growth_mb": peak_growth,
        "rss_with_data_mb": rss_before / 1024,
        "process_peak_rss_mb": process_peak,
        "process_peak_rss_with_se_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fit_allocations_peak_mb": fit_peak,
        "iterations": report.iterations,
        "converged": report.converged,
        "max_gradient": report.max_gradient,
        "rmse_a": float(np.sqrt(np.mean((calibration.items.a - a) ** 2))),
        "rmse_b": float(np.sqrt(np.mean((calibration.items.b - b) ** 2))),
        "corr_theta": float(np.corrcoef(calibration.abilities.theta, theta)[0, 1]),
        "corr_theta_true_items": float(np.corrcoef(with_truth.theta, theta)[0, 1]),
    }


def write_csv(students: int, items: int, per_student: int, path: Path) -> int:
    student, item, correct, *_ = simulate(students, items, per_student)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("student,item,correct\n")
        np.savetxt(out, np.column_stack([student, item, correct]), fmt="%d", delimiter=",")
    return int(student.size)


def in_subprocess(function: str, *args) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import bench_irt as b; "
        f"print(json.dumps(b.{function}(*{list(args)!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"1-2. fit + EAP (2PL, default priors), median of {REPEATS}, fresh process per case")
    for students, items, per_student in CASES:
        f = in_subprocess("measure", students, items, per_student)
        print(f"  {students} x {items} x {per_student} ({f['responses']} responses): "
              f"{f['seconds_median']:.2f}s (runs {f['seconds_all']}); the fit allocates at most "
              f"{f['fit_allocations_peak_mb']:.0f} MB (tracemalloc); whole process peak RSS "
              f"{f['process_peak_rss_mb']:.0f} MB including the simulated data")
        print(f"    with the items' standard errors (as a calibration run fits): {f['seconds_with_se_median']:.2f}s, "
              f"process peak RSS {f['process_peak_rss_with_se_mb']:.0f} MB")
        print(f"    {f['iterations']} E-steps, converged={f['converged']}, max |gradient| {f['max_gradient']:.2e}; "
              f"RMSE a {f['rmse_a']:.4f}, RMSE b {f['rmse_b']:.4f}, corr(EAP, θ) {f['corr_theta']:.4f} "
              f"(with the true items: {f['corr_theta_true_items']:.4f})")

    students, items, per_student = CASES[0]
    csv_path = OUT / f"responses_{students}x{items}x{per_student}.csv"
    rows = write_csv(students, items, per_student, csv_path)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seedtest_pipeline.cli", "irt", "fit", str(csv_path), str(OUT / "fit")],
                   check=True, capture_output=True)
    whole = time.perf_counter() - started
    fit = json.loads((OUT / "fit" / "fit.json").read_text())
    print(f"\n3. seedtest-pipeline irt fit on a {csv_path.stat().st_size / 1e6:.0f} MB CSV ({rows} rows): "
          f"{whole:.2f}s for the whole process (fit {fit['seconds']:.2f}s, "
          f"inside the command {fit['seconds_total']:.2f}s)")


if __name__ == "__main__":
    main()
