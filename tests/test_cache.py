"""Cache keys in action: what each kind of change recomputes, counted from the run's
event log (each materialization event says `cache: hit` or `miss`), never from timing."""

import datetime as dt
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tests.conftest import QUICK_CONFIG
from trainflow.definitions import build_resources
from trainflow.defs.caching import FORCE_TAG
from trainflow.defs.evaluation import evaluation_report, registry_entry
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.training import model, training_dataset
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import Settings
from trainflow.warehouse import landing

LAKE_ASSETS = [
    raw_snapshot,
    validated_flights,
    flight_features,
    training_dataset,
    model,
    evaluation_report,
    registry_entry,
]
NAMES = [a.key.to_user_string() for a in LAKE_ASSETS]
DAILY = NAMES[:3]
JAN_FEB = ("2013-01-01", "2013-02-28")


def settings_for(home: Path, warehouse: Path, config: Path = QUICK_CONFIG) -> Settings:
    return Settings.from_env(
        {
            "TRAINFLOW_HOME": str(home),
            "TRAINFLOW_WAREHOUSE_URL": str(warehouse),
            "TRAINFLOW_CONFIG": str(config),
        }
    )


def run_graph(
    settings: Settings,
    days: tuple[str, str] = JAN_FEB,
    assets: list = LAKE_ASSETS,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources=build_resources(settings),
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[1],
            **(tags or {}),
        },
        raise_on_error=raise_on_error,
    )


def outcomes(result: dg.ExecuteInProcessResult) -> dict[str, Counter]:
    """asset -> Counter of 'hit' / 'miss' over its materialization events in the run."""
    counts: dict[str, Counter] = {name: Counter() for name in NAMES}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key.to_user_string() in counts:  # not quarantine_flights (no cache key)
            counts[mat.asset_key.to_user_string()][str(mat.metadata["cache"].value)] += 1
    return counts


def data_versions(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], str]:
    found = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if "data_version" in mat.metadata:  # not quarantine_flights (no cache key)
            found[(mat.asset_key.to_user_string(), mat.partition)] = str(
                mat.metadata["data_version"].value
            )
    return found


def recomputed(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    return {name: c["miss"] for name, c in outcomes(result).items() if c["miss"]}


@pytest.fixture
def settings(warehouse_copy: Path, tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "home", warehouse_copy)


def test_second_run_recomputes_nothing_and_keeps_every_data_version(settings) -> None:
    first = run_graph(settings)
    assert recomputed(first) == {**{n: 59 for n in DAILY}, **{n: 1 for n in NAMES[3:]}}
    lake = DeltaLake(settings.lake_uri)
    delta_versions = {name: lake.version(name) for name in NAMES}

    second = run_graph(settings)
    counts = outcomes(second)
    assert recomputed(second) == {}
    assert {n: c["hit"] for n, c in counts.items()} == {
        **{n: 59 for n in DAILY},
        **{n: 1 for n in NAMES[3:]},
    }
    assert data_versions(second) == data_versions(first)
    assert {name: lake.version(name) for name in NAMES} == delta_versions


def test_feature_code_change_recomputes_features_and_downstream_only(settings) -> None:
    run_graph(settings)
    bumped = dg.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(code_version="2") if spec.key == flight_features.key else spec
        ),
        LAKE_ASSETS,
    )
    assert recomputed(run_graph(settings, assets=bumped)) == {
        "flight_features": 59,
        "training_dataset": 1,
        "model": 1,
        "evaluation_report": 1,
        "registry_entry": 1,
    }


def test_hyperparameter_change_recomputes_model_and_downstream_only(
    settings, tmp_path: Path
) -> None:
    run_graph(settings)
    changed = tmp_path / "changed.yaml"
    changed.write_text(QUICK_CONFIG.read_text().replace("num_leaves: 63", "num_leaves: 31"))
    result = run_graph(settings_for(settings.home, settings.warehouse_path, changed))
    assert recomputed(result) == {"model": 1, "evaluation_report": 1, "registry_entry": 1}


def test_new_and_restated_days_recompute_their_partitions_and_feature_windows(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    january_config = tmp_path / "january.yaml"
    january_config.write_text(
        QUICK_CONFIG.read_text()
        .replace("end: 2013-01-31}", "end: 2013-01-20}")
        .replace("{start: 2013-02-01, end: 2013-02-14}", "{start: 2013-01-21, end: 2013-01-25}")
        .replace("{start: 2013-02-15, end: 2013-02-28}", "{start: 2013-01-26, end: 2013-01-31}")
    )
    with duckdb.connect(str(warehouse_copy)) as conn:
        conn.execute("delete from raw.flights where flight_date > date '2013-02-10'")
        conn.execute("delete from raw.weather where weather_date > date '2013-02-10'")
    settings = settings_for(tmp_path / "home", warehouse_copy, january_config)
    run_graph(settings, days=("2013-01-01", "2013-02-10"))

    landing.land(warehouse_copy, [dt.date(2013, 2, 11)])  # a new day arrives
    new_day = run_graph(settings, days=("2013-01-01", "2013-02-11"))
    assert recomputed(new_day) == {"raw_snapshot": 1, "validated_flights": 1, "flight_features": 1}

    with duckdb.connect(str(warehouse_copy)) as conn:  # a late correction of Feb 5
        conn.execute(
            "update raw.flights set arr_delay = arr_delay + 30 "
            "where flight_date = date '2013-02-05' and source_row % 10 = 0"
        )
    restated = run_graph(settings, days=("2013-01-01", "2013-02-11"))
    # Feature days Feb 5 .. Feb 11 have Feb 5 in their 28-day window (or are Feb 5).
    assert recomputed(restated) == {"raw_snapshot": 1, "validated_flights": 1, "flight_features": 7}


def test_failed_run_leaves_no_stale_hit(settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(QUICK_CONFIG.read_text().replace("num_leaves: 63", "num_leaves: -1"))
    failed = run_graph(
        settings_for(settings.home, settings.warehouse_path, broken), raise_on_error=False
    )
    assert not failed.success
    assert [e.step_key for e in failed.get_step_failure_events()] == ["model"]
    assert DeltaLake(settings.lake_uri).version("model") is None

    # A range with one day missing in the warehouse fails before writing anything.
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        conn.execute("delete from raw.flights where flight_date = date '2013-03-01'")
    partial = run_graph(
        settings, days=("2013-02-20", "2013-03-01"), assets=[raw_snapshot], raise_on_error=False
    )
    assert not partial.success
    assert DeltaLake(settings.lake_uri).version("raw_snapshot") == 0  # the first run's only

    rerun = run_graph(settings)
    assert recomputed(rerun) == {"model": 1, "evaluation_report": 1, "registry_entry": 1}
    clean_home = settings_for(tmp_path / "clean", settings.warehouse_path)
    run_graph(clean_home)
    model_hash = DeltaLake(settings.lake_uri).read("model")["model_sha256"][0]
    assert model_hash == DeltaLake(clean_home.lake_uri).read("model")["model_sha256"][0]


def test_force_tag_recomputes_everything_to_the_same_versions(settings) -> None:
    first = run_graph(settings)
    forced = run_graph(settings, tags={FORCE_TAG: "true"})
    assert recomputed(forced) == {**{n: 59 for n in DAILY}, **{n: 1 for n in NAMES[3:]}}
    assert data_versions(forced) == data_versions(first)
