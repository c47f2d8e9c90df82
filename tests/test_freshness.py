"""Freshness against landed data: the checks' verdicts follow the landed days (never a
clock), the sensor records a verdict when it changes and posts one alert per breach to a
real HTTP receiver; prod carries Dagster's wall-clock freshness policies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from tests.conftest import thin_history_config
from tests.helpers.graph import partition_range_tags, settings_for
from tests.helpers.http_receiver import WebhookReceiver
from trainflow.definitions import build_definitions, build_resources
from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.features import flight_features
from trainflow.defs.freshness import (
    CHAMPION_CHECK,
    FEATURES_CHECK,
    WALL_CLOCK_POLICIES,
    features_freshness,
    landed_data_freshness,
)
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.defs.resources import ExperimentConfigResource
from trainflow.freshness import Freshness
from trainflow.settings import Settings
from trainflow.warehouse import landing


def test_lag_is_counted_in_landed_days() -> None:
    days = [dt.date(2013, 2, d) for d in (1, 2, 3, 5, 6)]  # Feb 4 never landed
    assert Freshness("x", days, dt.date(2013, 2, 3), 1).lag == 2
    assert not Freshness("x", days, dt.date(2013, 2, 3), 1).passed
    assert Freshness("x", days, dt.date(2013, 2, 5), 1).passed
    assert Freshness("x", days, None, 1).lag == 5
    assert Freshness("x", [], None, 1).passed  # nothing landed: nothing to be late for


def test_the_sensor_records_each_change_and_alerts_once_per_breach(
    warehouse_copy: Path, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    settings = settings_for(tmp_path / "home", warehouse_copy)
    resources = build_resources(settings)
    resources["experiment"] = ExperimentConfigResource(path=str(thin_history_config(tmp_path)))
    # Features for Feb 1..5 only, while the warehouse has landed through Feb 28.
    result = dg.materialize(
        [raw_snapshot, validated_flights, flight_features],
        resources={**resources, "cache_policy": CachePolicyResource()},
        tags=partition_range_tags("2013-02-01", "2013-02-05"),
    )
    assert result.success
    with dg.instance_for_test() as instance:
        cursor: str | None = None

        def tick():
            nonlocal cursor
            used = ("warehouse", "lake", "experiment", "mlflow_tracking")
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={k: resources[k] for k in used}
            ) as context:
                data = landed_data_freshness.evaluate_tick(context)
            cursor = data.cursor
            return data

        first = tick()
        checks = {e.check_name: e for e in first.asset_events}
        assert not checks[FEATURES_CHECK].passed
        assert checks[FEATURES_CHECK].metadata["lag_landed_days"].value == 23
        assert checks[FEATURES_CHECK].description == (
            "flight_features covers up to 2013-02-05, 23 landed day(s) behind the newest landed "
            "day 2013-02-28: over the limit of 1"
        )
        assert not checks[CHAMPION_CHECK].passed  # no champion yet: nothing is fresh
        keys = sorted(p["trainflow"]["key"] for p in webhook_receiver.posts)
        assert keys == [
            f"freshness:flight_features:{FEATURES_CHECK}:2013-02-28",
            f"freshness:registry_entry:{CHAMPION_CHECK}:2013-02-28",
        ]
        assert all(
            p["trainflow"]["runbook"] == "docs/runbook.md#alert-freshness-breach"
            for p in webhook_receiver.posts
        )
        # Unchanged: no new verdict recorded, no new post.
        assert tick().asset_events == []
        assert len(webhook_receiver.posts) == 2

        # The days after Feb 6 are withdrawn from the warehouse: the features are fresh.
        with duckdb.connect(str(warehouse_copy)) as conn:
            conn.execute("delete from raw.flights where flight_date > date '2013-02-06'")
        recovered = {e.check_name: e for e in tick().asset_events}
        assert recovered[FEATURES_CHECK].passed
        assert recovered[FEATURES_CHECK].metadata["lag_landed_days"].value == 1
        assert len(webhook_receiver.posts) == 2

        # Two more days land: a new breach, one more alert, and only for the features.
        landing.land(warehouse_copy, [dt.date(2013, 2, 7), dt.date(2013, 2, 8)])
        again = {e.check_name: e for e in tick().asset_events}
        assert not again[FEATURES_CHECK].passed
        assert len(webhook_receiver.posts) == 3
        assert webhook_receiver.posts[2]["trainflow"]["key"] == (
            f"freshness:flight_features:{FEATURES_CHECK}:2013-02-08"
        )
        tick()
        assert len(webhook_receiver.posts) == 3
    assert features_freshness(resources["warehouse"], resources["lake"]).lag == 3


def test_prod_carries_wall_clock_freshness_policies() -> None:
    prod = Settings.from_env(
        {
            "TRAINFLOW_PROFILE": "prod",
            "TRAINFLOW_LAKE_URI": "s3://bucket/lake",
            "TRAINFLOW_WAREHOUSE_URL": "postgresql://trainflow@db:5432/warehouse",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "TRAINFLOW_EXECUTOR": "multiprocess",
        }
    )
    graph = build_definitions(prod).resolve_asset_graph()
    for key, policy in WALL_CLOCK_POLICIES.items():
        assert graph.get(key).freshness_policy == policy, key
    local = build_definitions(Settings.from_env({})).resolve_asset_graph()
    assert all(local.get(key).freshness_policy is None for key in WALL_CLOCK_POLICIES)
    checks = {key.to_user_string() for key in local.asset_check_keys}
    assert {f"flight_features:{FEATURES_CHECK}", f"registry_entry:{CHAMPION_CHECK}"} <= checks
