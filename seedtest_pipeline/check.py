"""`seedtest-pipeline check`: the post-deploy smoke test (docs/RUNBOOK.md, "Deploy").

One line per check: `ok`, `warn` (locally acceptable) or `FAIL` with a one-line reason; the
command exits 1 when any check failed. It proves what a deploy can break: the database is
reachable, its schema is at this release's head, the V1 lock holds (the attempt view's columns
and the identity function), the object store takes a write (a probe object, written and
deleted), the alert webhook is configured, and the Dagster instance holds every pool's limit.
Nothing is posted to the webhook (a smoke test must not page anyone), nothing is written to the
warehouse. Every message is scrubbed of passwords.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from seedtest_pipeline import migrations, warehouse
from seedtest_pipeline.attempts import V1_COLUMNS, identity_report, view_columns
from seedtest_pipeline.reports.store import ObjectStore
from seedtest_pipeline.settings import ALERT_WEBHOOK_URL, Settings

PROBE_PREFIX = "_healthcheck"


@dataclass(frozen=True)
class Outcome:
    check: str
    status: str  # ok | warn | FAIL
    detail: str

    def line(self) -> str:
        return f"{self.status:<5}{self.check}: {self.detail}"


def _reason(error: BaseException, url: str) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return warehouse.scrub(f"{type(getattr(error, 'orig', None) or error).__name__}: {first}", url)


def check_database(url: str) -> Iterator[Outcome]:
    """Reachable, migrations at head, the V1 lock; the last two need the first."""
    shown = warehouse.masked_url(url)
    engine = warehouse.make_engine(url)
    try:
        try:
            with engine.connect() as connection:
                version = connection.scalar(sa.text("SHOW server_version"))
        except Exception as error:  # noqa: BLE001 (any failure to connect is this check's answer)
            yield Outcome("database", "FAIL", f"cannot reach {shown}: {_reason(error, url)}")
            for name in ("migrations", "v1_lock"):
                yield Outcome(name, "FAIL", "not checked: the database is unreachable")
            return
        yield Outcome("database", "ok", f"{shown} (PostgreSQL {version})")
        current, head = migrations.current_revision(engine), migrations.head_revision()
        if current == head:
            yield Outcome("migrations", "ok", f"at head {head}")
        else:
            yield Outcome("migrations", "FAIL", f"schema at {current or 'no revision'}, this release's head is {head}: "
                                                "run `seedtest-pipeline db upgrade`")
        yield check_v1_lock(engine)
    finally:
        engine.dispose()


def check_v1_lock(engine: sa.Engine) -> Outcome:
    with engine.connect() as connection:
        columns = view_columns(connection)
        identity = identity_report(connection) if columns else None
    if not columns:
        return Outcome("v1_lock", "FAIL", "view attempt does not exist")
    expected = list(V1_COLUMNS)
    if columns != expected:
        differing = next((f"column {n + 1} is {c[0]} {c[1]}, expected {e[0]} {e[1]}"
                          for n, (c, e) in enumerate(zip(columns, expected)) if c != e),
                         f"{len(columns)} columns, expected {len(expected)}")
        return Outcome("v1_lock", "FAIL", f"view attempt changed: {differing}")
    if not identity.passed:
        why = ("seedtest_student_id is not immutable" if not identity.function_immutable
               else "the view does not use seedtest_student_id" if not identity.views_use_function
               else f"seedtest_student_id breaks the rule for {', '.join(map(repr, identity.reference_ids_differing))}")
        return Outcome("v1_lock", "FAIL", why)
    return Outcome("v1_lock", "ok", f"{len(columns)} columns in order; student_id rule holds on "
                                   f"{identity.reference_ids_checked} reference ids")


def check_object_store(store: ObjectStore) -> Outcome:
    """Write a small object and delete it again (what the reports need: put; and a store that
    takes writes but refuses deletes would fill up with probes)."""
    key = f"{PROBE_PREFIX}/seedtest-check-{uuid.uuid4().hex}.txt"
    try:
        url = store.put(key, b"seedtest-pipeline check: safe to delete\n", "text/plain")
        store.delete(key)
    except Exception as error:  # noqa: BLE001 (any refusal is this check's answer)
        first = (str(error).strip().splitlines() or [""])[0]
        return Outcome("object_store", "FAIL", f"{store.describe()} refused a probe write: "
                                               f"{warehouse.scrub(f'{type(error).__name__}: {first}')}")
    return Outcome("object_store", "ok", f"{store.describe()} took and deleted {url.rsplit('/', 1)[-1]}")


def check_webhook(settings: Settings) -> Outcome:
    if settings.alert_webhook_url:
        return Outcome("webhook", "ok", f"${ALERT_WEBHOOK_URL} is set (not posted to)")
    if settings.deployed:
        return Outcome("webhook", "FAIL", f"${ALERT_WEBHOOK_URL} is not set: failed runs alert nobody")
    return Outcome("webhook", "warn", f"${ALERT_WEBHOOK_URL} is not set: failed runs alert nobody (fine locally)")


def check_pools(missing_limits: Callable[[], dict[str, str]]) -> Outcome:
    try:
        missing = missing_limits()
    except Exception as error:  # noqa: BLE001 (an instance that cannot be read fails this check)
        return Outcome("pools", "FAIL", f"the Dagster instance cannot be read: {_reason(error, '')}")
    if missing:
        listed = ", ".join(f"{pool} ({have})" for pool, have in missing.items())
        return Outcome("pools", "FAIL", f"{listed}: run `seedtest-pipeline pools`")
    return Outcome("pools", "ok", "every pool has its limit")


def run_checks(settings: Settings, database_url: str, store: ObjectStore,
               missing_limits: Callable[[], dict[str, str]]) -> list[Outcome]:
    return [
        *check_database(database_url),
        check_object_store(store),
        check_webhook(settings),
        check_pools(missing_limits),
    ]
