"""Table metadata in the keys the Dagster UI reads (dagster/table_name, dagster/column_schema,
dagster/row_count, dagster/partition_row_count), shared by every asset that writes a table."""

import dagster as dg


def table_definition(table_name: str, columns: list[tuple[str, str, str]]) -> dict:
    """Definition metadata: the table's name and its columns as (name, type, description)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_, description=text) for name, type_, text in columns])
    return {"dagster/table_name": table_name, "dagster/column_schema": dg.MetadataValue.table_schema(schema)}


def row_counts(row_count: int, partition_row_count: int | None = None) -> dict:
    """Materialisation metadata: rows in the table (and in the partitions this run wrote)."""
    counts = {"dagster/row_count": dg.MetadataValue.int(row_count)}
    if partition_row_count is not None:
        counts["dagster/partition_row_count"] = dg.MetadataValue.int(partition_row_count)
    return counts
