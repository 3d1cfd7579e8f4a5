"""One data object per student and week: what the report templates show (SPEC §6).

The week is read set-based: one temporary table of the week's students (or of a chunk of them),
then four queries (KPIs of this and the previous week, accuracy per topic, attempts per day, the
θ trend) for all of them at once, never a query per student. Each student's object is then
assembled in Python; a student whose stored figures are unreadable raises ReportDataError for
that student only.

The object (a dict, JSON-ready; the templates read these fields):
    user_id, week_start, week_end, as_of       text (dates ISO)
    week_label                                 "2026-11-16 – 2026-11-22"
    kpis       six rows in SPEC order: key, label, value (float|None), value_text, previous,
               change (float|None), change_text; *_text is "no data" where a figure is missing
    churn      {value, value_text, level: "low"|"medium"|"high"|None, level_text}
    week       {attempts, correct, accuracy, accuracy_text, active_days}
    theta      8 rows, oldest first: week_start, label, theta, se, text ("θ 0.21 ± 0.30")
    theta_axis {min, max, ticks: [{value, label}]}: the θ chart's vertical axis
    topics     rows sorted by attempts then name: topic, attempts, correct, accuracy, accuracy_text
    days       7 rows Monday..Sunday: date, label ("Mon 11-16"), attempts (0 is a real zero)
    recommendations  rows: kind ("warning"|"action"|"praise"|"note"), text, because
    alt        {theta, topics, days}: the charts' alternative text (PDF image alt, HTML aria-label)
    charts     {theta, topics, days}: SVG documents (added by add_charts), inline in the HTML and
               images in the PDF
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline.kpi import KPI_LABELS
from seedtest_pipeline.queries import sql_text
from seedtest_pipeline.reports import charts
from seedtest_pipeline.windows import day_start, week_as_of

TREND_WEEKS = 8
MISSING = "no data"
CHURN_MEDIUM, CHURN_HIGH = 0.3, 0.7  # SPEC §6: low < 0.3 <= medium < 0.7 <= high
# Each KPI's range (SPEC §4); a stored value outside it is bad data, not something to draw.
KPI_RANGES = {"I_t": (-1.0, 1.0), "E_t": (0.0, 1.0), "R_t": (0.0, 1.0), "A_t": (0.0, 1.0),
              "P": (0.0, 1.0), "S": (0.0, 1.0)}
WEAK_TOPIC_ACCURACY = 0.6
WEAK_TOPIC_MIN_ATTEMPTS = 5
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ReportDataError(ValueError):
    """A student's stored figures cannot be shown (named: user, week, field, value)."""


def report_chunk(user_id: str, chunk_count: int) -> int:
    """The chunk a student's reports belong to: stable across runs, machines and languages
    (the first 32 bits of md5(user_id), as report_students.sql computes it)."""
    return int(hashlib.md5(user_id.encode("utf-8")).hexdigest()[:8], 16) % chunk_count


@dataclass(frozen=True)
class ReportWeek:
    """The ISO week a report describes and the dates it reads."""

    week_start: date
    as_of: date

    @classmethod
    def of(cls, week_start: date, today: date) -> "ReportWeek":
        return cls(week_start, week_as_of(week_start, today))  # raises unless an ISO Monday

    @property
    def week_end(self) -> date:
        return self.week_start + timedelta(days=7)

    def trend_weeks(self) -> list[date]:
        return [self.week_start - timedelta(days=7 * n) for n in range(TREND_WEEKS - 1, -1, -1)]

    def trend_ends(self) -> list[datetime]:
        # The report's own week ends at its as-of day (the running week: yesterday), as its KPIs do.
        as_of_end = day_start(self.as_of + timedelta(days=1))
        return [min(day_start(week + timedelta(days=7)), as_of_end) for week in self.trend_weeks()]

    def params(self, chunk_count: int = 1, chunks: list[int] | None = None,
               done_since: datetime | None = None, user_ids: list[str] | None = None) -> dict:
        return {
            "week_start": self.week_start,
            "week_end": self.week_end,
            "previous_week_start": self.week_start - timedelta(days=7),
            "trend_weeks": self.trend_weeks(),
            "trend_ends": self.trend_ends(),
            "chunk_count": chunk_count,
            "chunks": list(range(chunk_count)) if chunks is None else list(chunks),
            "done_since": done_since,
            "user_ids": user_ids,
        }


@dataclass
class WeekRows:
    """Everything the week's reports read, grouped by student (from five set-based queries)."""

    user_ids: list[str]
    kpis: dict[str, tuple[dict | None, dict | None]]
    topics: dict[str, list[tuple[str, int, int]]]
    days: dict[str, dict[date, int]]
    theta: dict[str, dict[date, tuple[float, float | None]]]


