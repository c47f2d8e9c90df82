"""The ingest assets on real landed data: a bad day in the warehouse fails validation with
the partition, column and rule in the Dagster failure, and nothing downstream runs."""

from pathlib import Path

import dagster as dg
import duckdb

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.resources import LakeResource, WarehouseResource
from trainflow.lake.delta_lake import DeltaLake

RANGE = {
    "dagster/asset_partition_range_start": "2013-02-01",
    "dagster/asset_partition_range_end": "2013-02-05",
}


def resources(warehouse: Path, lake: Path) -> dict[str, object]:
    lake_resource = LakeResource(lake_uri=str(lake))
    return {
        "warehouse": WarehouseResource(path=str(warehouse)),
        "io_manager": DeltaLakeIOManager(lake=lake_resource),
        "lake": lake_resource,
        "cache_policy": CachePolicyResource(),
    }


def test_range_snapshot_validates_and_features_are_written(warehouse_copy, tmp_path) -> None:
    result = dg.materialize(
        [raw_snapshot, validated_flights, flight_features],
        resources=resources(warehouse_copy, tmp_path / "lake"),
        tags=RANGE,
    )
    assert result.success
    lake = DeltaLake(str(tmp_path / "lake"))
    assert lake.read("raw_snapshot").height == lake.read("flight_features").height > 4000
    snapshots = result.asset_materializations_for_node("raw_snapshot")
    assert len(snapshots) == 5
    assert all(m.metadata["cache"].value == "miss" for m in snapshots)


def test_null_carrier_on_one_day_fails_naming_partition_column_and_rule(
    warehouse_copy, tmp_path
) -> None:
    with duckdb.connect(str(warehouse_copy)) as conn:
        conn.execute(
            "update raw.flights set carrier = null "
            "where flight_date = date '2013-02-03' and source_row % 100 = 0"
        )
    result = dg.materialize(
        [raw_snapshot, validated_flights, flight_features],
        resources=resources(warehouse_copy, tmp_path / "lake"),
        tags=RANGE,
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "validated_flights"
    error = failure.step_failure_data.error
    assert error is not None
    message = str(error.cause.message if error.cause else error.message)
    assert "partition 2013-02-03 violates data contract flights v1" in message
    assert "column 'carrier' failed rule not_nullable" in message
    lake = DeltaLake(str(tmp_path / "lake"))
    assert lake.version("validated_flights") is None
    assert lake.version("flight_features") is None
