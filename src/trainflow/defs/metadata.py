"""A stage's plain metadata values as Dagster's metadata types: the one place they are mapped.

Stages (`trainflow.stages`) report numbers, text and the small markers of
`trainflow.stages.step`; the UI wants `MetadataValue`s (a JSON document folded, a link, a
table, column lineage).
"""

from typing import Any

import dagster as dg

from trainflow.stages.step import ColumnLineage, Json, Link, Markdown, Table, Url


def stored_object_link(uri: str) -> dg.MetadataValue:
    """A file trainflow stored (report, model card, manifest) as the UI should show it: an
    S3 object as a URL, a local file as a path."""
    return dg.MetadataValue.url(uri) if uri.startswith("s3://") else dg.MetadataValue.path(uri)


def to_dagster_value(value: Any) -> Any:
    if isinstance(value, Json):
        return dg.MetadataValue.json(value.value)
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(value.text)
    if isinstance(value, Link):
        return stored_object_link(value.uri)
    if isinstance(value, Url):
        return dg.MetadataValue.url(value.url)
    if isinstance(value, ColumnLineage):
        return dg.TableColumnLineage(
            deps_by_column={
                column: [
                    dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=source)
                    for asset, source in sources
                ]
                for column, sources in value.deps.items()
            }
        )
    if isinstance(value, Table):
        return dg.MetadataValue.table(
            records=[dg.TableRecord(record) for record in value.records],
            schema=dg.TableSchema(
                columns=[dg.TableColumn(name, kind) for name, kind in value.columns.items()]
            ),
        )
    return value


def to_dagster(metadata: dict[str, Any]) -> dict[str, Any]:
    """Every value of a metadata dict mapped (plain values pass through)."""
    return {name: to_dagster_value(value) for name, value in metadata.items()}