def read_week_rows(connection: Connection, week: ReportWeek, chunk_count: int = 1,
                   chunks: list[int] | None = None, done_since: datetime | None = None,
                   user_ids: list[str] | None = None) -> WeekRows:
    """Read the week for all its students (of the given chunks, or the given users) in the
    caller's transaction."""
    params = week.params(chunk_count, chunks, done_since, user_ids)
    connection.execute(sa.text("DROP TABLE IF EXISTS pg_temp.report_students"))
    connection.execute(
        sa.text(f"CREATE TEMP TABLE report_students ON COMMIT DROP AS {sql_text('report_students')}"), params
    )
    connection.execute(sa.text("ANALYZE report_students"))  # temp tables have no statistics otherwise
    rows = WeekRows([], {}, defaultdict(list), defaultdict(dict), defaultdict(dict))
    for row in connection.execute(sa.text(sql_text("report_kpis")), params):
        rows.user_ids.append(row.user_id)
        rows.kpis[row.user_id] = (row.kpis, row.previous_kpis)
    for row in connection.execute(sa.text(sql_text("report_topics")), params):
        rows.topics[row.user_id].append((row.topic_id, int(row.attempts), int(row.correct)))
    for row in connection.execute(sa.text(sql_text("report_days")), params):
        rows.days[row.user_id][row.date] = int(row.attempts)
    for row in connection.execute(sa.text(sql_text("report_theta")), params):
        rows.theta[row.user_id][row.week_start] = (row.theta, row.se)
    connection.execute(sa.text("DROP TABLE pg_temp.report_students"))
    return rows


def student_report(rows: WeekRows, user_id: str, week: ReportWeek) -> dict:
    """The data object of one student (see the module docstring); ReportDataError if unreadable."""
    current, previous = rows.kpis.get(user_id, (None, None))
    kpis = []
    for key, label in KPI_LABELS.items():
        value = _kpi_value(current, key, user_id, week.week_start)
        before = _kpi_value(previous, key, user_id, week.week_start - timedelta(days=7))
        change = None if value is None or before is None else value - before
        kpis.append({
            "key": key, "label": label, "value": value, "value_text": _number(value),
            "previous": before, "change": change, "change_text": _number(change, signed=True),
        })
    churn_value = next(row["value"] for row in kpis if row["key"] == "S")
    churn = {"value": churn_value, "value_text": _number(churn_value),
             "level": churn_level(churn_value), "level_text": churn_level(churn_value) or MISSING}

    topics = sorted(
        ({"topic": topic, "attempts": attempts, "correct": correct, "accuracy": correct / attempts,
          "accuracy_text": _percent(correct / attempts)}
         for topic, attempts, correct in rows.topics.get(user_id, ()) if attempts > 0),
        key=lambda t: (-t["attempts"], t["topic"]),
    )
    attempts_by_day = rows.days.get(user_id, {})
    days = [{"date": (week.week_start + timedelta(days=n)).isoformat(),
             "label": f"{WEEKDAYS[n]} {week.week_start + timedelta(days=n):%m-%d}",
             "attempts": attempts_by_day.get(week.week_start + timedelta(days=n), 0)} for n in range(7)]
    attempts = sum(t["attempts"] for t in topics)
    correct = sum(t["correct"] for t in topics)
    week_summary = {
        "attempts": attempts, "correct": correct,
        "accuracy": correct / attempts if attempts else None,
        "accuracy_text": _percent(correct / attempts) if attempts else MISSING,
        "active_days": sum(1 for d in days if d["attempts"]),
    }
    history = rows.theta.get(user_id, {})
    theta = []
    for trend_week in week.trend_weeks():
        estimate, se = history.get(trend_week, (None, None))
        if estimate is not None and not math.isfinite(estimate):
            raise ReportDataError(f"mirt_ability θ of {user_id!r} as of week {trend_week}: {estimate!r}")
        theta.append({
            "week_start": trend_week.isoformat(), "label": f"{trend_week:%m-%d}", "theta": estimate, "se": se,
            "text": MISSING if estimate is None else (
                f"θ {estimate:+.2f} ± {se:.2f}" if se is not None else f"θ {estimate:+.2f} (se unknown)"),
        })

    alt = {
        "theta": "Ability θ by week, last 8 weeks (week starting, estimate ± standard error): "
                 + "; ".join(f"{t['label']} {t['text']}" for t in theta) + ".",
        "topics": "Accuracy by topic this week: "
                  + ("; ".join(f"{t['topic']} {t['accuracy_text']} of {t['attempts']} attempts" for t in topics)
                     if topics else "no attempts") + ".",
        "days": "Attempts per day this week: " + "; ".join(f"{d['label']} {d['attempts']}" for d in days) + ".",
    }
    data = {
        "user_id": user_id,
        "week_start": week.week_start.isoformat(),
        "week_end": (week.week_end - timedelta(days=1)).isoformat(),
        "as_of": week.as_of.isoformat(),
        "week_label": f"{week.week_start} – {week.week_end - timedelta(days=1)}",
        "kpis": kpis,
        "churn": churn,
        "week": week_summary,
        "theta": theta,
        "theta_axis": charts.theta_axis(theta),
        "topics": topics,
        "days": days,
        "alt": alt,
    }
    data["recommendations"] = recommendations(data)
    return data


