"""The alert webhook: the pipeline's only door to the chat channel (a Slack-compatible webhook)."""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass

import dagster as dg
import requests
from pydantic import Field

WEBHOOK_URL_VARIABLE = "SEEDTEST_ALERT_WEBHOOK_URL"
UI_BASE_URL_VARIABLE = "SEEDTEST_UI_BASE_URL"
LOCAL_UI = "http://127.0.0.1:3000"

# Worth another try: the server or something on the way is busy or restarting. Any other answer
# (a 404 of a deleted webhook, a 400 of a bad payload) will not change by asking again.
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# urllib3 logs each request's path at DEBUG, and a webhook's path is its secret.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

# When this process last gave up on a webhook URL (time.monotonic()). A sensor evaluation must
# end within Dagster's sensor timeout (60 s), or its cursor is not saved and every alert of the
# tick comes again: so after one message failed all its attempts, the next ones to that URL
# within `pause_after_failure_seconds` are not tried (and logged as not delivered). A new URL
# (a rotated webhook) starts afresh.
_gave_up_at: dict[str, float] = {}


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    detail: str  # "HTTP 200", "ConnectTimeout", ...: never the URL


class AlertWebhookResource(dg.ConfigurableResource):
    """Posts alert messages to the webhook of $SEEDTEST_ALERT_WEBHOOK_URL.

    The URL is a secret (whoever has it can post to the channel), so it is never part of this
    resource's config, which the UI displays: it is read from the environment when posting, and
    no log line, exception text or metadata ever contains it. `post` never raises.
    """

    ui_base_url: str = Field(
        "", description=f"Dagster UI address, for links to runs; empty: ${UI_BASE_URL_VARIABLE}, else {LOCAL_UI}."
    )
    timeout_seconds: float = Field(5.0, description="Connect and read timeout of one attempt.")
    attempts: int = Field(3, description="Attempts per message (connection errors, timeouts, 429 and 5xx retried).")
    backoff_seconds: float = Field(
        1.0, description="Longest wait before the second attempt; doubles per attempt, full jitter."
    )
    pause_after_failure_seconds: float = Field(
        120.0, description="After a message failed every attempt, later ones within this time are not tried."
    )

    def configured(self) -> bool:
        return bool(os.environ.get(WEBHOOK_URL_VARIABLE, "").strip())

    def ui_url(self) -> str:
        return self.ui_base_url or os.environ.get(UI_BASE_URL_VARIABLE, "").strip() or LOCAL_UI

    def post(self, payload: dict) -> Delivery:
        """At most `attempts` tries, each under 2 x `timeout_seconds` (connect, then read): with
        the defaults a dead webhook costs one evaluation under 35 s, and the next ones nothing."""
        url = os.environ.get(WEBHOOK_URL_VARIABLE, "").strip()
        if not url:
            return Delivery(False, 0, f"${WEBHOOK_URL_VARIABLE} is not set")
        if time.monotonic() - _gave_up_at.get(url, float("-inf")) < self.pause_after_failure_seconds:
            pause = f"{self.pause_after_failure_seconds:g} s"
            return Delivery(False, 0, f"not tried, the webhook failed less than {pause} ago")
        detail = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = requests.post(url, json=payload, timeout=self.timeout_seconds)
            except requests.RequestException as error:
                # The exception's message quotes the URL: keep only its kind.
                detail = type(error).__name__
            else:
                detail = f"HTTP {response.status_code}"
                if response.ok:
                    _gave_up_at.pop(url, None)
                    return Delivery(True, attempt, detail)
                if response.status_code not in RETRIED_STATUSES:
                    return Delivery(False, attempt, f"{detail}, not retried")
            if attempt < self.attempts:
                time.sleep(random.uniform(0, self.backoff_seconds * 2 ** (attempt - 1)))
        _gave_up_at[url] = time.monotonic()
        return Delivery(False, self.attempts, detail)
