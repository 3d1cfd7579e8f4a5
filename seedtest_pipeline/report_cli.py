"""`seedtest-pipeline report USER_ID WEEK_START [--out DIR]`: one student's report, for template work.

Reads the student's week from the warehouse ($DATABASE_URL, else the embedded server) exactly as
the weekly_reports asset does, renders report.pdf, report.html and report.json (the data object
the templates receive) into DIR, and stores nothing in the object store nor in report_artifacts.
--templates points at an edited copy of seedtest_pipeline/reports/templates.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from pathlib import Path

from seedtest_pipeline import warehouse
from seedtest_pipeline.reports.data import ReportDataError, ReportWeek, add_charts, read_week_rows, student_report
from seedtest_pipeline.reports.render import TEMPLATES, ReportRenderer, ReportRenderError
from seedtest_pipeline.reports.store import user_segment


def render_one(database_url: str, user_id: str, week_start: date, out_dir: Path, templates: Path,
               today: date) -> dict[str, Path]:
    week = ReportWeek.of(week_start, today)
    renderer = ReportRenderer(templates)
    engine = warehouse.make_engine(database_url)
    try:
        with engine.begin() as connection:
            rows = read_week_rows(connection, week, user_ids=[user_id])
    finally:
        engine.dispose()
    if user_id not in rows.kpis:
        raise ReportDataError(f"user {user_id!r} has no weekly_kpi row and no activity in the week of {week_start}")
    data = add_charts(student_report(rows, user_id, week))
    data_json = renderer.data_json(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"pdf": out_dir / "report.pdf", "html": out_dir / "report.html", "json": out_dir / "report.json"}
    files["pdf"].write_bytes(renderer.pdf(data_json))
    files["html"].write_bytes(renderer.html(data))
    files["json"].write_text(data_json, encoding="utf-8")
    return files


def cmd_report(args) -> int:
    try:
        week_start = date.fromisoformat(args.week_start)
        out_dir = Path(args.out) if args.out else (
            warehouse.seedtest_home() / "preview" / user_segment(args.user_id) / week_start.isoformat())
        files = render_one(warehouse.warehouse_url(), args.user_id, week_start, out_dir, Path(args.templates),
                           datetime.now(timezone.utc).date())
    except (ReportDataError, ReportRenderError, ValueError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    for kind, path in files.items():
        print(f"{kind:5} {path}")
    return 0


def add_report_parser(commands) -> None:
    report = commands.add_parser("report", help="render one student's weekly report to files (no upload)")
    report.add_argument("user_id")
    report.add_argument("week_start", help="ISO Monday of the week, e.g. 2026-11-16")
    report.add_argument("--out", help="folder for report.pdf/.html/.json (default $SEEDTEST_HOME/preview/USER/WEEK)")
    report.add_argument("--templates", default=str(TEMPLATES),
                        help="folder holding report.typ and report.html.j2 (default: the project's)")
    report.set_defaults(func=cmd_report)
