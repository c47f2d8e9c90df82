"""A feature day never hides missing history: a validated day missing from its 28-day window
fails it (naming both days) unless the config allows it; what was allowed is recorded; and
when the missing day arrives, exactly the feature days that waited on it compute."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.conftest import QUICK_CONFIG
from tests.helpers.graph import partition_range_tags, settings_for
from trainflow.definitions import build_resources
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.features.flights import FeatureError, history_coverage, refuse_missing_history
from trainflow.lake.delta_lake import DeltaLake

START = dt.date(2013, 1, 1)
GAP = dt.date(2013, 1, 10)
ASSETS = [raw_snapshot, validated_flights, flight_features]


def days(first: str, last: str) -> set[dt.date]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return {a + dt.timedelta(n) for n in range((b - a).days + 1)}


def test_coverage_counts_expected_missing_and_before_the_data() -> None:
    present = days("2013-01-01", "2013-02-28") - {GAP}
    early = history_coverage(dt.date(2013, 1, 5), present, START)
    assert (early.expected, early.present, early.before_data, early.missing) == (4, 4, 24, ())
    thin = history_coverage(dt.date(2013, 2, 1), present, START)
    assert (thin.expected, thin.present, thin.missing) == (28, 27, (GAP,))
    assert history_coverage(dt.date(2013, 2, 8), present, START).missing == ()  # Jan 11..Feb 7


def test_refusal_names_each_missing_day_and_the_feature_days_waiting_on_it() -> None:
    present = days("2013-01-01", "2013-02-28") - {GAP}
    coverage = {
        d: history_coverage(d, present, START) for d in sorted(days("2013-01-01", "2013-02-28"))
    }
    with pytest.raises(FeatureError) as refused:
        refuse_missing_history(coverage, 0, "quick")
    message = str(refused.value)
    assert "29 feature day(s) wait on validated_flights days" in message
    assert "2013-01-10 (needed by 2013-01-10..2013-02-07)" in message
    assert "max_missing_history_days is 0 (config quick); nothing was written" in message
    refuse_missing_history({d: c for d, c in coverage.items() if d != GAP}, 1, "quick")


def run(settings, assets, first: str, last: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=[a.key for a in assets],
        resources=build_resources(settings),
        tags=partition_range_tags(first, last),
        raise_on_error=False,
    )


def cache_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"hit": set(), "miss": set()}
    for event in result.asset_materializations_for_node("flight_features"):
        found[str(event.metadata["cache"].value)].add(str(event.partition))
    return found


def test_a_failed_validation_day_holds_back_exactly_its_feature_days(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path / "home", warehouse_copy)
    lake = DeltaLake(settings.lake_uri)
    # Jan 10 never passes validation (here: never validated), every other day does.
    assert run(settings, ASSETS[:2], "2013-01-01", "2013-01-09").success
    assert run(settings, ASSETS[:2], "2013-01-11", "2013-02-28").success

    # Early January: history before the data start is allowed, and recorded.
    early = run(settings, [flight_features], "2013-01-01", "2013-01-09")
    assert early.success
    jan_5 = next(
        e for e in early.asset_materializations_for_node("flight_features")
        if e.partition == "2013-01-05"
    )  # fmt: skip
    assert jan_5.metadata["history_days"].value == "4/4"
    assert jan_5.metadata["history_days_before_data"].value == 24
    version = lake.version("flight_features")

    # The whole range: 29 feature days wait on Jan 10; nothing of the range is written.
    waiting = run(settings, [flight_features], "2013-01-01", "2013-02-28")
    assert not waiting.success
    (failure,) = waiting.get_step_failure_events()
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "29 feature day(s) wait on validated_flights days" in message
    assert "2013-01-10 (needed by 2013-01-10..2013-02-07)" in message
    assert not [e for e in waiting.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert lake.version("flight_features") == version

    # Days whose windows do not hold Jan 10 compute as usual.
    assert run(settings, [flight_features], "2013-02-08", "2013-02-28").success

    # Jan 10 passes validation: exactly the 29 feature days that waited on it compute.
    assert run(settings, ASSETS[:2], "2013-01-10", "2013-01-10").success
    arrived = run(settings, [flight_features], "2013-01-01", "2013-02-28")
    assert arrived.success
    outcomes = cache_outcomes(arrived)
    assert outcomes["miss"] == {d.isoformat() for d in days("2013-01-10", "2013-02-07")}
    assert len(outcomes["hit"]) == 30
    stored = lake.read("flight_features")
    assert stored.filter(stored["day"] == dt.date(2013, 2, 1))[
        "history_days_present"
    ].unique().to_list() == [28]


def test_allowed_missing_history_is_computed_and_recorded(
    warehouse_copy: Path, tmp_path: Path
) -> None:
    allowing = tmp_path / "allowing.yaml"
    allowing.write_text(QUICK_CONFIG.read_text() + "max_missing_history_days: 1\n")
    settings = settings_for(tmp_path / "home", warehouse_copy, allowing)
    assert run(settings, ASSETS[:2], "2013-01-01", "2013-01-09").success
    assert run(settings, ASSETS[:2], "2013-01-11", "2013-02-28").success
    allowed = run(settings, [flight_features], "2013-01-11", "2013-02-28")
    assert allowed.success
    feb_1 = next(
        e for e in allowed.asset_materializations_for_node("flight_features")
        if e.partition == "2013-02-01"
    )  # fmt: skip
    assert feb_1.metadata["history_days"].value == "27/28"
    assert feb_1.metadata["history_days_missing"].value == "2013-01-10"
    assert feb_1.metadata["max_missing_history_days"].value == 1
    stored = DeltaLake(settings.lake_uri).read("flight_features")
    per_day = dict(stored.group_by("day").agg(pl.col("history_days_present").first()).iter_rows())
    assert per_day[dt.date(2013, 2, 1)] == 27 and per_day[dt.date(2013, 2, 8)] == 28
