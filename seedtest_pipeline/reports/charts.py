"""The report's charts as small SVG documents, drawn from a student's report data.

The same SVG goes inline into the HTML report and, as a vector image with alternative text, into
the PDF (typst converts it to PDF vectors and keeps its text as text), so one drawing serves both
formats. Drawing is string building: about a tenth of a millisecond per chart, where a
matplotlib figure costs ~40 ms. (Drawing the PDF's charts with typst's own shapes instead was
measured: no faster, since typst then lays out the same labels.)

Every text that comes from data (topic names, week labels) is XML-escaped. Missing figures are
left out of the drawing (a gap in the θ line, no bar), never drawn as 0.
"""

from __future__ import annotations

import math

from markupsafe import escape

FONT = "NanumGothic"  # ships with the project's dependencies (koreanize-matplotlib wheel)
INK = "#1f2933"
MUTED = "#8a94a0"
GRID = "#e3e7eb"
ACCENT = "#2f6fb3"
BAND = "#c9dcf0"
BAR = "#4c8bc9"
WARN = "#c2553a"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    # role/aria-label give the inline HTML chart its alternative text; <title> does the same for
    # SVG viewers. The PDF carries the same text as the image's alt.
    label = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        f'font-family="{FONT}" font-size="11" fill="{INK}"><title>{label}</title>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, content: str, anchor: str = "start", size: int = 11, fill: str = INK) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">'
            f"{escape(content)}</text>")


def theta_axis(points: list[dict]) -> dict:
    """The θ chart's vertical axis: at least -1..1, widened to every estimate ± se, in steps of
    0.5 (1.0 beyond a range of 4)."""
    known = [p for p in points if p["theta"] is not None]
    lows = [p["theta"] - (p["se"] or 0) for p in known] or [-1.0]
    highs = [p["theta"] + (p["se"] or 0) for p in known] or [1.0]
    low = math.floor(min(-1.0, min(lows)) * 2) / 2
    high = math.ceil(max(1.0, max(highs)) * 2) / 2
    step = 0.5 if high - low <= 4 else 1.0
    ticks = [low + step * n for n in range(int(round((high - low) / step)) + 1)]
    return {"min": low, "max": high,
            "ticks": [{"value": t, "label": f"{t:+.1f}" if t else "0"} for t in ticks]}


def theta_chart(points: list[dict], axis: dict, alt: str) -> str:
    """θ per week with a ±se band (error bars); weeks without an estimate are gaps."""
    width, height, left, right, top, bottom = 520, 160, 44, 12, 12, 26
    known = [p for p in points if p["theta"] is not None]
    y_min, y_max = axis["min"], axis["max"]
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(points), 1)

    def x_of(i: int) -> float:
        return left + step * (i + 0.5)

    def y_of(value: float) -> float:
        return top + plot_h * (y_max - value) / (y_max - y_min)

    body = []
    for tick in axis["ticks"]:
        y = y_of(tick["value"])
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, tick["label"], "end", 10, MUTED))
    for i, point in enumerate(points):
        body.append(_text(x_of(i), height - 10, point["label"], "middle", 10, MUTED))
    for i, point in enumerate(points):
        if point["theta"] is None or point["se"] is None:
            continue
        x, y_low, y_high = x_of(i), y_of(point["theta"] - point["se"]), y_of(point["theta"] + point["se"])
        body.append(f'<rect x="{x - 7:.1f}" y="{y_high:.1f}" width="14" height="{y_low - y_high:.1f}" '
                    f'fill="{BAND}" rx="2"/>')
    segment: list[str] = []
    for i, point in enumerate(points + [{"theta": None}]):
        if point["theta"] is not None:
            segment.append(f"{x_of(i):.1f},{y_of(point['theta']):.1f}")
            continue
        if len(segment) > 1:
            body.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
        segment = []
    for i, point in enumerate(points):
        if point["theta"] is not None:
            body.append(f'<circle cx="{x_of(i):.1f}" cy="{y_of(point["theta"]):.1f}" r="3.5" fill="{ACCENT}"/>')
    if not known:
        body.append(_text(left + plot_w / 2, top + plot_h / 2, "no ability estimate yet", "middle", 12, MUTED))
    return _svg(width, height, alt, body)


def topic_chart(topics: list[dict], alt: str) -> str:
    """Accuracy per topic as horizontal bars (0-100 %), with correct/attempts beside each bar."""
    row, left, right, top = 22, 120, 110, 6
    width = 520
    height = top * 2 + row * max(len(topics), 1)
    plot_w = width - left - right
    body = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - top}" stroke="{GRID}"/>']
    for i, topic in enumerate(topics):
        y = top + i * row
        body.append(_text(left - 8, y + 15, _shorten(topic["topic"], 16), "end"))
        bar = plot_w * topic["accuracy"]
        body.append(f'<rect x="{left}" y="{y + 4}" width="{max(bar, 1):.1f}" height="{row - 8}" fill="{BAR}" rx="2"/>')
        body.append(_text(left + bar + 6, y + 15, f"{topic['accuracy_text']} ({topic['correct']}/{topic['attempts']})",
                          size=10, fill=MUTED))
    if not topics:
        body.append(_text(left + 6, top + 15, "no attempts this week", fill=MUTED))
    return _svg(width, height, alt, body)


def days_chart(days: list[dict], alt: str) -> str:
    """Attempts per day of the week as vertical bars with the count above each."""
    width, height, left, top, bottom = 520, 110, 20, 16, 22
    plot_h = height - top - bottom
    step = (width - 2 * left) / len(days)
    most = max((d["attempts"] for d in days), default=0) or 1
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="{GRID}"/>']
    for i, day in enumerate(days):
        x = left + step * i
        bar = plot_h * day["attempts"] / most
        if day["attempts"]:
            body.append(f'<rect x="{x + step * 0.2:.1f}" y="{top + plot_h - bar:.1f}" width="{step * 0.6:.1f}" '
                        f'height="{bar:.1f}" fill="{BAR}" rx="2"/>')
        body.append(_text(x + step / 2, top + plot_h - bar - 4, str(day["attempts"]), "middle", 10))
        body.append(_text(x + step / 2, height - 8, day["label"], "middle", 10, MUTED))
    return _svg(width, height, alt, body)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
