"""Windows that move with the data (configs/rolling.yaml): a run trains at its as-of day, the
newest day whose features exist, so landing July and running again trains a new model on
windows a month later, while the first model still reproduces bit for bit. Running again
with no new day recomputes nothing. About 4 minutes on 2 cores (Jan-Jul in the lake).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import dagster as dg
import pytest
from mlflow import MlflowClient

from tests.conftest import BIN, REPO_ROOT, run_dbt_build
from tests.helpers.graph import recomputed, run_graph, settings_for
from tests.test_reproduce import ALLOW_DIRTY
from trainflow.as_of import AS_OF_TAG, AsOfError, resolve_as_of
from trainflow.config import ConfigError, load_config
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing

ROLLING_CONFIG = REPO_ROOT / "configs" / "rolling.yaml"
MODEL_NAME = "trainflow-flight-delay-rolling"
JUNE_30, JULY_31 = dt.date(2013, 6, 30), dt.date(2013, 7, 31)

pytestmark = pytest.mark.timeout(1800)


def test_rolling_windows_end_at_the_as_of_day_with_the_configured_lengths_and_gaps() -> None:
    config = load_config(ROLLING_CONFIG)
    windows = config.at(JUNE_30).dated_windows
    assert (windows.test.start, windows.test.end) == (dt.date(2013, 6, 17), JUNE_30)
    assert (windows.validation.start, windows.validation.end) == (
        dt.date(2013, 6, 3),
        dt.date(2013, 6, 16),
    )
    assert (windows.train.start, windows.train.end) == (dt.date(2013, 2, 3), dt.date(2013, 6, 2))
    gapped = config.model_copy(
        update={"windows": config.windows.model_copy(update={"gap_days": 2})}  # type: ignore[union-attr]
    ).at(JUNE_30)
    assert gapped.dated_windows.validation.end == dt.date(2013, 6, 14)
    assert gapped.dated_windows.train.end == dt.date(2013, 5, 29)
    with pytest.raises(ConfigError, match="rolling windows have no dates"):
        _ = config.dated_windows
    # A dated config ignores the as-of day: the flagship stays exactly as it was.
    flagship = load_config(REPO_ROOT / "configs" / "experiment.yaml")
    assert flagship.at(JUNE_30) is flagship


def test_the_as_of_day_is_the_named_day_or_the_newest_feature_day() -> None:
    days = [dt.date(2013, 6, d) for d in range(1, 31)]
    assert resolve_as_of(None, days) == JUNE_30
    assert resolve_as_of("2013-06-15", days) == dt.date(2013, 6, 15)
    with pytest.raises(AsOfError, match=r"trainflow/as_of=2013-07-04: no flight_features"):
        resolve_as_of("2013-07-04", days)
    with pytest.raises(AsOfError, match="not a date"):
        resolve_as_of("yesterday", days)
    with pytest.raises(AsOfError, match="no flight_features partition exists"):
        resolve_as_of(None, [])


def as_of_of(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> str:
    """The as-of day the run's tag records (added by training_dataset while it ran)."""
    return instance.get_run_by_id(result.run_id).tags[AS_OF_TAG]  # type: ignore[union-attr]


def model_versions(settings: Settings) -> list:
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    return sorted(
        client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version)
    )


@pytest.fixture(scope="module")
def two_months_apart(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Trained at as-of June 30, then July landed and trained again, then run a third time
    with nothing new."""
    home = tmp_path_factory.mktemp("rolling")
    warehouse = home / "warehouse.duckdb"
    landing.land(warehouse, landing.plan_days([], through=JUNE_30))
    run_dbt_build(warehouse)
    settings = settings_for(home / "home", warehouse, config=ROLLING_CONFIG)
    lake = DeltaLake(settings.lake_uri)
    instance = dg.DagsterInstance.ephemeral()
    june = run_graph(settings, days=("2013-01-01", "2013-06-30"), instance=instance)
    june_model = lake.read("model").row(0, named=True)

    landing.land(warehouse, landing.plan_days(landing.landed_days(warehouse), through=JULY_31))
    run_dbt_build(warehouse)
    july = run_graph(settings, days=("2013-01-01", "2013-07-31"), instance=instance)
    july_model = lake.read("model").row(0, named=True)
    again = run_graph(settings, days=("2013-01-01", "2013-07-31"), instance=instance)
    return {
        "settings": settings,
        "runs": (june, july, again),
        "models": (june_model, july_model),
        "lake": lake,
        "instance": instance,
    }


def test_landing_july_moves_the_windows_and_trains_a_different_model(two_months_apart) -> None:
    june, july, _ = two_months_apart["runs"]
    june_model, july_model = two_months_apart["models"]
    instance = two_months_apart["instance"]
    assert (as_of_of(june, instance), as_of_of(july, instance)) == ("2013-06-30", "2013-07-31")
    assert june_model["model_sha256"] != july_model["model_sha256"]
    versions = model_versions(two_months_apart["settings"])
    assert [int(v.version) for v in versions] == [1, 2]
    # The manifest records the dated windows and the as-of day they end at.
    manifests = [json.loads(m["manifest_json"]) for m in (june_model, july_model)]
    assert [m["inputs"]["training_dataset"]["as_of"] for m in manifests] == [
        "2013-06-30",
        "2013-07-31",
    ]
    assert [m["config"]["windows"]["test"]["end"] for m in manifests] == [
        "2013-06-30",
        "2013-07-31",
    ]
    assert manifests[1]["config"]["windows"]["train"]["start"] == "2013-03-06"
    # The dataset's metadata says the same, on both runs.
    for result, as_of in ((june, "2013-06-30"), (july, "2013-07-31")):
        (event,) = [
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("training_dataset")
        ]
        metadata = event.materialization.metadata
        assert metadata["as_of"].value == as_of
        assert metadata["windows"].value["test"]["end"] == as_of  # type: ignore[index,union-attr]


def test_running_again_with_no_new_day_recomputes_nothing(two_months_apart) -> None:
    _, _, again = two_months_apart["runs"]
    assert as_of_of(again, two_months_apart["instance"]) == "2013-07-31"
    assert recomputed(again) == {}
    assert len(model_versions(two_months_apart["settings"])) == 2


def test_the_june_model_reproduces_after_the_windows_moved_on(two_months_apart) -> None:
    """Version 1, trained at as-of June 30, retrains bit for bit from its manifest's dated
    windows although the newest feature day is now July 31."""
    settings = two_months_apart["settings"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFLOW_", "MLFLOW_"))}
    env.update(
        TRAINFLOW_HOME=str(settings.home),
        TRAINFLOW_WAREHOUSE_URL=str(settings.warehouse_url),
        TRAINFLOW_CONFIG=str(ROLLING_CONFIG),
    )
    done = subprocess.run(
        [str(BIN / "trainflow"), "reproduce", "1", *ALLOW_DIRTY],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reproduced exactly" in done.stdout
    june_sha = two_months_apart["models"][0]["model_sha256"]
    assert f"model sha256: recorded {june_sha[:16]}, reproduced {june_sha[:16]}" in done.stdout
