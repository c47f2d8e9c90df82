"""The ingest assets on real landed data, over a range of partitions in one run.
(Bad input is `test_bad_input.py`.)"""

import datetime as dt
from pathlib import Path

import dagster as dg

from tests.conftest import thin_history_config
from trainflow.definitions import ALL_ASSETS, build_resources
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.resources import (
    ContractsResource,
    ExperimentConfigResource,
    LakeResource,
    WarehouseResource,
)
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing

RANGE = {
    "dagster/asset_partition_range_start": "2013-02-01",
    "dagster/asset_partition_range_end": "2013-02-05",
}


def resources(warehouse: Path, lake: Path) -> dict[str, object]:
    lake_resource = LakeResource(lake_uri=str(lake))
    lake.parent.mkdir(parents=True, exist_ok=True)
    return {
        # February days: their January history was never validated.
        "experiment": ExperimentConfigResource(path=str(thin_history_config(lake.parent))),
        "warehouse": WarehouseResource(url=str(warehouse)),
        "io_manager": DeltaLakeIOManager(lake=lake_resource),
        "lake": lake_resource,
        "cache_policy": CachePolicyResource(),
        "contracts": ContractsResource(),
    }


def test_range_snapshot_validates_and_features_are_written(warehouse_copy, tmp_path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_snapshot, validated_flights, flight_features],
            resources=resources(warehouse_copy, tmp_path / "lake"),
            tags=RANGE,
            instance=instance,
        )
        assert result.success
        logged = [e.user_message for e in instance.all_logs(result.run_id)]
    # Each long step says how far it got, with its rate.
    for progress in ("raw_snapshot: read 5/5 partitions", "validated_flights: validated 5/5",
                     "flight_features: computed 5/5 partitions"):  # fmt: skip
        line = next(m for m in logged if progress in m)
        assert line.endswith(" rows/s") and ", 4," in line  # e.g. "4,812 rows"
    lake = DeltaLake(str(tmp_path / "lake"))
    assert lake.read("raw_snapshot").height == lake.read("flight_features").height > 4000
    snapshots = result.asset_materializations_for_node("raw_snapshot")
    assert len(snapshots) == 5
    assert all(m.metadata["cache"].value == "miss" for m in snapshots)


def test_upstream_selection_builds_every_model_it_reads_on_a_fresh_warehouse(tmp_path) -> None:
    """`*flight_features` on a warehouse that dbt never built: raw_snapshot declares the
    reference models it checks (stg_airports is not upstream of flights_enriched), so the
    selection builds them before the step queries them."""
    warehouse = tmp_path / "warehouse.duckdb"
    landing.land(warehouse, landing.plan_days([], through=dt.date(2013, 1, 5)))
    settings = Settings.from_env(
        {"TRAINFLOW_HOME": str(tmp_path / "home"), "TRAINFLOW_WAREHOUSE_URL": str(warehouse)}
    )
    result = dg.materialize(
        ALL_ASSETS,
        selection="*flight_features",
        resources=build_resources(settings),
        tags={
            "dagster/asset_partition_range_start": "2013-01-01",
            "dagster/asset_partition_range_end": "2013-01-05",
        },
    )
    assert result.success
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"stg_airports", "stg_weather", "flights_enriched", "flight_features"} <= built
    assert DeltaLake(settings.lake_uri).read("flight_features")["day"].n_unique() == 5
