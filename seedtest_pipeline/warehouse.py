"""The warehouse connection: which PostgreSQL, the one engine factory, and the one partition writer.

By default the warehouse is an embedded PostgreSQL 16 (pgserver) whose data lives under
$SEEDTEST_HOME (default ./.seedtest), reused across runs. DATABASE_URL names any other server.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

WAREHOUSE_DATABASE = "seedtest"
DAGSTER_DATABASE = "dagster"


def seedtest_home() -> Path:
    return Path(os.environ.get("SEEDTEST_HOME", ".seedtest")).resolve()


class NotPostgresUrl(ValueError):
    pass


def with_driver(url: str, driver: str) -> str:
    """postgresql://... -> postgresql+DRIVER://... (SQLAlchemy picks psycopg 3 for a bare URL,
    which dagster-postgres cannot use; the project's own engine wants psycopg 3)."""
    scheme, _, rest = url.partition("://")
    if not rest or not scheme.startswith(("postgresql", "postgres")):
        raise NotPostgresUrl(f"not a PostgreSQL URL ({scheme or url[:20]}...): expected postgresql://user:password@host:port/database")
    return f"postgresql+{driver}://{rest}"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


MASK = "***"


def masked_url(url: str) -> str:
    """The URL as it may be shown (summaries, logs, metadata, errors): its password, in the user
    part or as a `password` query parameter, replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = urlencode(
        [(key, MASK if key == "password" else value) for key, value in parse_qsl(parts.query, keep_blank_values=True)],
        safe="/*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """The password of a URL as it may appear in text: raw and percent-encoded."""
    parts = urlsplit(url)
    passwords = [parts.password] if parts.password else []
    passwords += [value for key, value in parse_qsl(parts.query) if key == "password" and value]
    found = {text for password in passwords for text in (password, unquote(password), quote(password, safe=""))}
    return sorted(found, key=len, reverse=True)


# A URL quoted in free text (an error message): scheme://, then everything up to a blank or a quote.
_URL_IN_TEXT = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>`]+""")


def _masked_or_as_is(match: re.Match) -> str:
    try:
        return masked_url(match[0])
    except ValueError:  # not parseable as a URL (e.g. a broken IPv6 host): nothing to mask
        return match[0]


def scrub(text: str, *urls: str) -> str:
    """`text` (an error message, say) as it may be shown: every URL it quotes with its password
    masked, and the passwords of `urls` (default: the configured database URLs) replaced by ***
    wherever else they appear (a driver may quote a DSN or the password alone). The project's one
    masking helper for free text; `masked_url` is the one for a URL."""
    text = _URL_IN_TEXT.sub(_masked_or_as_is, text)
    for url in urls or configured_database_urls():
        for secret in url_secrets(url):
            text = text.replace(secret, MASK)
    return text


def configured_database_urls() -> list[str]:
    """The database URLs of this process's environment (the warehouse's and Dagster's storage)."""
    return [url for url in (os.environ.get(name, "").strip() for name in ("DATABASE_URL", "SEEDTEST_DAGSTER_PG_URL"))
            if url]


@dataclass(frozen=True)
class EmbeddedServer:
    """An embedded PostgreSQL; `server` keeps it running while this process holds it."""

    admin_url: str
    server: object

    def database_url(self, database: str) -> str:
        return with_database(self.admin_url, database)


def start_embedded(home: Path | None = None) -> EmbeddedServer:
    """Start (or attach to) the embedded server and make sure its two databases exist."""
    import pgserver  # imported here: only the embedded path needs it

    data_dir = (home or seedtest_home()) / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    embedded = EmbeddedServer(admin_url=server.get_uri(), server=server)
    create_database_if_missing(embedded.admin_url, WAREHOUSE_DATABASE)
    create_database_if_missing(embedded.admin_url, DAGSTER_DATABASE)
    return embedded


def create_database_if_missing(admin_url: str, database: str) -> None:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            )
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    finally:
        engine.dispose()


_embedded: EmbeddedServer | None = None


def embedded_server() -> EmbeddedServer:
    """The embedded server under $SEEDTEST_HOME, started once per process and kept while it lives."""
    global _embedded
    if _embedded is None:
        _embedded = start_embedded()
    return _embedded


def warehouse_url() -> str:
    """DATABASE_URL when set; otherwise the embedded server's warehouse database."""
    configured = os.environ.get("DATABASE_URL", "").strip()
    return configured or embedded_server().database_url(WAREHOUSE_DATABASE)


def dagster_storage_url() -> str:
    """Where the local Dagster instance keeps runs, events and schedules: SEEDTEST_DAGSTER_PG_URL,
    else database "dagster" on the server of DATABASE_URL, else on the embedded server. In the
    psycopg2 form dagster-postgres needs (SQLAlchemy maps a bare URL to psycopg 3)."""
    explicit = os.environ.get("SEEDTEST_DAGSTER_PG_URL", "").strip()
    if explicit:
        return explicit
    configured = os.environ.get("DATABASE_URL", "").strip()
    if configured:
        create_database_if_missing(configured, DAGSTER_DATABASE)
        return with_driver(with_database(configured, DAGSTER_DATABASE), "psycopg2")
    return with_driver(embedded_server().database_url(DAGSTER_DATABASE), "psycopg2")


