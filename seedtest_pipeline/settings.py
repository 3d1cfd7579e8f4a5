"""The pipeline's settings: every environment variable it reads, validated once at start-up.

The code location (definitions.py) and the command line (cli.py) call `load_settings()` before
anything else: a missing or malformed value stops them with one line per problem, each naming its
variable, and never quoting a secret (a URL is shown with its password masked, the webhook URL not
at all).

Where a value is required depends on SEEDTEST_ENV, which the deploy manifests set (deploy/base,
the overlays): `local` (the default) needs nothing, because every value has a working default
(the embedded PostgreSQL, the local object store under $SEEDTEST_HOME, the local UI address);
`staging` and `prod` require what a deployed pipeline cannot guess (REQUIRED_WHEN_DEPLOYED).
The alert webhook is not among them: a missing webhook must not stop the data, so
`seedtest-pipeline check` (the post-deploy smoke test) reports it instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from seedtest_pipeline.warehouse import masked_url

ENVIRONMENTS = ("local", "staging", "prod")
DEFAULT_FIRST_DAY = "2025-01-06"
DEFAULT_BACKFILL_CONNECTIONS = 2
MAX_BACKFILL_CONNECTIONS = 32

ENV = "SEEDTEST_ENV"
DATABASE_URL = "DATABASE_URL"
DAGSTER_PG_URL = "SEEDTEST_DAGSTER_PG_URL"
FIRST_DAY = "SEEDTEST_FIRST_DAY"
BACKFILL_CONNECTIONS = "SEEDTEST_BACKFILL_CONNECTIONS"
UI_BASE_URL = "SEEDTEST_UI_BASE_URL"
ALERT_WEBHOOK_URL = "SEEDTEST_ALERT_WEBHOOK_URL"
REPORTS_BUCKET = "SEEDTEST_REPORTS_BUCKET"
REPORTS_PREFIX = "SEEDTEST_REPORTS_PREFIX"
REPORTS_REGION = "SEEDTEST_REPORTS_REGION"
REPORTS_ENDPOINT_URL = "SEEDTEST_REPORTS_ENDPOINT_URL"
REPORTS_DIR = "SEEDTEST_REPORTS_DIR"
ONLINE_UPDATE = "ENABLE_IRT_ONLINE_UPDATE"  # the original's switch for the online θ update

# What a deployed pipeline cannot do without: its warehouse and Dagster storage (through the
# proxy sidecar), the bucket the reports go to, and the UI address alert links point at.
REQUIRED_WHEN_DEPLOYED = (DATABASE_URL, DAGSTER_PG_URL, REPORTS_BUCKET, UI_BASE_URL)


class SettingsError(ValueError):
    """One or more settings are missing or malformed; `problems` holds one line per variable."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  {problem}" for problem in problems))


class _Malformed(ValueError):
    """A value that cannot be used; the message says why without repeating a secret."""


def _postgres_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme.startswith(("postgresql", "postgres")) or not parts.netloc and "host=" not in parts.query:
        raise _Malformed(f"{masked_url(value)!r} is not a PostgreSQL URL "
                         "(postgresql://user:password@host:port/database)")
    if not parts.path.strip("/"):
        raise _Malformed(f"{masked_url(value)!r} names no database")
    return value


def _dagster_pg_url(value: str) -> str:
    _postgres_url(value)
    if not value.startswith("postgresql+psycopg2://"):
        # SQLAlchemy 2.1 maps any other scheme to psycopg 3, which dagster-postgres cannot use.
        raise _Malformed(f"{masked_url(value)!r} must start with postgresql+psycopg2:// "
                         "(dagster-postgres speaks psycopg2)")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Malformed(f"{masked_url(value)!r} is not an http(s) URL")
    return value.rstrip("/")


def _secret_http_url(value: str) -> str:
    # The webhook URL is its own secret (whoever has it can post): never repeated in a message.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Malformed("is not an http(s) URL (value not shown: it is a secret)")
    return value


