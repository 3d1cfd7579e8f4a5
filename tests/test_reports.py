"""Weekly reports: data assembly, rendering, keys, the stores (local and a real S3 server), the
asset, the command. Real PostgreSQL; S3 is moto's server on 127.0.0.1 (a real HTTP S3 API)."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date, datetime, timedelta, timezone
from urllib.parse import unquote

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from factories import start_s3_server
from assets.reports import weekly_reports
from resources.object_store import ObjectStoreResource
from resources.warehouse import WarehouseResource
from seedtest_pipeline import synthetic
from seedtest_pipeline.cli import main as cli_main
from seedtest_pipeline.definitions import defs
from seedtest_pipeline.features import write_features
from seedtest_pipeline.jobs import weekly_reports_schedule
from seedtest_pipeline.kpi import KPI_LABELS, write_weekly_kpi
from seedtest_pipeline.reports.data import (
    MISSING, ReportDataError, ReportWeek, WeekRows, add_charts, churn_level, read_week_rows, report_chunk,
    student_report,
)
from seedtest_pipeline.reports.render import ReportRenderer, ReportRenderError
from seedtest_pipeline.reports.store import (
    MAX_SEGMENT_CHARS, LocalStore, S3Store, report_key, user_segment,
)
from seedtest_pipeline.reports.week import render_week
from seedtest_pipeline.windows import DayRange, day_start

WEEK = date(2026, 11, 16)  # an ISO Monday; the synthetic data ends on its Sunday
TODAY = date(2026, 11, 30)
OTHER_WEEK = date(2026, 6, 1)  # hand-made rows live here, apart from the synthetic weeks
KOREAN_TOPICS = {t for t in synthetic.DEFAULT_TOPICS if not t.isascii()}


@pytest.fixture(scope="module")
def renderer():
    return ReportRenderer()


@pytest.fixture(scope="module")
def week_chain(schema_engine):
    """Five weeks of synthetic activity for 40 students ending on WEEK's Sunday, with features,
    θ history and the two last weeks' KPIs."""
    engine = schema_engine
    with engine.begin() as connection:
        connection.execute(sa.text(
            "TRUNCATE report_artifacts, mirt_ability, mirt_item_params, mirt_fit_meta, weekly_kpi, "
            "features_topic_daily, exam_results RESTART IDENTITY CASCADE"))
        config = synthetic.SyntheticConfig(students=40, days=35, end_date=WEEK + timedelta(days=6), seed=11)
        synthetic.seed_exam_results(connection.connection.driver_connection, config)
    write_features(engine, DayRange(WEEK - timedelta(days=28), WEEK + timedelta(days=7)))
    # θ history as the calibrations and online updates leave it (written by hand: these tests are
    # about reading it): a calibration as of the end of the previous week for everyone, an online
    # update in the middle of the week for every other student, and one after the week (unseen).
    with engine.begin() as connection:
        users = list(connection.scalars(sa.text("SELECT DISTINCT user_id FROM features_topic_daily ORDER BY 1")))
        rows = []
        for n, user_id in enumerate(users):
            theta = (n % 9 - 4) / 4
            rows.append({"u": user_id, "t": theta, "se": 0.3 + n % 3 / 10, "src": "calibration",
                         "at": day_start(WEEK)})
            if n % 2:
                rows.append({"u": user_id, "t": theta + 0.2, "se": None, "src": "online",
                             "at": day_start(WEEK + timedelta(days=3)) + timedelta(hours=12)})
            rows.append({"u": user_id, "t": 3.5, "se": 0.2, "src": "online", "at": day_start(WEEK + timedelta(days=8))})
        connection.execute(sa.text(
            "INSERT INTO mirt_ability (user_id, theta, se, model, version, source, fitted_at) "
            "VALUES (:u, :t, :se, '2PL', 'test', :src, :at)"), rows)
    for week in (WEEK - timedelta(days=7), WEEK):
        with engine.begin() as connection:
            write_weekly_kpi(connection, week, TODAY)
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE report_artifacts, weekly_kpi, features_topic_daily, exam_results"))