# What says that the connection failed, not the statement: the same work on a new connection can
# succeed, so a step that failed this way is worth retrying (resources/warehouse.py). SQLSTATE
# class 08 is "connection exception"; 57P01-57P03 a server shutting down, crashed or starting (a
# Cloud SQL failover or maintenance); 53300 too many connections. Every other SQLSTATE (bad data
# 22xxx, a constraint 23xxx, a missing table 42xxx, a wrong password 28xxx) fails the same way on
# every try.
TRANSIENT_SQLSTATE_CLASSES = ("08",)
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# A connection that never reached the server has no SQLSTATE; among those, these were refused by
# the server for good (libpq's wording).
REFUSED_FOR_GOOD = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                    "authentication method", "SSL is not enabled")


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__


def connection_lost(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is a lost or refused connection worth another try,
    rather than a failure of the statement or its data, which would fail the same way again."""
    for cause in _chain(error):
        if getattr(cause, "connection_invalidated", False):  # SQLAlchemy saw the connection die
            return True
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if sqlstate:
            return sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES) or sqlstate in TRANSIENT_SQLSTATES
        if type(cause).__name__ == "OperationalError" and type(cause).__module__.startswith(("psycopg", "psycopg2")):
            # No SQLSTATE: refused, timed out, or closed on the way ("server closed the connection
            # unexpectedly"), unless the server said why it will never accept it.
            return not any(reason in str(cause) for reason in REFUSED_FOR_GOOD)
    return False


# Sessions sort and hash hundreds of thousands of attempts per query; PostgreSQL's default 4MB
# sends those sorts to disk. A batch pipeline holds few connections, so this is affordable.
SESSION_OPTIONS = "-c timezone=UTC -c work_mem=64MB"


# libpq waits for ever by default; a connect that hangs (a proxy that cannot reach its instance)
# then hangs the run. After 10 s it fails as a lost connection, which a step retries.
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, **options) -> Engine:
    """The one engine factory: psycopg 3, pre-ping, UTC sessions with analytic work_mem."""
    return sa.create_engine(
        with_driver(url, "psycopg"),
        pool_pre_ping=True,
        connect_args={"options": SESSION_OPTIONS, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        **options,
    )


def replace_rows(
    connection: Connection,
    table: str,
    staged_select: str,
    params: dict,
    window_condition: str,
    key_columns: tuple[str, ...],
    data_columns: tuple[str, ...],
    stamp_column: str,
) -> tuple[int, int, int]:
    """Make the rows of one window of `table` equal to the result of `staged_select`, atomically.

    Runs inside the caller's transaction: a failure anywhere rolls back to the previous rows.
    Rows whose data did not change are not touched (they keep their `stamp_column`), so
    re-running a partition leaves identical rows and writes nothing. `window_condition` selects
    the window's rows by bind parameters. `staged_select` is read twice (and its rows inserted in
    the order it returns them), so make it a plain read of a table the caller filled.
    Returns (rows deleted, rows inserted, rows unchanged); a changed row counts as deleted and
    inserted.
    """
    # Writers of the table queue up until this transaction ends: two writers of overlapping
    # windows would otherwise both insert the rows they share (a duplicate key for the loser),
    # whatever launched them. The same transaction may take the lock again for its next part.
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock_key))"), {"lock_key": f"write:{table}"})
    columns = ", ".join((*key_columns, *data_columns, stamp_column))
    unchanged = 0
    window_empty = not connection.execute(
        sa.text(f"SELECT EXISTS (SELECT FROM {table} WHERE {window_condition})"), params
    ).scalar()
    if not window_empty:  # else (a first backfill) there is nothing to compare with
        keys = " AND ".join(f"t.{c} = s.{c}" for c in key_columns)
        same_data = " AND ".join(f"t.{c} IS NOT DISTINCT FROM s.{c}" for c in data_columns)
        # The keys whose row stays as it is, decided before anything changes: the delete and the
        # insert below then never read the table they write (a plan reading the index it inserts
        # into can slow down by orders of magnitude).
        connection.execute(sa.text("DROP TABLE IF EXISTS pg_temp.unchanged_keys"))
        unchanged = connection.execute(
            sa.text(
                f"CREATE TEMP TABLE unchanged_keys ON COMMIT DROP AS "
                f"SELECT {', '.join(f's.{c}' for c in key_columns)} FROM ({staged_select}) AS s "
                f"JOIN (SELECT * FROM {table} WHERE {window_condition}) AS t ON {keys} AND {same_data}"
            ),
            params,
        ).rowcount
        connection.execute(sa.text("ANALYZE unchanged_keys"))  # temp tables have no statistics otherwise
    unchanged_key = " AND ".join(f"u.{c} = s.{c}" for c in key_columns)
    # With nothing unchanged (a first backfill, or all rows changed) there is nothing to skip.
    kept = f"NOT EXISTS (SELECT 1 FROM unchanged_keys AS u WHERE {unchanged_key})" if unchanged else "true"
    deleted = connection.execute(
        sa.text(f"DELETE FROM {table} AS s WHERE {window_condition} AND {kept}"), params
    ).rowcount
    inserted = connection.execute(
        sa.text(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM ({staged_select}) AS s WHERE {kept}")
    ).rowcount
    return deleted, inserted, unchanged


def count_rows(connection: Connection, table: str, column: str, first, end) -> tuple[int, int]:
    """Rows in `table`, and those whose `column` lies in [first, end): the row counts an asset
    reports for its table and for the partitions it wrote. One scan."""
    row = connection.execute(
        sa.text(f"SELECT count(*) AS total, count(*) FILTER (WHERE {column} >= :first AND {column} < :end) AS window "
                f"FROM {table}"),
        {"first": first, "end": end},
    ).one()
    return int(row.total), int(row.window)
