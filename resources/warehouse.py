"""The warehouse resource: the pipeline's only door to PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, Engine

from seedtest_pipeline import warehouse

_engines: dict[str, Engine] = {}


class WarehouseResource(dg.ConfigurableResource):
    """PostgreSQL of the pipeline. Empty database_url: $DATABASE_URL, else the embedded server."""

    database_url: str = ""
    connection_retries: int = Field(
        3, ge=0, description="Retries of a step whose connection was lost or refused (a failover, a proxy restart); "
        "a failed statement (bad data, a missing table) is never retried.")
    retry_delay_seconds: float = Field(
        30.0, ge=0, description="Base of the exponential backoff between those retries (full jitter): the n-th "
        "retry waits a random time up to (2^n - 1) times this.")

    def url(self) -> str:
        return self.database_url or warehouse.warehouse_url()

    def engine(self) -> Engine:
        # One engine (and pool) per URL and process, shared by every asset of a run.
        url = self.url()
        if url not in _engines:
            _engines[url] = warehouse.make_engine(url)
        return _engines[url]

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in one transaction: committed on success, rolled back on any error."""
        with self.engine().begin() as connection:
            yield connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine().connect() as connection:
            yield connection

    def retry_policy(self) -> dg.RetryPolicy:
        return dg.RetryPolicy(max_retries=self.connection_retries, delay=self.retry_delay_seconds,
                              backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)

    @contextmanager
    def retried_when_unreachable(self, context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
        """Run a step's body; a lost or refused connection (warehouse.connection_lost) asks Dagster
        to retry the step after the policy's backoff, anything else fails the step once.

        Dagster's RetryPolicy on a step retries every exception, bad data included; raising
        RetryRequested here, for the connection only, is what keeps a data error from being retried.
        Steps are idempotent (one transaction per write), so a retry starts from the previous rows.
        """
        try:
            yield
        except Exception as error:
            if not warehouse.connection_lost(error):
                raise
            policy = self.retry_policy()
            attempt = context.retry_number + 1
            wait = policy.calculate_delay(attempt)
            reason = warehouse.scrub(" ".join(str(getattr(error, "orig", None) or error).split())[:300], self.url())
            outcome = (f"retry {attempt} of {policy.max_retries} in {wait:.1f} s" if attempt <= policy.max_retries
                       else "no retries left")
            context.log.warning(f"warehouse {warehouse.masked_url(self.url())} unreachable: {reason}; {outcome}")
            raise dg.RetryRequested(max_retries=policy.max_retries, seconds_to_wait=wait) from error
