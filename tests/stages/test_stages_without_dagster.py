"""Every stage of the pipeline runs as a plain function, without Dagster, on a small real slice.

One process (so that `dagster` provably stays unimported) calls the eight stage functions in
graph order on January and February 2013 from the real warehouse, committing each output
with the lake's own writer, then calls snapshot and training again to see them hit the
cache. Each test below checks one stage's result from that run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QUICK_CONFIG

CHAIN = textwrap.dedent(
    """
    import datetime as dt, json, sys
    from pathlib import Path

    from trainflow.config import load_config
    from trainflow.contracts import load_contract
    from trainflow.lake.delta_lake import DayWindow, DeltaLake
    from trainflow.lake.object_store import ObjectStore
    from trainflow.lake.tables import commit_output, pinned_scan, read_input
    from trainflow.registry.tracking import MlflowTracking
    from trainflow.settings import PACKAGED_CONTRACTS_DIR
    from trainflow.stages.dataset import build_training_dataset
    from trainflow.stages.evaluation import evaluate_model
    from trainflow.stages.features import compute_features
    from trainflow.stages.predictions import score_days
    from trainflow.stages.reference_tables import REFERENCE_TABLES
    from trainflow.stages.registration import register_model
    from trainflow.stages.snapshot import snapshot_flights
    from trainflow.stages.step import Step
    from trainflow.stages.training import train_model
    from trainflow.stages.validation import QUARANTINE_TABLE, validate_flights
    from trainflow.warehouse.factory import warehouse_at
    from trainflow.warehouse.models import WarehouseModels

    warehouse_path, home, config_path, out = (Path(a) for a in sys.argv[1:5])
    lake = DeltaLake(str(home / "lake"))
    window = DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    warehouse = WarehouseModels(warehouse_at(str(warehouse_path)))
    contract = lambda name: load_contract(PACKAGED_CONTRACTS_DIR / f"{name}.yaml")
    config = load_config(config_path)
    tracking = MlflowTracking(f"sqlite:///{home}/mlflow.db", str(home / "artifacts"), str(home))
    results = {}

    def step(asset, code="v1"):
        return Step(asset=asset, run_id="run-1", code_version=code,
                    upstream_code_versions=dict(CODE), code_versions=dict(CODE))

    CODE = {name: "v1" for name in ("raw_snapshot", "validated_flights", "flight_features",
                                     "training_dataset", "model", "evaluation_report",
                                     "registry_entry", "flight_delay_predictions")}

    def commit(table, output, daily):
        commit_output(lake, table, output, window if daily else None, "v1",
                      None if daily else config.name)

    def read(table, daily):
        lazy, version = pinned_scan(lake, table, window if daily else None,
                                    None if daily else config.name)
        return read_input(lazy, table, version, daily=daily)

    def record(name, s, output, **extra):
        frame = output.frame
        rows = None if frame is None else frame.height if hasattr(frame, "height") else None
        results[name] = {"rows": rows, "days": None if output.days is None else len(output.days),
                         "logs": [m for _, m in s.logs], "metadata": {
                             k: v for k, v in s.output_metadata.items()
                             if isinstance(v, (int, float, str))},
                         "partitions": len(s.partition_metadata), **extra}

    s = step("raw_snapshot")
    refs = {t: contract(t) for t in REFERENCE_TABLES}
    out = snapshot_flights(s, warehouse, refs, lake, window, 10_000_000)
    record("snapshot", s, out); commit("raw_snapshot", out, True)

    s = step("validated_flights")
    validation = validate_flights(s, read("raw_snapshot", True), contract("flights"), lake,
                                  window, 10_000_000)
    quarantined = lake.read(QUARANTINE_TABLE).height if lake.version(QUARANTINE_TABLE) is not None else 0
    record("validation", s, validation.output, quarantined=quarantined,
           checks={c.name: c.passed for c in validation.checks},
           violation=None if validation.violation is None else str(validation.violation))
    commit("validated_flights", validation.output, True)

    s = step("flight_features")
    out = compute_features(s, read("validated_flights", True), config, lake, window, 10_000_000)
    record("features", s, out); commit("flight_features", out, True)

    s = step("training_dataset")
    out = build_training_dataset(s, read("flight_features", True), config, lake)
    record("dataset", s, out); commit("training_dataset", out, False)

    s = step("model")
    out = train_model(s, read("training_dataset", False), config, lake,
                      ObjectStore(str(home / "lake" / "_manifests")), tracking, None, None)
    record("training", s, out, sha256=out.frame["model_sha256"][0]); commit("model", out, False)

    s = step("evaluation_report")
    out = evaluate_model(s, read("training_dataset", False), read("model", False), config, lake,
                         ObjectStore(str(home / "lake" / "_reports")), tracking.client())
    record("evaluation", s, out); commit("evaluation_report", out, False)

    s = step("registry_entry")
    out = register_model(s, read("model", False), read("evaluation_report", False), config,
                         lake, tracking)
    record("registration", s, out, version=int(out.frame["version"][0]),
           aliases=list(out.frame["aliases"][0]), run_tags=s.run_tags)
    commit("registry_entry", out, False)

    s = step("flight_delay_predictions")
    out = score_days(s, read("flight_features", True), config, lake, window, tracking.client())
    record("predictions", s, out, versions=sorted(set(out.frame["model_version"])))
    commit("flight_delay_predictions", out, True)

    # Again, nothing changed: the stages decide hits from the stored keys alone.
    s = step("raw_snapshot")
    out = snapshot_flights(s, warehouse, refs, lake, window, 10_000_000)
    record("snapshot_again", s, out)
    s = step("model")
    out = train_model(s, read("training_dataset", False), config, lake,
                      ObjectStore(str(home / "lake" / "_manifests")), tracking, None, None)
    record("training_again", s, out)

    results["dagster_imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "dagster")
    Path(out_path := sys.argv[4]).write_text(json.dumps(results, default=str))
    """
)


@pytest.fixture(scope="module")
def chain(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("stages")
    out = home / "results.json"
    done = subprocess.run(
        [sys.executable, "-c", CHAIN, str(built_warehouse), str(home), str(QUICK_CONFIG), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results


def test_the_stages_never_import_dagster(chain: dict[str, Any]) -> None:
    assert chain["dagster_imported"] == []


def test_snapshot_freezes_every_day_of_the_window_then_hits_the_cache(chain) -> None:
    snapshot = chain["snapshot"]
    assert snapshot["days"] == 59 and snapshot["rows"] > 50_000
    assert snapshot["partitions"] == 59  # a cache decision on every partition
    again = chain["snapshot_again"]
    assert again["days"] == 0 and again["rows"] == 0
    assert any("59 of 59 partition(s) reused from cache" in line for line in again["logs"])


def test_validation_keeps_every_row_and_passes_every_expectation(chain) -> None:
    validation = chain["validation"]
    assert validation["violation"] is None
    assert validation["checks"] and all(validation["checks"].values())
    # Rows in = validated + quarantined.
    assert validation["rows"] + validation["quarantined"] == chain["snapshot"]["rows"]
    assert validation["metadata"]["contract"].startswith("flights")


def test_features_are_one_row_per_validated_flight(chain) -> None:
    features = chain["features"]
    assert features["days"] == 59
    assert features["rows"] == chain["validation"]["rows"]
    assert features["metadata"]["features"] > 10


def test_dataset_holds_the_configured_splits(chain) -> None:
    dataset = chain["dataset"]
    meta = dataset["metadata"]
    assert meta["rows_train"] > 0 and meta["rows_validation"] > 0 and meta["rows_test"] > 0
    assert meta["rows_train"] + meta["rows_validation"] + meta["rows_test"] == dataset["rows"]
    assert meta["cache"] == "miss"


def test_training_logs_one_model_then_reuses_it(chain) -> None:
    training = chain["training"]
    assert len(training["sha256"]) == 64
    assert 0.5 < training["metadata"]["validation_roc_auc"] < 1.0
    again = chain["training_again"]
    assert again["metadata"]["cache"] == "hit" and again["rows"] is None


def test_evaluation_scores_the_model_against_the_baseline(chain) -> None:
    meta = chain["evaluation"]["metadata"]
    assert 0.5 < meta["test_roc_auc"] < 1.0
    assert meta["baseline_test_roc_auc"] < meta["test_roc_auc"]
    assert meta["champion"]  # the report says which champion it was compared with


def test_registration_makes_version_one_the_champion(chain) -> None:
    registration = chain["registration"]
    assert registration["version"] == 1
    assert registration["aliases"] == ["challenger", "champion"], registration
    assert registration["run_tags"] == {}  # passed the gate: the run is not marked rejected


def test_predictions_score_every_feature_row_by_the_champion(chain) -> None:
    predictions = chain["predictions"]
    assert predictions["days"] == 59
    assert predictions["rows"] == chain["features"]["rows"]
    assert predictions["versions"] == [chain["registration"]["version"]]
    assert predictions["metadata"]["scored_with"] == "trainflow-flight-delay-quick v1"
