"""The local Dagster instance's storage (dagster.yaml): Dagster's PostgreSQL storage on a server it
finds by itself (seedtest_pipeline.warehouse.dagster_storage_url: the embedded one by default).

Because the storage needs no setting, the commands Dagster users type in a project folder (`dagster
dev`, `dagster definitions validate`, `dg dev`, `dg check defs`) work here as they are, on the
same storage as `make ui` and `make demo`. The production instance (deploy/base/dagster.yaml)
names its server in the usual way.
"""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage

from seedtest_pipeline.warehouse import dagster_storage_url


class LocalPostgresStorage(DagsterPostgresStorage):
    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> DagsterPostgresStorage:
        return DagsterPostgresStorage(postgres_url=dagster_storage_url(), inst_data=inst_data)
