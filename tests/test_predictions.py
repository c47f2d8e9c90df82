"""Batch predictions with lineage (flight_delay_predictions): every row names the model
version, the model's sha256 and the feature partition's data version, and one row is
followed back to the manifest of the model that made it. Without a champion nothing is
scored; a new champion does not rewrite days already scored; rescoring is an explicit,
forced backfill, and a run may pin the version that scores. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from mlflow import MlflowClient

from tests.helpers.environment import QUICK_CONFIG
from tests.helpers.graph import JAN_FEB, LAKE_ASSETS, run_graph, settings_for
from trainflow.defs.automation import DAILY_ASSETS
from trainflow.defs.caching import FORCE_TAG
from trainflow.defs.features import flight_features
from trainflow.defs.predictions import flight_delay_predictions
from trainflow.defs.resources import lake_resource
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.registry.operations import promote
from trainflow.reproduce import find_manifest
from trainflow.settings import Settings
from trainflow.stages.predictions import SCORED_WITH_TAG, SCORING_VERSION_TAG, scoring_model

MODEL = "trainflow-flight-delay-quick"
WITH_PREDICTIONS = [*LAKE_ASSETS, flight_delay_predictions]
FEB = ("2013-02-01", "2013-02-28")


def client_of(settings: Settings) -> MlflowClient:
    return MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def predictions(settings: Settings) -> pl.DataFrame:
    return DeltaLake(settings.lake_uri).read("flight_delay_predictions")


def scored(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """cache outcome -> partitions of flight_delay_predictions in the run."""
    found: dict[str, int] = {}
    for mat in result.asset_materializations_for_node("flight_delay_predictions"):
        outcome = str(mat.metadata["cache"].value)
        found[outcome] = found.get(outcome, 0) + 1
    return found


@pytest.fixture(scope="module")
def scored_lake(tmp_path_factory: pytest.TempPathFactory, built_warehouse: Path) -> dict:
    """January and February: the daily steps alone first (no champion: nothing scored),
    then the whole graph (trained, registered, then scored by v1)."""
    home = tmp_path_factory.mktemp("predictions")
    settings = settings_for(home / "home", built_warehouse)
    instance = dg.DagsterInstance.ephemeral()
    before = run_graph(
        settings, assets=[*LAKE_ASSETS[:3], flight_delay_predictions], instance=instance
    )
    after = run_graph(settings, assets=WITH_PREDICTIONS, instance=instance)
    return {"settings": settings, "instance": instance, "before": before, "after": after}


def test_without_a_champion_nothing_is_scored_and_the_days_stay_open(scored_lake) -> None:
    before = scored_lake["before"]
    (event,) = before.asset_materializations_for_node("flight_delay_predictions")[:1]
    assert event.metadata["scored_with"].value == "none (no champion)"
    assert scored(before) == {"miss": 59}
    # The next run, after v1 became champion, scores every day.
    assert scored(scored_lake["after"]) == {"miss": 59}


def test_every_row_names_its_model_and_features_and_traces_to_the_manifest(scored_lake) -> None:
    settings = scored_lake["settings"]
    rows = predictions(settings)
    lake = DeltaLake(settings.lake_uri)
    features = lake.read("flight_features")
    assert rows.height == features.height  # every flight of every day, cancelled ones too
    assert rows["flight_id"].n_unique() == rows.height
    assert rows["delay_probability"].is_between(0.0, 1.0).all()
    client = client_of(settings)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert rows.select("model_name", "model_version", "model_sha256").unique().rows() == [
        (MODEL, int(champion.version), champion.tags["model_sha256"])
    ]
    # The feature data version is the one stored with that day's features.
    stored = lake.stored_versions(
        "flight_features", DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    )
    for day, version in rows.select("day", "features_data_version").unique().iter_rows():
        assert stored[day][0] == version, day
    after = scored_lake["after"]
    assert scored_lake["instance"].get_run_by_id(after.run_id).tags[SCORED_WITH_TAG] == (
        f"{MODEL} v{champion.version}"
    )

    # One row, followed back: its version's manifest names the same model bytes, and the
    # features it was scored from are inside what that manifest's dataset read.
    row = rows.filter(pl.col("day") == pl.col("day").max()).row(0, named=True)
    manifests = lake_resource(settings).object_store("_manifests")
    manifest, run_id = find_manifest(client, manifests, str(row["model_version"]), MODEL)
    assert run_id == client.get_model_version(MODEL, str(row["model_version"])).run_id
    assert manifest["model"]["sha256"] == row["model_sha256"]
    # Scoring it again from the version's own model gives the row's probability.
    model = scoring_model(client, MODEL, str(row["model_version"]))
    again = model.scorer.predict(features.filter(pl.col("flight_id") == row["flight_id"]))
    assert float(again[0]) == row["delay_probability"]


def test_a_new_champion_does_not_rewrite_scored_days_and_rescoring_is_explicit(
    scored_lake,
) -> None:
    settings, instance = scored_lake["settings"], scored_lake["instance"]
    client = client_of(settings)
    first = int(client.get_model_version_by_alias(MODEL, "champion").version)
    # A second version (another seed, the same registered model), made champion by hand.
    reseeded = settings.home.parent / "reseeded.yaml"
    reseeded.write_text(QUICK_CONFIG.read_text().replace("seed: 2013", "seed: 7"))
    run_graph(
        settings_for(settings.home, settings.warehouse_url, reseeded),
        assets=WITH_PREDICTIONS,
        instance=instance,
    )
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert len(versions) >= 2
    newest = versions[-1]
    promote(client, MODEL, str(newest), lock_dir=settings.registry_lock_dir,
            reason="test: a new champion", force=True)  # fmt: skip
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == newest
    # The forced run above rescored (force recomputes every step); put v1 back on Feb by pin.
    pinned = run_graph(
        settings,
        days=FEB,
        assets=WITH_PREDICTIONS,
        selection=[flight_delay_predictions],
        instance=instance,
        tags={FORCE_TAG: "true", SCORING_VERSION_TAG: str(first)},
    )
    assert scored(pinned) == {"miss": 28}
    feb = pl.col("day") >= pl.date(2013, 2, 1)
    assert predictions(settings).filter(feb)["model_version"].unique().to_list() == [first]

    # Not forced: a cache hit, whoever is champion now; nothing is rewritten.
    again = run_graph(
        settings,
        days=JAN_FEB,
        assets=WITH_PREDICTIONS,
        selection=[flight_delay_predictions],
        instance=instance,
    )
    assert scored(again) == {"hit": 59}
    assert predictions(settings).filter(feb)["model_version"].unique().to_list() == [first]

    # Rescoring is explicit: forced, it takes the champion of now.
    rescored = run_graph(
        settings, days=FEB, assets=WITH_PREDICTIONS,
        selection=[flight_delay_predictions], instance=instance,
        tags={FORCE_TAG: "true"},
    )  # fmt: skip
    assert scored(rescored) == {"miss": 28}
    assert predictions(settings).filter(feb)["model_version"].unique().to_list() == [newest]


def test_predictions_run_in_the_new_day_path() -> None:
    """A landed day is scored in the sensor's daily run, after its features."""
    assert DAILY_ASSETS.index(flight_delay_predictions.key) > DAILY_ASSETS.index(
        flight_features.key
    )
