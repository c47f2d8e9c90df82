"""LightGBM training is deterministic given data, config and seed, on real features."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.conftest import QUICK_CONFIG
from trainflow.config import load_config
from trainflow.defs.resources import WarehouseResource
from trainflow.evaluation.metrics import binary_metrics
from trainflow.features.flights import LABEL, build_flight_features
from trainflow.lake.delta_lake import DayWindow
from trainflow.models.baseline import fit_calendar_baseline, predict_baseline
from trainflow.models.lightgbm_model import load_model, predict, train_lightgbm


@pytest.fixture(scope="module")
def splits(built_warehouse) -> dict[str, pl.DataFrame]:
    flights = WarehouseResource(url=str(built_warehouse)).read_flights(
        DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    )
    features = build_flight_features(flights, sorted(set(flights["day"].to_list())))
    features = features.filter(pl.col(LABEL).is_not_null())
    windows = load_config(QUICK_CONFIG).windows
    return {
        name: features.filter(pl.col("day").is_between(w.start, w.end))
        for name, w in (
            ("train", windows.train),
            ("validation", windows.validation),
            ("test", windows.test),
        )
    }


def train(splits: dict[str, pl.DataFrame], seed: int):
    config = load_config(QUICK_CONFIG)
    return train_lightgbm(
        splits["train"],
        splits["validation"],
        features=config.features,
        label=LABEL,
        params=config.model.params,
        seed=seed,
        num_threads=config.model.num_threads,
        num_boost_round=300,
        early_stopping_rounds=30,
    )


def test_same_seed_same_model_bytes(splits) -> None:
    first, second = train(splits, seed=7), train(splits, seed=7)
    assert first.sha256 == second.sha256
    assert first.model_text == second.model_text


def test_seed_is_actually_used(splits) -> None:
    assert train(splits, seed=7).sha256 != train(splits, seed=8).sha256


def test_stored_text_predicts_like_the_trained_model_and_beats_baseline(splits) -> None:
    trained = train(splits, seed=7)
    test = splits["test"]
    reloaded = load_model(trained.model_text)
    direct = predict(trained.booster, test, trained.feature_names)
    assert (predict(reloaded, test, trained.feature_names) == direct).all()
    y = test[LABEL].to_numpy()
    model_auc = binary_metrics(y, direct, 0.3)["roc_auc"]
    baseline = fit_calendar_baseline(splits["train"], LABEL)
    assert model_auc > binary_metrics(y, predict_baseline(baseline, test), 0.3)["roc_auc"]
