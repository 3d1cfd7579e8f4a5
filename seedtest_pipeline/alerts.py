"""Run-failure alerts: what the message says. Plain Python; the sensor (alert_sensor.py) and the
HTTP client (resources/alerts.py) are the Dagster and I/O sides.

The payload is Slack's incoming-webhook format, `{"text": ...}` in Slack mrkdwn, which Mattermost,
Rocket.Chat and Discord's Slack-compatible endpoint accept as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from seedtest_pipeline.warehouse import scrub

# One screen line or two of the error: the link leads to the whole traceback.
ERROR_LIMIT = 300


@dataclass(frozen=True)
class RunFailure:
    job: str
    run_id: str
    error: str
    partition: str | None = None


def partition_label(partition: str | None, range_start: str | None, range_end: str | None) -> str | None:
    """One partition, or the range of a single-run backfill ("2026-11-02...2026-11-08")."""
    if partition:
        return partition
    if range_start and range_end:
        return range_start if range_start == range_end else f"{range_start}...{range_end}"
    return None


def run_url(ui_base_url: str, run_id: str) -> str:
    return f"{ui_base_url.rstrip('/')}/runs/{run_id}"


def short_error(error: str, limit: int = ERROR_LIMIT) -> str:
    """The error on one line, cut at `limit` characters, with passwords masked (SQLAlchemy and
    libpq errors can quote a connection URL, and the alert goes to a chat channel)."""
    one_line = " ".join(scrub(error).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"


def _escape(text: str) -> str:
    # Slack mrkdwn gives &, < and > a meaning (entities, links); everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def failure_message(failure: RunFailure, ui_base_url: str) -> dict[str, str]:
    """The webhook payload: job, partition, error, and a link to the run in the Dagster UI."""
    headline = f":rotating_light: Dagster run failed: *{_escape(failure.job)}*"
    if failure.partition:
        headline += f", partition `{_escape(failure.partition)}`"
    lines = [
        headline,
        f"> {_escape(short_error(failure.error) or 'no error message')}",
        f"<{run_url(ui_base_url, failure.run_id)}|Run {failure.run_id[:8]} in the Dagster UI>",
    ]
    return {"text": "\n".join(lines)}