def week_students(engine, week=WEEK) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.text(
            "SELECT user_id FROM weekly_kpi WHERE week_start = :w UNION "
            "SELECT user_id FROM features_topic_daily WHERE date >= :w AND date < :w + 7 ORDER BY 1"), {"w": week}))


def artifacts(engine, week=WEEK) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(
            "SELECT user_id, format, url, file_size_bytes, sha256, generated_at FROM report_artifacts "
            "WHERE week_start = :w ORDER BY user_id, format"), {"w": week})]


def pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


def kpi_row(**values) -> dict:
    return {key: values.get(key) for key in KPI_LABELS}


def one_student(kpis: dict | None, previous: dict | None = None, topics=(), days=None, theta=None,
                user_id: str = "u-1") -> dict:
    rows = WeekRows([user_id], {user_id: (kpis, previous)}, {user_id: list(topics)}, {user_id: days or {}},
                    {user_id: theta or {}})
    return student_report(rows, user_id, ReportWeek.of(WEEK, TODAY))


# --- keys -------------------------------------------------------------------------------------

HOSTILE_IDS = ["../../etc/passwd", "..", ".", "a/b", "학생 김민수", "x" * 256, "한" * 256, "100%~", " lead",
               "a\\b", "?#&=", "\x00nul"]


@pytest.mark.parametrize("user_id", HOSTILE_IDS)
def test_hostile_user_ids_give_one_safe_segment_inside_the_store(user_id, tmp_path):
    key = report_key(user_id, WEEK, "pdf")
    prefix, segment, week, name = key.split("/")
    assert (prefix, week, name) == ("reports", "2026-11-16", "report.pdf")
    assert segment not in ("", ".", "..") and len(segment) <= MAX_SEGMENT_CHARS + 33 and segment.isascii()
    if "~" not in segment:
        assert unquote(segment) == user_id  # reversible for every id short enough
    store = LocalStore(tmp_path / "store")
    url = store.put(key, b"x", "application/pdf")
    written = store.path_of(key)
    assert written.read_bytes() == b"x" and url == written.as_uri()
    assert written.is_relative_to((tmp_path / "store").resolve())
    assert [p.name for p in (tmp_path / "store" / "reports").iterdir()] == [segment]


def test_keys_keep_ordinary_ids_and_never_collide():
    assert report_key("3f2a6c1e-8a5b-4c1d-9e2f-0a1b2c3d4e5f", WEEK, "html") == (
        "reports/3f2a6c1e-8a5b-4c1d-9e2f-0a1b2c3d4e5f/2026-11-16/report.html")
    assert user_segment("user_1.b-2") == "user_1.b-2"
    similar = ["a/b", "a%2Fb", "a~b", "a%7Eb", "..", "%2E%2E", "x" * 256, "x" * 257, "x" * 255 + "y"]
    assert len({user_segment(u) for u in similar}) == len(similar)
    with pytest.raises(ValueError, match="empty"):
        user_segment("")


def test_the_local_store_refuses_keys_that_leave_its_folder(tmp_path):
    store = LocalStore(tmp_path / "store")
    for key in ("../outside", "reports/../../outside", "/etc/passwd"):
        with pytest.raises(ValueError, match="leaves the store folder"):
            store.put(key, b"x", "text/plain")
    assert not (tmp_path / "outside").exists()


def test_the_store_resource_reads_its_settings_from_fields_then_environment(tmp_path, monkeypatch):
    for variable in ("SEEDTEST_REPORTS_BUCKET", "SEEDTEST_REPORTS_PREFIX", "SEEDTEST_REPORTS_REGION",
                     "SEEDTEST_REPORTS_ENDPOINT_URL", "SEEDTEST_REPORTS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SEEDTEST_HOME", str(tmp_path / "home"))
    local = ObjectStoreResource().store()
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "home" / "object-store").resolve()
    monkeypatch.setenv("SEEDTEST_REPORTS_BUCKET", "from-env")
    monkeypatch.setenv("SEEDTEST_REPORTS_PREFIX", "/staging/")
    monkeypatch.setenv("SEEDTEST_REPORTS_ENDPOINT_URL", "http://127.0.0.1:9")
    s3 = ObjectStoreResource(region="eu-central-1").store()
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.region, s3.endpoint_url) == ("from-env", "staging/", "eu-central-1",
                                                                   "http://127.0.0.1:9")
    assert s3.client.meta.region_name == "eu-central-1" and s3.client.meta.config.signature_version == "s3v4"
    assert ObjectStoreResource(bucket="field").store().bucket == "field"
    with pytest.raises(ValueError, match="'..' are not allowed"):
        LocalStore(tmp_path, prefix="a/../b")