def add_charts(data: dict) -> dict:
    """The object with its three SVG charts (drawn from its own figures)."""
    data["charts"] = {
        "theta": charts.theta_chart(data["theta"], data["theta_axis"], data["alt"]["theta"]),
        "topics": charts.topic_chart(data["topics"], data["alt"]["topics"]),
        "days": charts.days_chart(data["days"], data["alt"]["days"]),
    }
    return data


def churn_level(churn_risk: float | None) -> str | None:
    if churn_risk is None:
        return None
    return "high" if churn_risk >= CHURN_HIGH else "medium" if churn_risk >= CHURN_MEDIUM else "low"


def recommendations(data: dict) -> list[dict]:
    """What the figures suggest, each with the figure it follows from.

    Praise is earned by a figure and withheld at high churn risk: a student drifting away is
    reached out to, not congratulated.
    """
    kpi = {row["key"]: row["value"] for row in data["kpis"]}
    level = data["churn"]["level"]
    week = data["week"]
    found: list[dict] = []

    def add(kind: str, text: str, because: str) -> None:
        found.append({"kind": kind, "text": text, "because": because})

    if level == "high":
        add("warning", "High risk of dropping out: reach out this week and agree on a short, regular study time.",
            f"Churn risk S = {kpi['S']:.2f} (high from {CHURN_HIGH})")
    elif level == "medium":
        add("action", "Study rhythm is slipping: plan a short session every two or three days.",
            f"Churn risk S = {kpi['S']:.2f} (medium from {CHURN_MEDIUM})")
    if week["attempts"] == 0:
        add("action", "No questions answered this week: start again with one short session.", "0 attempts this week")
    weak = [t for t in data["topics"]
            if t["attempts"] >= WEAK_TOPIC_MIN_ATTEMPTS and t["accuracy"] < WEAK_TOPIC_ACCURACY]
    for topic in sorted(weak, key=lambda t: (t["accuracy"], t["topic"]))[:2]:
        add("action", f"Review {topic['topic']}: go over this week's wrong answers before new questions.",
            f"{topic['topic']}: {topic['correct']} of {topic['attempts']} correct ({topic['accuracy_text']})")
    if kpi["I_t"] is not None and kpi["I_t"] <= -0.05:
        add("action", "Accuracy fell compared with the two weeks before: slow down and check each answer.",
            f"Improvement I_t = {kpi['I_t']:+.2f}")
    if kpi["R_t"] is not None and kpi["R_t"] < 0.5:
        add("action", "Earlier mistakes are often repeated: retry wrong answers a few days later.",
            f"Recovery R_t = {kpi['R_t']:.2f}")
    if kpi["A_t"] is not None and kpi["A_t"] < 0.4:
        add("action", "Engagement is low: shorter, more frequent sessions help.", f"Engagement A_t = {kpi['A_t']:.2f}")
    if kpi["P"] is not None and kpi["P"] < 0.3:
        add("action", "The goal is not yet in reach: focus on the weakest topics first.",
            f"Goal probability P = {kpi['P']:.2f}")
    if kpi["I_t"] is not None and kpi["I_t"] >= 0.05:
        add("praise", "Accuracy is improving: well done.", f"Improvement I_t = {kpi['I_t']:+.2f}")
    if kpi["R_t"] is not None and kpi["R_t"] >= 0.8:
        add("praise", "Most earlier mistakes are now answered correctly.", f"Recovery R_t = {kpi['R_t']:.2f}")
    if kpi["E_t"] is not None and kpi["E_t"] >= 0.1:
        add("praise", "Correct answers come faster than before.", f"Efficiency E_t = {kpi['E_t']:.2f}")
    if kpi["P"] is not None and kpi["P"] >= 0.7:
        add("praise", "On track for the goal.", f"Goal probability P = {kpi['P']:.2f}")
    if level == "high":
        found = [r for r in found if r["kind"] != "praise"]
    if not found:
        add("note", "No figure calls for a change this week.", "all figures within their usual ranges or missing")
    return found


def _kpi_value(kpis: dict | None, key: str, user_id: str, week_start: date) -> float | None:
    value = None if kpis is None else kpis.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportDataError(
            f"weekly_kpi.kpis['{key}'] of user {user_id!r}, week {week_start}: {value!r} is not a number")
    low, high = KPI_RANGES[key]
    if not low <= value <= high:
        raise ReportDataError(
            f"weekly_kpi.kpis['{key}'] of user {user_id!r}, week {week_start}: {value!r} outside [{low}, {high}]")
    return float(value)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return MISSING
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return "0.00" if text in ("-0.00", "+0.00") and signed else text


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"