def _monday(value: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _Malformed(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    if day.weekday() != 0:
        # Daily and weekly partitions start together only on an ISO Monday.
        raise _Malformed(f"{value} is a {day:%A}; it must be a Monday")
    return day


def _connections(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise _Malformed(f"{value!r} is not a whole number") from None
    if not 1 <= count <= MAX_BACKFILL_CONNECTIONS:
        raise _Malformed(f"{count} is outside 1..{MAX_BACKFILL_CONNECTIONS}")
    return count


def _environment(value: str) -> str:
    if value not in ENVIRONMENTS:
        raise _Malformed(f"{value!r} is not one of {', '.join(ENVIRONMENTS)}")
    return value


def _text(value: str) -> str:
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _boolean(value: str) -> bool:
    if value.lower() not in _TRUE | _FALSE:
        raise _Malformed(f"{value!r}: expected true or false (1/0, yes/no, on/off)")
    return value.lower() in _TRUE


def _read(environ: Mapping[str, str], name: str, parse: Callable[[str], object], default, problems: list[str]):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except _Malformed as error:
        problems.append(f"{name}: {error}")
        return default


@dataclass(frozen=True)
class Settings:
    """The validated settings; an empty string or None means "use the local default"."""

    environment: str
    database_url: str | None
    dagster_pg_url: str | None
    first_day: date
    backfill_connections: int
    ui_base_url: str | None
    alert_webhook_url: str | None
    reports_bucket: str | None
    reports_prefix: str
    reports_region: str | None
    reports_endpoint_url: str | None
    reports_dir: str | None
    online_update_enabled: bool

    @property
    def deployed(self) -> bool:
        """Running on Kubernetes (staging or prod), as the manifests say."""
        return self.environment != "local"

    def __repr__(self) -> str:  # a settings object may end up in a log line or a traceback
        return (f"Settings(environment={self.environment!r}, database_url="
                f"{masked_url(self.database_url) if self.database_url else None!r}, "
                f"reports_bucket={self.reports_bucket!r}, webhook={'set' if self.alert_webhook_url else 'not set'})")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming each bad or missing variable."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    environment = _read(environ, ENV, _environment, "local", problems)
    settings = Settings(
        environment=environment,
        database_url=_read(environ, DATABASE_URL, _postgres_url, None, problems),
        dagster_pg_url=_read(environ, DAGSTER_PG_URL, _dagster_pg_url, None, problems),
        first_day=_read(environ, FIRST_DAY, _monday, date.fromisoformat(DEFAULT_FIRST_DAY), problems),
        backfill_connections=_read(environ, BACKFILL_CONNECTIONS, _connections, DEFAULT_BACKFILL_CONNECTIONS, problems),
        ui_base_url=_read(environ, UI_BASE_URL, _http_url, None, problems),
        alert_webhook_url=_read(environ, ALERT_WEBHOOK_URL, _secret_http_url, None, problems),
        reports_bucket=_read(environ, REPORTS_BUCKET, _text, None, problems),
        reports_prefix=_read(environ, REPORTS_PREFIX, _text, "", problems),
        reports_region=_read(environ, REPORTS_REGION, _text, None, problems),
        reports_endpoint_url=_read(environ, REPORTS_ENDPOINT_URL, _http_url, None, problems),
        reports_dir=_read(environ, REPORTS_DIR, _text, None, problems),
        online_update_enabled=_read(environ, ONLINE_UPDATE, _boolean, True, problems),
    )
    if settings.deployed:
        problems += [
            f"{name}: required when {ENV}={environment}"
            for name in REQUIRED_WHEN_DEPLOYED
            if not environ.get(name, "").strip()
        ]
    if problems:
        raise SettingsError(problems)
    return settings


def first_day(environ: Mapping[str, str] | None = None) -> date:
    """SEEDTEST_FIRST_DAY alone (the partitions read it while the definitions are imported)."""
    return _single(FIRST_DAY, _monday, date.fromisoformat(DEFAULT_FIRST_DAY), environ)


def backfill_connections(environ: Mapping[str, str] | None = None) -> int:
    return _single(BACKFILL_CONNECTIONS, _connections, DEFAULT_BACKFILL_CONNECTIONS, environ)


def online_update_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """ENABLE_IRT_ONLINE_UPDATE: the session_completed sensor's default status; unset: on, as every
    schedule and sensor of the project starts when the code location loads."""
    return _single(ONLINE_UPDATE, _boolean, True, environ)


def _single(name: str, parse: Callable[[str], object], default, environ: Mapping[str, str] | None):
    problems: list[str] = []
    value = _read(os.environ if environ is None else environ, name, parse, default, problems)
    if problems:
        raise SettingsError(problems)
    return value