# --- the data object --------------------------------------------------------------------------

@pytest.mark.parametrize(("risk", "level"), [(None, None), (0.0, "low"), (0.2999, "low"), (0.3, "medium"),
                                             (0.6999, "medium"), (0.7, "high"), (1.0, "high")])
def test_churn_levels_follow_the_spec_boundaries(risk, level):
    assert churn_level(risk) == level


def test_missing_figures_are_shown_as_missing_never_as_zero(renderer):
    data = one_student(kpi_row(I_t=0.0, S=0.1), previous=None)
    by_key = {k["key"]: k for k in data["kpis"]}
    assert by_key["I_t"]["value_text"] == "0.00" and by_key["I_t"]["change_text"] == MISSING
    assert by_key["E_t"]["value"] is None and by_key["E_t"]["value_text"] == MISSING
    assert data["week"]["accuracy"] is None and data["week"]["accuracy_text"] == MISSING
    assert all(t["theta"] is None and t["text"] == MISSING for t in data["theta"])
    nothing = one_student(None)
    assert nothing["churn"] == {"value": None, "value_text": MISSING, "level": None, "level_text": MISSING}
    assert [k["value_text"] for k in nothing["kpis"]] == [MISSING] * 6
    text = pdf_text(renderer.pdf(renderer.data_json(add_charts(nothing))))
    assert text.count(MISSING) >= 12 and "0.00" not in text


PRAISE_WORDS = ("well done", "improving", "on track", "faster", "now answered correctly")
kpi_values = {
    "I_t": st.one_of(st.none(), st.floats(-1, 1)), "E_t": st.one_of(st.none(), st.floats(0, 1)),
    "R_t": st.one_of(st.none(), st.floats(0, 1)), "A_t": st.one_of(st.none(), st.floats(0, 1)),
    "P": st.one_of(st.none(), st.floats(0, 1)),
}


@settings(max_examples=200, deadline=None)
@given(figures=st.fixed_dictionaries(kpi_values), churn=st.floats(0.7, 1.0),
       topics=st.lists(st.tuples(st.sampled_from(sorted(synthetic.DEFAULT_TOPICS)), st.integers(1, 40),
                                 st.integers(0, 40)), max_size=4, unique_by=lambda t: t[0]))
def test_high_churn_risk_is_never_praised(figures, churn, topics):
    topics = [(name, attempts, min(correct, attempts)) for name, attempts, correct in topics]
    data = one_student({**figures, "S": churn}, topics=topics)
    kinds = [r["kind"] for r in data["recommendations"]]
    assert "praise" not in kinds and kinds[0] == "warning"
    assert not any(word in r["text"].lower() for r in data["recommendations"] for word in PRAISE_WORDS)


def test_the_same_figures_at_low_churn_risk_are_praised():
    figures = {"I_t": 0.3, "E_t": 0.4, "R_t": 0.9, "A_t": 0.8, "P": 0.9}
    praised = one_student({**figures, "S": 0.1}, topics=[("대수", 10, 9)])["recommendations"]
    assert {r["kind"] for r in praised} == {"praise"} and len(praised) == 4
    at_risk = one_student({**figures, "S": 0.85}, topics=[("대수", 10, 9)])["recommendations"]
    assert [r["kind"] for r in at_risk] == ["warning"] and "0.85" in at_risk[0]["because"]


