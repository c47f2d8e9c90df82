"""Live performance: the champion judged on real outcomes (champion_live_performance), and
its watch (champion_live_watch). January and February train and score; the real days stay
within the limit. Then a day lands whose outcomes were shifted (its arrival delays handed
out in reverse order of departure time, so the day's own distribution, and every contract,
is unchanged): the trailing live ROC AUC falls below the limit, the day is breached, the
webhook gets one alert and the sensor requests a retrain at the newest day. About 2
minutes on 2 cores.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.helpers.environment import QUICK_CONFIG
from tests.helpers.graph import LAKE_ASSETS, run_graph, settings_for
from tests.helpers.http_receiver import WebhookReceiver
from trainflow.as_of import AS_OF_TAG
from trainflow.config import load_config
from trainflow.defs.automation import AUTOMATION_TAG, DAILY_ASSETS, RETRAIN_ASSETS
from trainflow.defs.monitoring import LIVE_BREACH_TAG, champion_live_watch
from trainflow.defs.predictions import champion_live_performance, flight_delay_predictions
from trainflow.defs.resources import ExperimentConfigResource
from trainflow.lake.delta_lake import DeltaLake
from trainflow.stages.live_performance import TRAILING_DAYS
from trainflow.warehouse import landing
from trainflow.warehouse.factory import warehouse_at

MODEL = "trainflow-flight-delay-quick"
ASSETS = [*LAKE_ASSETS, flight_delay_predictions, champion_live_performance]
SHIFTED_DAY = dt.date(2013, 3, 1)

SHIFT_OUTCOMES = """
update raw.flights set arr_delay = shifted.arr_delay from (
    with by_departure as (
        select source_row, row_number() over (order by sched_dep_time, source_row) as r
        from raw.flights where flight_date = date '{day}' and arr_delay is not null
    ), by_delay as (
        select arr_delay, row_number() over (order by arr_delay desc, source_row) as r
        from raw.flights where flight_date = date '{day}' and arr_delay is not null
    )
    select source_row, arr_delay from by_departure join by_delay using (r)
) as shifted
where raw.flights.source_row = shifted.source_row and raw.flights.flight_date = date '{day}'
"""


def watch_tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    experiment = ExperimentConfigResource(path=str(QUICK_CONFIG))
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"experiment": experiment}
    ) as context:
        result = champion_live_watch(context)
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, built_warehouse: Path) -> dict:
    home = tmp_path_factory.mktemp("live")
    warehouse = home / "warehouse.duckdb"
    warehouse.write_bytes(built_warehouse.read_bytes())
    settings = settings_for(home / "home", warehouse, QUICK_CONFIG)  # the default limits
    instance = dg.DagsterInstance.ephemeral()
    first_tick = watch_tick(instance, None)
    trained = run_graph(settings, assets=ASSETS, instance=instance)
    quiet = watch_tick(instance, first_tick.cursor)

    landing.land(warehouse, [SHIFTED_DAY])
    with warehouse_at(str(warehouse)).transaction() as tx:
        tx.execute(SHIFT_OUTCOMES.format(day=SHIFTED_DAY))
    day = str(SHIFTED_DAY)
    new_day = run_graph(
        settings, days=(day, day), assets=ASSETS, instance=instance, selection=DAILY_ASSETS
    )
    return {
        "settings": settings,
        "instance": instance,
        "trained": trained,
        "quiet": quiet,
        "new_day": new_day,
        "lake": DeltaLake(settings.lake_uri),
    }


def test_real_days_are_measured_and_stay_within_the_limit(watched) -> None:
    live = watched["lake"].read("champion_live_performance")
    feb = live.filter(pl.col("day").is_between(dt.date(2013, 2, 15), dt.date(2013, 2, 28)))
    assert feb.height == 14
    assert feb["model_version"].unique().to_list() == [1]
    assert feb["judged"].all() and not feb["breached"].any()
    # Each day names its rows; the trailing window pools the 7 days scored by v1.
    assert (feb["day_rows"] > 500).all()
    assert (feb["trailing_days"] == TRAILING_DAYS).all()
    assert (feb["trailing_rows"] >= feb["day_rows"]).all()
    assert feb["auc_drop"].max() < feb["max_auc_drop"].min()  # type: ignore[operator]
    for column in ("day_log_loss", "day_brier", "day_calibration_error", "trailing_roc_auc"):
        assert feb[column].is_finite().all(), column
    assert watched["quiet"].run_requests == []


def test_a_day_with_shifted_outcomes_breaches_alerts_once_and_requests_a_retrain(
    watched, webhook_receiver: WebhookReceiver
) -> None:
    live = watched["lake"].read("champion_live_performance")
    shifted = live.filter(pl.col("day") == SHIFTED_DAY).row(0, named=True)
    assert shifted["breached"] and shifted["judged"]
    assert shifted["day_roc_auc"] < 0.5  # the day's outcomes run against the model
    assert shifted["day_auc_drop"] > shifted["max_day_auc_drop"]
    assert shifted["reason"].startswith("the day's ROC AUC")
    # No row was lost on the way: the shifted day's predictions are all there.
    predictions = watched["lake"].read("flight_delay_predictions")
    features = watched["lake"].read("flight_features")
    on_day = pl.col("day") == SHIFTED_DAY
    assert predictions.filter(on_day).height == features.filter(on_day).height > 0

    instance = watched["instance"]
    tick = watch_tick(instance, watched["quiet"].cursor)
    (request,) = tick.run_requests or []
    assert request.asset_selection == RETRAIN_ASSETS
    # The code location's own experiment, added to the instance's partitions for the run.
    assert request.partition_key == load_config(QUICK_CONFIG).name
    assert instance.has_dynamic_partition("experiments", request.partition_key)
    assert AS_OF_TAG not in request.tags  # the newest feature day, as the schedule's
    assert request.tags[LIVE_BREACH_TAG] == str(SHIFTED_DAY)
    assert request.tags[AUTOMATION_TAG] == "champion_live_watch"
    assert request.run_key == f"live-retrain:{MODEL}:v1"
    (payload,) = webhook_receiver.posts
    alert = payload["trainflow"]
    assert alert["key"] == f"live:{MODEL}:v1"
    assert alert["partition"] == str(SHIFTED_DAY)
    assert alert["runbook"] == ("docs/runbook.md#alert-the-champion-underperforms-on-real-outcomes")
    assert "below the evaluation's" in alert["error"]
    # The next tick has nothing new: no second page, no second request.
    again = watch_tick(instance, tick.cursor)
    assert again.run_requests == [] and len(webhook_receiver.posts) == 1
