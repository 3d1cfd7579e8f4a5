"""Markdown for Dagster metadata: tables that render whatever the data holds.

Cells can hold anything a platform row holds (a `|`, a newline, 3,000 characters), so every cell
is escaped and cut to a readable length before it goes into a table.
"""

from __future__ import annotations

MAX_CELL_CHARS = 80


def cell(value) -> str:
    """One table cell: None as empty, `|` and backslashes escaped, line breaks as spaces, long
    values cut with an ellipsis."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())  # line breaks and tabs would end the row
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(rows: list[dict], empty: str = "_no rows_") -> str:
    """A markdown table of `rows` (dicts sharing the first row's keys, in that order)."""
    if not rows:
        return empty
    header = list(rows[0])
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row.get(h)) for h in header) + " |" for row in rows]
    return "\n".join(lines)