def test_recommendations_follow_the_figures():
    data = one_student(kpi_row(I_t=-0.2, R_t=0.3, A_t=0.2, P=0.1, S=0.5),
                       topics=[("확률과 통계", 10, 3), ("대수", 10, 9), ("geometry", 2, 0)])
    because = " | ".join(r["because"] for r in data["recommendations"])
    texts = " | ".join(r["text"] for r in data["recommendations"])
    assert "Churn risk S = 0.50" in because and "I_t = -0.20" in because and "R_t = 0.30" in because
    assert "Review 확률과 통계" in texts and "대수" not in texts  # 90% is not weak
    assert "geometry" not in texts  # 2 attempts are too few to judge


@pytest.mark.parametrize(("field", "value", "message"), [
    ("I_t", "abc", "is not a number"), ("S", 1.5, "outside"), ("P", True, "is not a number"),
])
def test_unreadable_stored_figures_are_a_named_error(field, value, message):
    with pytest.raises(ReportDataError, match=rf"kpis\['{field}'\] of user 'u-1', week 2026-11-16: .*{message}"):
        one_student(kpi_row(**{field: value}))


def test_the_week_is_read_set_based_and_matches_the_tables(week_chain):
    engine = week_chain
    statements = []

    def count(connection, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        week = ReportWeek.of(WEEK, TODAY)
        with engine.begin() as connection:
            everyone = read_week_rows(connection, week)
        read_all = len(statements)
        with engine.begin() as connection:
            a_few = read_week_rows(connection, week, chunk_count=8, chunks=[3])
        read_few = len(statements) - read_all
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert everyone.user_ids == week_students(engine) and len(everyone.user_ids) >= 20
    assert 0 < len(a_few.user_ids) < len(everyone.user_ids) and read_all == read_few  # no query per student
    assert set(a_few.user_ids) == {u for u in everyone.user_ids if report_chunk(u, 8) == 3}
    user_id = max(everyone.user_ids, key=lambda u: sum(a for _, a, _ in everyone.topics.get(u, [])))
    data = student_report(everyone, user_id, week)
    with engine.connect() as connection:
        kpis = connection.scalar(sa.text("SELECT kpis FROM weekly_kpi WHERE user_id = :u AND week_start = :w"),
                                 {"u": user_id, "w": WEEK})
        previous = connection.scalar(sa.text("SELECT kpis FROM weekly_kpi WHERE user_id = :u AND week_start = :w"),
                                     {"u": user_id, "w": WEEK - timedelta(days=7)})
        per_day = dict(connection.execute(sa.text(
            "SELECT date, sum(attempts) FROM features_topic_daily WHERE user_id = :u AND date >= :w AND date < :w + 7 "
            "GROUP BY date"), {"u": user_id, "w": WEEK}).all())
        theta = connection.execute(sa.text(
            "SELECT theta, se FROM mirt_ability WHERE user_id = :u AND fitted_at <= :end "
            "ORDER BY fitted_at DESC, id DESC LIMIT 1"), {"u": user_id, "end": day_start(WEEK + timedelta(days=7))}).one()
    for row in data["kpis"]:
        assert row["value"] == kpis.get(row["key"])
        if row["value"] is not None and previous and previous.get(row["key"]) is not None:
            assert row["change"] == pytest.approx(kpis[row["key"]] - previous[row["key"]])
    assert {date.fromisoformat(d["date"]): d["attempts"] for d in data["days"] if d["attempts"]} == per_day
    assert data["week"]["attempts"] == kpis["week_attempts"] and data["week"]["correct"] == kpis["week_correct"]
    assert (data["theta"][-1]["theta"], data["theta"][-1]["se"]) == (theta.theta, theta.se)
    sources = {}
    for user_id in everyone.user_ids:
        trend = student_report(everyone, user_id, week)["theta"]
        assert trend[-2]["theta"] is not None and trend[-2]["se"] is not None  # the calibration before the week
        assert all(point["theta"] is None for point in trend[:-2])  # no estimate that far back
        sources[trend[-1]["se"] is None] = trend[-1]["text"]
        assert trend[-1]["theta"] != 3.5  # fitted after the week: not part of it
    assert sources[True].endswith("(se unknown)")  # an online update without se in the week


# --- rendering --------------------------------------------------------------------------------

def struct_alt_texts(node, found=None, depth=0) -> list[str]:
    found = [] if found is None else found
    node = node.get_object() if hasattr(node, "get_object") else node
    if isinstance(node, dict):
        if "/Alt" in node:
            found.append(str(node["/Alt"]))
        if "/K" in node and depth < 60:
            struct_alt_texts(node["/K"], found, depth + 1)
    elif isinstance(node, list):
        for child in node:
            struct_alt_texts(child, found, depth + 1)
    return found


def test_the_pdf_is_tagged_accessible_deterministic_and_hangul(renderer):
    data = add_charts(one_student(kpi_row(I_t=0.12, S=0.2), topics=[("확률과 통계", 12, 9)],
                                     theta={WEEK: (0.4, 0.3)}, user_id="학생-7"))
    first = renderer.pdf(renderer.data_json(data))
    assert renderer.pdf(renderer.data_json(data)) == first  # byte-identical
    reader = PdfReader(io.BytesIO(first))
    root = reader.trailer["/Root"]
    assert root["/MarkInfo"]["/Marked"] and root["/Lang"] == "en"
    assert b"pdfuaid:part" in first  # XMP identification as PDF/UA
    alts = struct_alt_texts(root["/StructTreeRoot"])
    assert any(a.startswith("Ability θ by week") and "11-16 θ +0.40 ± 0.30" in a for a in alts)
    assert any(a.startswith("Attempts per day") for a in alts)
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert fonts and all("NanumGothic" in f for f in fonts)
    assert "확률과 통계" in pdf_text(first) and "학생-7" in pdf_text(first)


def test_a_glyph_the_fonts_lack_is_an_error_not_an_empty_box(renderer):
    data = add_charts(one_student(kpi_row(S=0.2), user_id="emoji-😀"))
    with pytest.raises(ReportRenderError, match="could not be displayed"):
        renderer.pdf(renderer.data_json(data))


def test_html_escapes_data_and_carries_chart_alternatives(renderer):
    data = add_charts(one_student(kpi_row(S=0.5), topics=[("<script>alert(1)</script>", 4, 2)],
                                     user_id="<b>x</b>"))
    html = renderer.html(data).decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html
    assert html.count("<svg") == 3 and 'role="img" aria-label="Ability θ by week' in html
    assert renderer.html(data).decode() == html


# --- a week in the stores ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server():
    patch = pytest.MonkeyPatch()
    s3 = start_s3_server(patch, bucket="reports-test")
    yield s3.endpoint, s3.client
    patch.undo()
    s3.stop()


def test_a_week_in_s3_keys_rows_contents_and_identical_rerun(week_chain, s3_server, renderer):
    engine, (endpoint, client) = week_chain, s3_server
    store = S3Store(bucket="reports-test", prefix="", endpoint_url=endpoint, max_attempts=2)
    students = week_students(engine)
    result = render_week(engine, store, WEEK, TODAY, renderer=renderer)
    assert result.failures == [] and result.reports_written == len(students) == result.students
    listed = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="reports-test",
                                                                                      Prefix="reports/")
              for o in page.get("Contents", [])}
    expected = {report_key(u, WEEK, f) for u in students for f in ("pdf", "html")}
    assert listed == expected
    rows = artifacts(engine)
    assert len(rows) == 2 * len(students)
    for row in rows[:6]:
        key = report_key(row["user_id"], WEEK, row["format"])
        assert row["url"] == f"s3://reports-test/{key}"
        body = client.get_object(Bucket="reports-test", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == row["sha256"] and len(body) == row["file_size_bytes"]

    # One student's figures in both formats: every KPI value and a Korean topic name.
    with engine.connect() as connection:
        rows_of_week = read_week_rows(connection, ReportWeek.of(WEEK, TODAY))
    user_id = next(u for u in students if any(t in KOREAN_TOPICS for t, _, _ in rows_of_week.topics.get(u, []))
                   and (rows_of_week.kpis[u][0] or {}).get("S") is not None)
    data = student_report(rows_of_week, user_id, ReportWeek.of(WEEK, TODAY))
    pdf = pdf_text(client.get_object(Bucket="reports-test", Key=report_key(user_id, WEEK, "pdf"))["Body"].read())
    html = client.get_object(Bucket="reports-test", Key=report_key(user_id, WEEK, "html"))["Body"].read().decode()
    korean = next(t["topic"] for t in data["topics"] if t["topic"] in KOREAN_TOPICS)
    figures = [f"{k['label']} {k['key']} {k['value_text']} {k['change_text']}" for k in data["kpis"]]
    for kpi in data["kpis"]:
        assert f"{kpi['label']}</th><td><code>{kpi['key']}</code></td>" in html
        assert f'<td class="number">{kpi["value_text"]}</td><td class="number">{kpi["change_text"]}</td>' in html
    assert all(line in pdf for line in figures), (figures, pdf)
    assert korean in pdf and korean in html and user_id in pdf and user_id in html
    assert data["churn"]["level"].upper() in pdf and data["week"]["accuracy_text"] in pdf

    again = render_week(engine, store, WEEK, TODAY, renderer=renderer)
    assert again.failures == [] and again.reports_written == len(students)
    rerun = artifacts(engine)
    assert [(r["user_id"], r["format"], r["sha256"], r["file_size_bytes"]) for r in rerun] == [
        (r["user_id"], r["format"], r["sha256"], r["file_size_bytes"]) for r in rows]
    assert all(new["generated_at"] > old["generated_at"] for new, old in zip(rerun, rows))


def test_a_failed_upload_leaves_no_row_the_others_are_written_and_a_retry_redoes_only_it(week_chain, tmp_path,
                                                                                         renderer):
    engine = week_chain
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM report_artifacts WHERE week_start = :w"), {"w": WEEK})
    students = week_students(engine)
    blocked = students[1]
    store = LocalStore(tmp_path / "store")
    # A real failure: a file where the student's folder must go makes both writes fail.
    (tmp_path / "store" / "reports").mkdir(parents=True)
    (tmp_path / "store" / "reports" / user_segment(blocked)).write_bytes(b"in the way")
    started = datetime.now(timezone.utc)
    first = render_week(engine, store, WEEK, TODAY, renderer=renderer)
    assert [(f.user_id, f.stage) for f in first.failures] == [(blocked, "upload")]
    assert first.reports_written == len(students) - 1
    recorded = {r["user_id"] for r in artifacts(engine)}
    assert blocked not in recorded and recorded == set(students) - {blocked}

    (tmp_path / "store" / "reports" / user_segment(blocked)).unlink()
    retry = render_week(engine, store, WEEK, TODAY, renderer=renderer, done_since=started)
    assert retry.students == 1 and retry.reports_written == 1 and not retry.failures
    assert {r["user_id"] for r in artifacts(engine)} == set(students)
    assert store.path_of(report_key(blocked, WEEK, "html")).read_bytes().startswith(b"<!DOCTYPE html>")


def test_unreadable_figures_fail_one_student_and_hostile_ids_stay_in_the_store(week_chain, tmp_path, renderer):
    engine = week_chain  # rows of OTHER_WEEK only, removed at the end (the module's data stays)
    hostile = ["../../escape", "..", "김 민/수", "y" * 256]
    with engine.begin() as connection:
        for user_id in hostile + ["broken"]:
            connection.execute(sa.text(
                "INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES (:u, :w, CAST(:k AS jsonb))"),
                {"u": user_id, "w": OTHER_WEEK,
                 "k": json.dumps({"I_t": "abc"} if user_id == "broken" else {"I_t": 0.1, "S": 0.2})})
    root = tmp_path / "store"
    result = render_week(engine, LocalStore(root), OTHER_WEEK, TODAY, renderer=renderer, thumbnail=False)
    assert [(f.user_id, f.stage) for f in result.failures] == [("broken", "data")]
    assert "kpis['I_t'] of user 'broken'" in result.failures[0].error
    assert result.reports_written == len(hostile)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 * len(hostile) and all(p.is_relative_to(root / "reports") for p in files)
    assert {r["user_id"] for r in artifacts(engine, OTHER_WEEK)} == set(hostile)
    with engine.begin() as connection:
        for table in ("weekly_kpi", "report_artifacts"):
            connection.execute(sa.text(f"DELETE FROM {table} WHERE week_start = :w"), {"w": OTHER_WEEK})


# --- Dagster: asset, lineage, schedule; and the command -------------------------------------

def test_lineage_job_and_schedule_of_weekly_reports():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("weekly_reports"))
    assert {k.to_user_string() for k in node.parent_keys} == {"weekly_kpi", "features_topic_daily", "mirt_ability"}
    assert node.pools == {"weekly_reports"} and node.owners == ["team:learning-analytics"]
    assert node.metadata["dagster/table_name"] == "report_artifacts"
    assert [c.name for c in node.metadata["dagster/column_schema"].schema.columns][:4] == [
        "id", "user_id", "week_start", "format"]
    job = defs.resolve_job_def("render_weekly_reports")
    assert job.tags["seedtest/work"] == "weekly_reports"
    schedule = defs.resolve_schedule_def("weekly_reports_0400")
    assert schedule.cron_schedule == "0 4 * * 1" and schedule.execution_timezone == "UTC"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc))
        request = weekly_reports_schedule(context)
    assert request.partition_key == "2026-11-16"


