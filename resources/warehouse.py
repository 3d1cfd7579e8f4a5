"""The warehouse resource: the pipeline's only door to PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from sqlalchemy import Connection, Engine

from seedtest_pipeline import warehouse

_engines: dict[str, Engine] = {}


class WarehouseResource(dg.ConfigurableResource):
    """PostgreSQL of the pipeline. Empty database_url: $DATABASE_URL, else the embedded server."""

    database_url: str = ""

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
