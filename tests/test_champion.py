"""A champion is never replaced without a fair comparison: scored only on test rows after
its own training window, from its LightGBM text (checked, never unpickled); no comparison
means no promotion; a registry that cannot be reached fails instead of reading as "no
champion"; and two registrations racing cannot both become champion against the same one."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from tests.conftest import QUICK_CONFIG, REPO_ROOT, free_port
from tests.helpers.environment import user_environment
from tests.helpers.graph import graph_command
from trainflow.config import load_config
from trainflow.defs.retries import is_transient
from trainflow.features.flights import LABEL
from trainflow.lake.delta_lake import DeltaLake
from trainflow.registry import MODEL_TEXT_ARTIFACT
from trainflow.registry.champion import compare_with_champion
from trainflow.registry.operations import history
from trainflow.registry.versions import current_champion

MODEL = load_config(QUICK_CONFIG).registered_model_name
QUICK_WINDOWS = (
    "  train: {start: 2013-01-01, end: 2013-01-31}\n"
    "  validation: {start: 2013-02-01, end: 2013-02-14}\n"
    "  test: {start: 2013-02-15, end: 2013-02-28}\n"
)


def config(folder: Path, name: str, replacements: dict[str, str]) -> Path:
    text = QUICK_CONFIG.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def environment(home: Path, warehouse: Path, config_path: Path, store: Path) -> dict[str, str]:
    """A trainflow home of its own, sharing one MLflow store (and so one registry)."""
    return user_environment(
        home,
        config_path,
        warehouse=warehouse,
        mlflow_tracking_uri=f"sqlite:///{store}",
        instance="default",
    )


def graph(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        graph_command(*args),
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(process: subprocess.Popen[str]) -> None:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out[-2000:] + err[-4000:]


UP_TO_EVALUATION = (
    "raw_snapshot", "validated_flights", "flight_features", "training_dataset", "model",
    "evaluation_report",
)  # fmt: skip


@pytest.fixture(scope="module")
def registry(built_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    """A weak champion (one tree, lenient gate) registered as v1 of the quick model."""
    root = tmp_path_factory.mktemp("champion")
    warehouse = root / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    store = root / "mlflow" / "mlflow.db"
    store.parent.mkdir()
    weak = config(
        root,
        "weak",
        {
            "num_boost_round: 2000": "num_boost_round: 1",
            "min_test_roc_auc: 0.6": "min_test_roc_auc: 0.5",
            "min_uplift_over_baseline: 0.02": "min_uplift_over_baseline: -1.0",
            "min_slice_roc_auc: 0.5": "min_slice_roc_auc: 0.0",
        },
    )
    env = environment(root / "weak", warehouse, weak, store)
    finished(graph(env, "2013-01-01", "2013-02-28"))
    client = MlflowClient(f"sqlite:///{store}", registry_uri=f"sqlite:///{store}")
    assert current_champion(client, MODEL) == "1"
    return root, warehouse, store, client


def test_two_registrations_racing_cannot_both_become_champion(registry) -> None:
    root, warehouse, store, client = registry
    candidates = {
        "b": QUICK_CONFIG,
        "c": config(root, "c", {"num_leaves: 63": "num_leaves: 31"}),
    }
    envs = {n: environment(root / n, warehouse, c, store) for n, c in candidates.items()}
    evaluating = [
        graph(env, "2013-01-01", "2013-02-28", *UP_TO_EVALUATION) for env in envs.values()
    ]
    for process in evaluating:
        finished(process)
    for name in envs:  # both were compared with v1, and both beat it
        report = DeltaLake(str(root / name / "lake")).read("evaluation_report")
        assert report["champion_version"][0] == "1"
        auc = {r: report.filter((pl.col("role") == r) & (pl.col("metric") == "roc_auc"))["value"][0]
               for r in ("champion", "model_on_champion_rows")}  # fmt: skip
        assert auc["model_on_champion_rows"] > auc["champion"]

    racing = [graph(env, "2013-01-01", "2013-02-28", "registry_entry") for env in envs.values()]
    for process in racing:
        finished(process)
    versions = [client.get_model_version(MODEL, v) for v in ("2", "3")]
    verdicts = sorted(v.tags["promotion"].split(":")[0] for v in versions)
    assert verdicts == ["challenger", "champion"]
    winner = next(v for v in versions if v.tags["promotion"].startswith("champion"))
    loser = next(v for v in versions if v is not winner)
    assert current_champion(client, MODEL) == str(winner.version)
    assert (
        f"champion changed since evaluation (compared with v1, now v{winner.version})"
        in loser.tags["promotion"]
    )
    # The audit trail holds the gate's two promotions, the loser's none.
    events = history(client, MODEL)
    moves = [(e.from_version, e.to_version) for e in events]
    assert moves == [("1", str(winner.version)), (None, "1")]
    assert all(e.via.startswith("dagster run ") and e.action == "promote" for e in events)
    assert events[0].reason == winner.tags["promotion"]


def test_the_champion_is_scored_only_after_its_own_training_window(registry) -> None:
    """Every champion of the quick model learned until Feb 14 (train January, validate
    Feb 1-14): a candidate testing on February is compared on Feb 15-28 only, and one
    testing inside that window is not compared at all."""
    root, warehouse, store, client = registry
    champion = current_champion(client, MODEL)
    later = config(
        root,
        "later",
        {
            QUICK_WINDOWS: "  train: {start: 2013-01-01, end: 2013-01-20}\n"
            "  validation: {start: 2013-01-21, end: 2013-01-31}\n"
            "  test: {start: 2013-02-01, end: 2013-02-28}\n"
        },
    )
    env = environment(root / "later", warehouse, later, store)
    finished(graph(env, "2013-01-01", "2013-02-28", *UP_TO_EVALUATION))
    lake = DeltaLake(str(root / "later" / "lake"))
    report = lake.read("evaluation_report")
    test = lake.read("training_dataset").filter(pl.col("split") == "test")
    after = test.filter(pl.col("day") > pl.date(2013, 2, 14)).height  # v1 learned until Feb 14
    rows = report.filter((pl.col("role") == "champion") & (pl.col("metric") == "rows"))
    assert rows["value"][0] == after < test.height
    assert report["champion_version"][0] == champion
    assert report["champion_refused"][0] is None

    inside = config(
        root,
        "inside",
        {
            QUICK_WINDOWS: "  train: {start: 2013-01-01, end: 2013-01-15}\n"
            "  validation: {start: 2013-01-16, end: 2013-01-24}\n"
            "  test: {start: 2013-01-25, end: 2013-01-31}\n"
        },
    )
    env = environment(root / "inside", warehouse, inside, store)
    finished(graph(env, "2013-01-01", "2013-01-31"))
    entry = DeltaLake(str(root / "inside" / "lake")).read("registry_entry").row(0, named=True)
    assert entry["verdict"] in {"challenger", "rejected"}
    assert not entry["promoted"]
    assert (
        f"no comparison with champion v{champion} (every test day is inside its own training "
        "window (it learned until 2013-02-14))"
    ) in entry["decision"]


def test_a_tampered_champion_is_not_compared(registry) -> None:
    """Its LightGBM text no longer matches the sha256 it was registered with."""
    root, _, _, client = registry
    champion = client.get_model_version(MODEL, current_champion(client, MODEL))
    artifacts = Path(client.get_run(str(champion.run_id)).info.artifact_uri.removeprefix("file://"))
    stored = artifacts / MODEL_TEXT_ARTIFACT
    original = stored.read_text()
    try:
        stored.write_text(original.replace("num_leaves=", "num_leaves=1", 1))
        test = (
            DeltaLake(str(root / "weak" / "lake"))
            .read("training_dataset")
            .filter(pl.col("split") == "test")
        )
        found = compare_with_champion(
            client, MODEL, test, np.zeros(test.height), label=LABEL, threshold=0.3
        )
    finally:
        stored.write_text(original)
    assert found.refused is not None and "sha256" in found.refused and not found.champion


def test_an_unreachable_registry_is_never_no_champion() -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        current_champion(client, MODEL)
    assert is_transient(failed.value)  # so the step is retried as I/O, and never promotes
    assert time.monotonic() - started < 60