def test_the_asset_reports_counts_split_links_and_a_thumbnail_then_fails_on_a_bad_student(week_chain, database_url,
                                                                                         tmp_path):
    engine = week_chain
    resources = {
        "warehouse": WarehouseResource(database_url=database_url),
        "object_store": ObjectStoreResource(local_dir=str(tmp_path / "store")),
    }
    config = {"ops": {"weekly_reports": {"config": {"chunk_count": 4, "chunks": [0]}}}}
    chunk_students = [u for u in week_students(engine) if report_chunk(u, 4) == 0]
    with dg.instance_for_test() as instance:
        run = dg.materialize([weekly_reports], resources=resources, instance=instance, partition_key=str(WEEK),
                             run_config=config)
        (materialization,) = run.asset_materializations_for_node("weekly_reports")
        metadata = materialization.metadata
        assert metadata["reports_written"].value == len(chunk_students) > 0
        assert metadata["dagster/partition_row_count"].value == len(artifacts(engine))
        assert set(metadata["time_split"].value.split("|")) >= {" data ", " charts ", " pdf ", " html ", " upload "}
        assert metadata["first_page"].value.count("data:image/png;base64,iVBOR") == 1
        assert metadata["link_0_pdf"].value.startswith("file://")

        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE weekly_kpi SET kpis = kpis || '{\"S\": \"high\"}' "
                                       "WHERE user_id = :u AND week_start = :w"), {"u": chunk_students[0], "w": WEEK})
        try:
            failed = dg.materialize([weekly_reports], resources=resources, instance=instance, partition_key=str(WEEK),
                                    run_config=config, raise_on_error=False)
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE weekly_kpi SET kpis = kpis - 'S' || jsonb_build_object('S', 0.5) "
                                           "WHERE user_id = :u AND week_start = :w"),
                                   {"u": chunk_students[0], "w": WEEK})
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    info = failure.step_failure_data
    assert f"1 of {len(chunk_students)} students" in info.error.message
    assert chunk_students[0] in info.user_failure_data.metadata["failed_students"].value
    assert info.user_failure_data.metadata["reports_written"].value == len(chunk_students) - 1


def test_the_report_command_renders_one_student_to_a_folder(week_chain, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    user_id = week_students(week_chain)[0]
    assert cli_main(["report", user_id, str(WEEK), "--out", str(tmp_path / "out")]) == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"report.pdf", "report.html", "report.json"}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["user_id"] == user_id
    assert user_id in pdf_text((tmp_path / "out" / "report.pdf").read_bytes())
    assert cli_main(["report", "nobody", str(WEEK), "--out", str(tmp_path / "none")]) == 2
    assert "no weekly_kpi row and no activity" in capsys.readouterr().err
    assert cli_main(["report", user_id, "2026-11-17"]) == 2  # not a Monday
