"""The ingest assets on real landed data, over a range of partitions in one run.
(Bad input is `test_bad_input.py`.)"""

import datetime as dt
import tempfile
from pathlib import Path

import dagster as dg

from tests.conftest import thin_history_config
from tests.helpers.graph import ingest_resources, partition_range_tags
from trainflow.definitions import ALL_ASSETS, build_resources
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing

RANGE = partition_range_tags("2013-02-01", "2013-02-05")


def resources(warehouse: Path, lake: Path, chunk_rows: int | None = None) -> dict[str, object]:
    lake.parent.mkdir(parents=True, exist_ok=True)
    # February days: their January history was never validated.
    return ingest_resources(warehouse, lake, thin_history_config(lake.parent), chunk_rows)


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


def test_chunked_steps_write_what_whole_windows_write_in_one_commit(
    warehouse_copy, tmp_path, monkeypatch
) -> None:
    """A small row budget (TRAINFLOW_CHUNK_ROWS) makes every daily step work a few days at
    a time and spool its output: the stored rows, content hashes and quarantine are those of
    one whole-window pass, each table is still one Delta commit, and no spool is left."""
    spools = tmp_path / "tmp"
    spools.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spools))
    ten_days = partition_range_tags("2013-02-01", "2013-02-10")
    lakes = {"whole": tmp_path / "whole" / "lake", "chunked": tmp_path / "chunked" / "lake"}
    with dg.instance_for_test() as instance:
        for name, lake_path in lakes.items():
            result = dg.materialize(
                [raw_snapshot, validated_flights, flight_features],
                resources=resources(
                    warehouse_copy, lake_path, chunk_rows=2000 if name == "chunked" else None
                ),
                tags=ten_days,
                instance=instance,
            )
            assert result.success
        logged = [e.user_message for e in instance.all_logs(result.run_id)]
    # About two days (900-1,000 flights each) per chunk: five or more steps of progress.
    assert len([m for m in logged if "flight_features: computed" in m]) >= 5
    assert len([m for m in logged if "raw_snapshot: read" in m]) >= 5
    whole, chunked = (DeltaLake(str(p)) for p in lakes.values())
    for table in ("raw_snapshot", "validated_flights", "flight_features"):
        assert chunked.version(table) == whole.version(table) == 0, table  # one commit
        hashes = [
            lake.read(table)
            .select("day", "_content_hash").unique().sort("day")
            for lake in (whole, chunked)
        ]  # fmt: skip
        assert hashes[0].height == 10 and hashes[0].equals(hashes[1]), table
    assert chunked.read("quarantine_flights").height == whole.read("quarantine_flights").height
    assert not list(spools.glob("trainflow-spool-*"))


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
        tags=partition_range_tags("2013-01-01", "2013-01-05"),
    )
    assert result.success
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"stg_airports", "stg_weather", "flights_enriched", "flight_features"} <= built
    assert DeltaLake(settings.lake_uri).read("flight_features")["day"].n_unique() == 5
