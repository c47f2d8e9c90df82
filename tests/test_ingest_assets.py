"""The ingest assets on real landed data, over a range of partitions in one run.
(Bad input is `test_bad_input.py`.)"""

from pathlib import Path

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.resources import ContractsResource, LakeResource, WarehouseResource
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
        "contracts": ContractsResource(),
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
