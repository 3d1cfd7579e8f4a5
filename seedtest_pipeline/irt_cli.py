"""`seedtest-pipeline irt fit RESPONSES OUT_DIR`: calibrate a CSV of responses without a database.

RESPONSES: CSV (optionally .gz) with header student,item,correct. Rows whose correct is not one of
0/1/true/false are rejected: counted in fit.json with sample line numbers, never silently dropped.
A file that cannot be read as such a CSV (not gzip, truncated or corrupt, a row with more fields
than the header, a directory) and an OUT_DIR that cannot be written are refused with one line that
says what is wrong, exit 2; OUT_DIR is checked first, before any reading or fitting.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from seedtest_pipeline import irt

REQUIRED_COLUMNS = ("student", "item", "correct")
CORRECT_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0}
SAMPLE_LINES = 5
GZIP_MAGIC = b"\x1f\x8b"


class ResponsesFileError(ValueError):
    pass


def check_out_dir(out_dir: Path) -> None:
    """OUT_DIR must be a directory that can be written, or creatable under one. Checked by creating
    (and removing) a temporary file in the nearest existing folder: nothing is left behind."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ResponsesFileError(f"OUT_DIR {out_dir} exists and is not a directory")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ResponsesFileError(f"OUT_DIR {out_dir} is under {existing}, which is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ResponsesFileError(f"OUT_DIR {out_dir} is not writable ({existing}: {error.strerror})") from None


def _compression(path: Path) -> str | None:
    if path.is_dir():
        raise ResponsesFileError(f"{path} is a directory, not a responses file")
    if not path.exists():
        raise ResponsesFileError(f"{path}: no such file")
    with path.open("rb") as head:
        gzipped = head.read(2) == GZIP_MAGIC
    if path.suffix == ".gz" and not gzipped:
        raise ResponsesFileError(f"{path}: not a gzip file (a .gz name, but no gzip header)")
    return "gzip" if gzipped else None


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV as text columns; every way the file can be unreadable becomes one sentence."""
    compression = _compression(path)
    try:
        # correct as a category: its few distinct spellings are mapped once, not per row.
        return pd.read_csv(path, dtype={"student": str, "item": str, "correct": "category"},
                           keep_default_na=False, compression=compression)
    except pd.errors.EmptyDataError:
        raise ResponsesFileError(f"{path}: empty file, expected the header student,item,correct") from None
    except pd.errors.ParserError as error:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if fields:
            expected, line, seen = fields.groups()
            raise ResponsesFileError(f"{path}: line {line} has {seen} fields, the header has {expected}") from None
        raise ResponsesFileError(f"{path}: not a readable CSV ({' '.join(str(error).split())})") from None
    except EOFError:
        raise ResponsesFileError(f"{path}: the gzip data is truncated (it ends before its end marker)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise ResponsesFileError(f"{path}: the gzip data is corrupt ({error})") from None
    except UnicodeDecodeError as error:
        raise ResponsesFileError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None


def read_responses(path: Path) -> tuple[irt.Responses, dict]:
    """The responses of a CSV, and what reading it found (rows read, rejected, sample lines)."""
    frame = _read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ResponsesFileError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must name student,item,correct "
            f"(found: {','.join(frame.columns)})"
        )
    spellings = frame["correct"].astype("category").cat
    values = pd.Index(spellings.categories.astype(str)).str.strip().str.lower().map(CORRECT_VALUES)
    # Code -1 (an empty cell) picks the appended NaN, so it is rejected like any unknown spelling.
    correct = pd.Series(np.append(np.asarray(values, dtype=float), np.nan)[spellings.codes.to_numpy()])
    rejected = correct.isna() | (frame["student"] == "") | (frame["item"] == "")
    lines = (frame.index[rejected] + 2).tolist()  # line 1 is the header
    accepted = frame[~rejected]
    if accepted.empty:
        raise ResponsesFileError(f"{path}: no usable rows ({len(frame)} read, {len(lines)} rejected)")
    responses = irt.Responses.from_arrays(
        accepted["student"].to_numpy(), accepted["item"].to_numpy(), correct[~rejected].to_numpy()
    )
    reading = {
        "rows_read": int(len(frame)),
        "rows_rejected": len(lines),
        "rejected_sample_lines": lines[:SAMPLE_LINES],
        "duplicate_pairs_dropped": responses.duplicates,
    }
    return responses, reading


def fit_file(path: Path, out_dir: Path, model: str, prior: str) -> dict:
    started = time.perf_counter()
    check_out_dir(out_dir)
    responses, reading = read_responses(path)
    calibration = irt.fit(responses, model=model, prior=prior)
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration.items.to_frame().to_csv(out_dir / "items.csv", index=False)
    calibration.abilities.to_frame().to_csv(out_dir / "theta.csv", index=False)
    summary = {
        **calibration.report.as_dict(),
        **reading,
        "seconds_total": time.perf_counter() - started,
    }
    (out_dir / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def cmd_irt_fit(args) -> int:
    try:
        summary = fit_file(Path(args.responses), Path(args.out_dir), args.model, args.prior)
    except (ResponsesFileError, ValueError) as error:
        print(f"irt fit: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # writing the results failed after the checks (disk full, removed folder)
        print(f"irt fit: {error.filename or args.out_dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(
        f"{summary['model']}: {summary['n_items']} items, {summary['n_students']} students, "
        f"{summary['n_responses']} responses; {summary['iterations']} iterations, "
        f"converged={summary['converged']}, loglik={summary['loglik']:.2f}, {summary['seconds']:.2f}s; "
        f"{summary['rows_rejected']} rows rejected, {len(summary['excluded_items'])} items left out -> {args.out_dir}"
    )
    if summary["negative_slope_items"]:
        print(f"negative slopes (reversed or miskeyed items): {', '.join(summary['negative_slope_items'])}")
    if not summary["converged"]:
        print(f"not converged: {summary['reason']}")
    return 0 if summary["converged"] else 1


def add_irt_parser(commands) -> None:
    irt_parser = commands.add_parser("irt", help="IRT calibration of a responses CSV (no database)")
    actions = irt_parser.add_subparsers(dest="irt_command", required=True)
    fit = actions.add_parser("fit", help="fit 1PL/2PL/3PL; writes items.csv, theta.csv, fit.json")
    fit.add_argument("responses", help="CSV or CSV.gz with header student,item,correct")
    fit.add_argument("out_dir")
    fit.add_argument("--model", choices=irt.MODELS, default="2PL")
    fit.add_argument("--prior", choices=irt.PRIORS, default="default")
    fit.set_defaults(func=cmd_irt_fit)
