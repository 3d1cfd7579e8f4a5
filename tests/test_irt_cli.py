"""`seedtest-pipeline irt fit`: a responses file in, items/θ/fit report out; every unreadable input
and unusable OUT_DIR is one line on stderr and exit 2, OUT_DIR checked before any work."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from seedtest_pipeline import irt
from seedtest_pipeline.cli import main
from test_irt import simulate


def csv_lines(seed=12):
    responses, _ = simulate(1500, 12, 8, seed=seed)
    return responses, ["student,item,correct"] + [
        f"{s},{i},{c}" for s, i, c in zip(responses.student_ids[responses.student], responses.item_ids[responses.item],
                                          responses.correct)
    ]


def refused(capsys, args) -> str:
    """Runs the command, which must refuse with exit 2 and exactly one line on stderr."""
    assert main(["irt", "fit", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("irt fit: ") and "Traceback" not in err, err
    return err


def test_cli_fits_a_gzipped_csv_and_counts_rejected_rows(tmp_path):
    responses, lines = csv_lines()
    lines += ["s1,3,maybe", ",4,1"]
    path = tmp_path / "responses.csv.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert main(["irt", "fit", str(path), str(tmp_path / "out")]) == 0
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["converged"] and fit["rows_rejected"] == 2 and fit["rejected_sample_lines"] == [len(lines) - 1, len(lines)]
    assert fit["rows_read"] == len(lines) - 1 and fit["n_responses"] == responses.n_responses
    assert fit["reason"] == "" and fit["negative_slope_items"] == [] and fit["max_gradient"] < fit["gradient_tolerance"]
    items = (tmp_path / "out" / "items.csv").read_text().splitlines()
    assert items[0] == "item,a,b,c" and len(items) == 13
    assert (tmp_path / "out" / "theta.csv").read_text().splitlines()[0] == "student,theta,se"


def test_cli_names_a_wrong_header_and_refuses_empty_input(tmp_path, capsys):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user,item,correct\nu,1,1\n")
    assert "missing column(s) student" in refused(capsys, [wrong, tmp_path / "out"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty file" in refused(capsys, [empty, tmp_path / "out"])
    assert not (tmp_path / "out").exists()


@pytest.fixture
def gzipped(tmp_path):
    _, lines = csv_lines()
    return gzip.compress("\n".join(lines).encode())


def test_cli_refuses_a_file_that_is_not_gzip(tmp_path, capsys):
    path = tmp_path / "responses.csv.gz"
    path.write_text("student,item,correct\ns,1,1\n")
    assert "not a gzip file" in refused(capsys, [path, tmp_path / "out"])


def test_cli_refuses_a_truncated_gzip(tmp_path, capsys, gzipped):
    path = tmp_path / "responses.csv.gz"
    path.write_bytes(gzipped[: len(gzipped) // 2])
    assert "truncated" in refused(capsys, [path, tmp_path / "out"])


def test_cli_refuses_a_corrupt_gzip(tmp_path, capsys, gzipped):
    path = tmp_path / "responses.csv.gz"
    damaged = bytearray(gzipped)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the compressed stream
    path.write_bytes(bytes(damaged))
    assert "corrupt" in refused(capsys, [path, tmp_path / "out"])
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_row_with_an_extra_column_and_names_its_line(tmp_path, capsys):
    path = tmp_path / "responses.csv"
    path.write_text("student,item,correct\na,1,1\nb,1,0,9\nc,2,1\n")
    assert "line 3 has 4 fields, the header has 3" in refused(capsys, [path, tmp_path / "out"])


def test_cli_refuses_a_directory_as_input(tmp_path, capsys):
    assert "is a directory" in refused(capsys, [tmp_path, tmp_path / "out"])


def test_cli_refuses_an_out_dir_under_a_file_before_reading_or_fitting(tmp_path, capsys, monkeypatch):
    _, lines = csv_lines()
    path = tmp_path / "responses.csv"
    path.write_text("\n".join(lines))
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")

    def no_work(*args, **kwargs):
        raise AssertionError("OUT_DIR must be checked before any work")

    monkeypatch.setattr(irt, "fit", no_work)
    monkeypatch.setattr("seedtest_pipeline.irt_cli.read_responses", no_work)
    assert "which is a file" in refused(capsys, [path, a_file / "out"])
    assert "is not a directory" in refused(capsys, [path, a_file])


def test_cli_refuses_an_out_dir_that_cannot_be_written_before_any_work(tmp_path, capsys, monkeypatch):
    _, lines = csv_lines()
    path = tmp_path / "responses.csv"
    path.write_text("\n".join(lines))
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new files even to root
        locked = Path("/sys")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)

    monkeypatch.setattr(irt, "fit", lambda *a, **k: pytest.fail("OUT_DIR must be checked before fitting"))
    assert "is not writable" in refused(capsys, [path, locked / "out"])


def test_cli_reports_reversed_items_and_an_honest_convergence(tmp_path, capsys):
    from test_irt import reversed_items_data

    responses, _ = reversed_items_data()
    path = tmp_path / "reversed.csv"
    rows = np.column_stack([responses.student_ids[responses.student], responses.item_ids[responses.item], responses.correct])
    path.write_text("student,item,correct\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    assert main(["irt", "fit", str(path), str(tmp_path / "out"), "--prior", "none"]) == 0
    assert "negative slopes (reversed or miskeyed items): 11, 3" in capsys.readouterr().out  # ids sort as text
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["negative_slope_items"] == ["11", "3"] and fit["converged"]
