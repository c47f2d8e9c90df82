"""Bad input in the real warehouse, one case per test: each ends in a clear failure naming
the problem, or in quarantine with exact counts; no row is ever lost
(rows in = rows validated + rows quarantined)."""

import datetime as dt
import os
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from tests.conftest import BIN, thin_history_config
from tests.helpers.graph import ingest_resources, partition_range_tags
from trainflow.contracts import load_contract
from trainflow.contracts.quarantine import visible
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import (
    CONTRACT_CHECKS,
    QUARANTINE_TABLE,
    raw_snapshot,
    validated_flights,
)
from trainflow.lake.delta_lake import DeltaLake
from trainflow.settings import PACKAGED_CONTRACTS_DIR
from trainflow.warehouse import landing

DAYS = ("2013-02-01", "2013-02-05")
# The shipped flights contract, as every message names it ("flights v8").
CONTRACT = load_contract(PACKAGED_CONTRACTS_DIR / "flights.yaml")
LABEL = CONTRACT.label
BAD_DAY = "2013-02-03"


def materialize(
    warehouse: Path, lake: Path, days: tuple[str, str] = DAYS
) -> dg.ExecuteInProcessResult:
    lake.parent.mkdir(parents=True, exist_ok=True)
    return dg.materialize(
        [raw_snapshot, validated_flights, flight_features],
        # A few February days: their January history was never validated.
        resources=ingest_resources(warehouse, lake, thin_history_config(lake.parent)),
        tags=partition_range_tags(*days),
        raise_on_error=False,
    )


def change(warehouse: Path, *statements: str) -> None:
    with duckdb.connect(str(warehouse)) as conn:
        for statement in statements:
            conn.execute(statement)


def failure_message(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    assert not result.success
    # Deterministic failures are never retried (retries are for I/O).
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    event = result.get_step_failure_events()[0]
    error = event.step_failure_data.error
    assert error is not None
    return event.step_key or "", str(error.cause.message if error.cause else error.message)


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """The contract's asset checks as the run recorded them: name -> passed."""
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def passed_until(failed: str) -> dict[str, bool]:
    """Check outcomes when `failed` fails: the expectations before it passed, later ones
    were not evaluated (they are checked in CONTRACT_CHECKS' order)."""
    names = list(CONTRACT_CHECKS)
    return {**dict.fromkeys(names[: names.index(failed)], True), failed: False}


def computed_days(result: dg.ExecuteInProcessResult) -> dict[str, list[str]]:
    """asset -> the partitions the run computed (cache misses), from its events."""
    found: dict[str, list[str]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if "cache" in mat.metadata and mat.metadata["cache"].value == "miss":
            found.setdefault(mat.asset_key.to_user_string(), []).append(str(mat.partition))
    return {asset: sorted(days) for asset, days in found.items()}


def drift_view(expression: str) -> str:
    """Schema drift upstream: the warehouse model itself changes shape."""
    return (
        "create or replace view main.flights_enriched as "
        f"select {expression} from main.flights_enriched_original"
    )


@pytest.fixture
def warehouse(warehouse_copy: Path) -> Path:
    change(
        warehouse_copy,
        "create table main.flights_enriched_original as select * from main.flights_enriched",
    )
    return warehouse_copy


def assert_nothing_lost(lake: DeltaLake, quarantined_rows: int) -> None:
    snapshot = lake.read("raw_snapshot")
    validated = lake.read("validated_flights")
    quarantine = visible(lake.read(QUARANTINE_TABLE), lake.day_keys("validated_flights"))
    assert quarantine["row_index"].n_unique() == quarantined_rows
    kept = set(validated["flight_id"].to_list())
    rejected = {int(r) for r in quarantine["row_json"].str.json_path_match("$.flight_id")}
    assert kept.isdisjoint(rejected)
    assert kept | rejected == set(snapshot["flight_id"].to_list())


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "* exclude (carrier)",
            "column 'carrier' is missing (rule: required column)",
        ),
        (
            "* rename (carrier as carrier_code)",
            "column 'carrier' is missing (rule: required column) "
            "(columns not in the contract: airline_name, carrier_code",
        ),
        (
            "* replace (cast(arr_delay_minutes as varchar) as arr_delay_minutes)",
            "column 'arr_delay_minutes' has type String, the contract requires Float64 (rule: type)",
        ),
    ],
    ids=["dropped-column", "renamed-column", "retyped-column"],
)
def test_schema_drift_fails_fast_naming_column_version_and_rule(
    warehouse: Path, tmp_path: Path, expression: str, expected: str
) -> None:
    change(warehouse, drift_view(expression))
    result = materialize(warehouse, tmp_path / "lake")
    assert check_outcomes(result) == {"schema": False}
    step, message = failure_message(result)
    assert step == "validated_flights"
    assert f"partition 2013-02-01..2013-02-05 violates data contract {LABEL}" in message
    assert expected in message
    assert DeltaLake(str(tmp_path / "lake")).version("validated_flights") is None
    assert DeltaLake(str(tmp_path / "lake")).version("flight_features") is None


def test_null_burst_in_a_key_fails_the_partition_and_keeps_the_rejects(
    warehouse: Path, tmp_path: Path
) -> None:
    change(
        warehouse,
        f"update raw.flights set carrier = null where flight_date = date '{BAD_DAY}' "
        "and source_row % 4 = 0",
    )
    result = materialize(warehouse, tmp_path / "lake")
    assert check_outcomes(result) == passed_until("max_reject_fraction")
    step, message = failure_message(result)
    assert step == "validated_flights"
    assert f"partition {BAD_DAY}:" in message
    assert "over max_reject_fraction 5.0%: column 'carrier' rule not_nullable" in message
    lake = DeltaLake(str(tmp_path / "lake"))
    assert lake.version("validated_flights") is None
    quarantine = lake.read(QUARANTINE_TABLE)
    assert quarantine["day"].cast(pl.String).unique().to_list() == [BAD_DAY]
    assert (
        quarantine.height
        == lake.read("raw_snapshot")
        .filter((pl.col("day").cast(pl.String) == BAD_DAY) & pl.col("carrier").is_null())
        .height
    )


@pytest.mark.parametrize(
    ("statement", "column", "rule"),
    [
        ("update raw.flights set carrier = 'ZZ' where {bad} and source_row % 50 = 0",
         "carrier", "isin(enum)"),
        ("update raw.flights set distance = -5 where {bad} and source_row % 50 = 0",
         "distance_miles", "greater_than_or_equal_to(1.0)"),
        ("update raw.flights set origin = null where {bad} and source_row % 50 = 0",
         "origin", "not_nullable"),
        # A label column with no bound before contract v5: 9999 minutes late is no delay.
        ("update raw.flights set arr_delay = 9999 where {bad} and source_row % 50 = 0",
         "arr_delay_minutes", "less_than_or_equal_to(2880.0)"),
    ],
    ids=["unknown-carrier", "out-of-range-distance", "null-key", "impossible-delay"],
)  # fmt: skip
def test_bad_rows_are_quarantined_and_counted(
    warehouse: Path, tmp_path: Path, statement: str, column: str, rule: str
) -> None:
    change(warehouse, statement.format(bad=f"flight_date = date '{BAD_DAY}'"))
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        row = conn.execute(
            f"select count(*) from raw.flights where flight_date = date '{BAD_DAY}' "
            "and source_row % 50 = 0"
        ).fetchone()
    assert row is not None
    bad_rows = int(row[0])
    result = materialize(warehouse, tmp_path / "lake")
    assert result.success
    lake = DeltaLake(str(tmp_path / "lake"))
    quarantine = lake.read(QUARANTINE_TABLE)
    assert quarantine.select("column", "rule").unique().rows() == [(column, rule)]
    assert_nothing_lost(lake, bad_rows)
    events = {
        e.materialization.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == validated_flights.key
    }
    counts = {
        k: events[BAD_DAY][k].value for k in ("rows_in", "rows_validated", "rows_quarantined")
    }
    assert counts["rows_quarantined"] == bad_rows
    assert counts["rows_in"] == counts["rows_validated"] + bad_rows
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert all(check.passed for check in checks.values())
    assert set(checks) == set(CONTRACT_CHECKS)
    observed = checks["max_reject_fraction"].metadata
    assert observed["worst_partition"].value == BAD_DAY
    assert observed["max_reject_fraction_observed"].value == round(bad_rows / counts["rows_in"], 6)
    assert events["2013-02-02"]["rows_quarantined"].value == 0
    # The quarantine is an asset of its own: one materialization per partition, counted.
    quarantined = {
        e.materialization.partition: e.materialization.metadata["rows_quarantined"].value
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(QUARANTINE_TABLE)
    }
    assert quarantined == {day: (bad_rows if day == BAD_DAY else 0) for day in events}


def test_a_value_the_warehouse_cannot_cast_is_quarantined_never_a_database_error(
    warehouse: Path, tmp_path: Path
) -> None:
    # The producer starts sending the departure delay as text, and some of it is not a number:
    # staging's cast used to fail the read with the database's own conversion error.
    change(
        warehouse,
        "alter table raw.flights alter dep_delay type varchar",
        f"update raw.flights set dep_delay = '12 min' where flight_date = date '{BAD_DAY}' "
        "and source_row % 50 = 0",
    )
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        row = conn.execute("select count(*) from raw.flights where dep_delay = '12 min'").fetchone()
    assert row is not None and row[0] > 0
    result = materialize(warehouse, tmp_path / "lake")
    assert result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    lake = DeltaLake(str(tmp_path / "lake"))
    quarantine = lake.read(QUARANTINE_TABLE).select(
        pl.col("day").cast(pl.String), "column", "rule", "observed"
    )
    assert quarantine.unique().rows() == [
        (BAD_DAY, "dep_delay_minutes", "castable_to(Float64)", "12 min")
    ]
    assert_nothing_lost(lake, quarantined_rows=row[0])
    marked = lake.read("raw_snapshot").filter(pl.col("cast_failures").is_not_null())
    assert marked.height == row[0] and marked["dep_delay_minutes"].null_count() == row[0]


def test_duplicate_keys_are_quarantined(warehouse: Path, tmp_path: Path) -> None:
    # The producer's file repeats some flights; the landing log counts what landed.
    repeated = f"flight_date = date '{BAD_DAY}' and source_row % 100 = 0"
    change(
        warehouse,
        f"update raw.landings set flight_rows = flight_rows + (select count(*) from raw.flights "
        f"where {repeated}) where day = date '{BAD_DAY}'",
        f"insert into raw.flights select * from raw.flights where {repeated}",
    )
    result = materialize(warehouse, tmp_path / "lake")
    assert result.success
    lake = DeltaLake(str(tmp_path / "lake"))
    quarantine = lake.read(QUARANTINE_TABLE)
    assert quarantine.select("column", "rule").unique().rows() == [
        ("flight_id", "field_uniqueness")
    ]
    duplicated = lake.read("raw_snapshot").group_by("flight_id").len().filter(pl.col("len") > 1)
    assert quarantine["row_index"].n_unique() == 2 * duplicated.height  # both copies held
    assert (
        lake.read("validated_flights")["flight_id"].n_unique()
        == lake.read("validated_flights").height
    )


def test_empty_day_fails_naming_the_partition(warehouse: Path, tmp_path: Path) -> None:
    change(warehouse, f"delete from raw.flights where flight_date = date '{BAD_DAY}'")
    step, message = failure_message(materialize(warehouse, tmp_path / "lake"))
    assert step == "raw_snapshot"
    assert (
        f"raw_snapshot: no rows in the warehouse for partition(s) {BAD_DAY}; partition "
        f"{BAD_DAY}: the landing log records 814 rows landed, the warehouse holds 0 (rule: "
        "rows_landed; likely cause: a partial load, or rows deleted after landing)"
    ) in message


def test_a_day_stamped_with_its_neighbours_date_is_named_with_both_counts(
    warehouse: Path, tmp_path: Path
) -> None:
    # Upstream stamps Feb 3's flights with Feb 4's date: Feb 3 was landed (the landing log
    # says so) and is empty now; Feb 4 holds both days' rows.
    change(
        warehouse,
        f"update raw.flights set flight_date = date '2013-02-04' where flight_date = date '{BAD_DAY}'",
    )
    step, message = failure_message(materialize(warehouse, tmp_path / "lake"))
    assert step == "raw_snapshot"
    assert (
        f"raw_snapshot: no rows in the warehouse for partition(s) {BAD_DAY}; partition "
        f"{BAD_DAY}: the landing log records 814 rows landed, the warehouse holds 0 (rule: "
        "rows_landed; likely cause: rows stamped with another date: 2013-02-04 holds 1746 "
        "rows where 932 were landed)"
    ) in message
    # Feb 4 on its own: snapshotted (every row kept), refused by the contract.
    result = materialize(warehouse, tmp_path / "lake", ("2013-02-04", "2013-02-05"))
    assert check_outcomes(result) == passed_until("rows_landed")
    step, message = failure_message(result)
    assert step == "validated_flights"
    assert (
        f"data contract {LABEL} violated (column 'landed_rows', rule: rows_landed): partition "
        "2013-02-04: the landing log records 932 rows landed, the snapshot holds 1746 (814 "
        "more: rows of another day stamped with this date, or the day landed twice)"
    ) in message
    lake = DeltaLake(str(tmp_path / "lake"))
    assert (
        lake.read("raw_snapshot").filter(pl.col("day").cast(pl.String) == "2013-02-04").height
        == 1746
    )
    assert lake.version("validated_flights") is None


def test_a_partial_load_fails_the_volume_of_its_reference_window(
    warehouse: Path, tmp_path: Path
) -> None:
    # The producer's file for Feb 4 held 45% of the day, and the landing log says so too:
    # only the day's volume against the validated days before it shows the loss.
    change(
        warehouse,
        "delete from raw.flights where flight_date = date '2013-02-04' and source_row % 20 >= 9",
        "update raw.landings set flight_rows = (select count(*) from raw.flights "
        "where flight_date = date '2013-02-04') where day = date '2013-02-04'",
    )
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        row = conn.execute(
            "select count(*) from raw.flights where flight_date = date '2013-02-04'"
        ).fetchone()
    assert row is not None and row[0] >= 400  # not a thin day: min_rows_per_day holds
    result = materialize(warehouse, tmp_path / "lake", ("2013-01-25", "2013-02-05"))
    assert check_outcomes(result) == passed_until("volume_vs_reference")
    step, message = failure_message(result)
    assert step == "validated_flights"
    reference = [922, 680, 823, 923, 890, 900, 928, 926, 682, 814]  # Jan 25 .. Feb 3
    median = sorted(reference)[4:6]
    median_rows = sum(median) / 2
    assert (
        f"data contract {LABEL} violated (rule: volume_vs_reference): partition 2013-02-04: "
        f"{row[0]} rows, {row[0] / median_rows:.2f} times the median of its reference window "
        f"({median_rows:.0f} rows per day over 10 validated days, 2013-01-25..2013-02-03), "
        "outside [0.5, 1.5]"
    ) in message
    assert DeltaLake(str(tmp_path / "lake")).version("validated_flights") is None


def check_metadata(result: dg.ExecuteInProcessResult, check: str) -> dict[str, Any]:
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == check)
    return {name: value.value for name, value in evaluation.metadata.items()}


def table_rows(table: Any) -> list[dict[str, Any]]:
    return [record.data for record in table.records]


def test_a_day_in_kilometres_fails_its_distribution_and_its_rows_stay_inspectable(
    warehouse: Path, tmp_path: Path
) -> None:
    # Upstream starts sending Feb 4's distances in kilometres: all but the Honolulu flights
    # stay inside the physical bounds, so no row rule would notice the day.
    change(
        warehouse,
        "update raw.flights set distance = cast(round(distance * 1.609344) as bigint) "
        "where flight_date = date '2013-02-04'",
    )
    result = materialize(warehouse, tmp_path / "lake", ("2013-01-25", "2013-02-05"))
    assert check_outcomes(result) == passed_until("distribution_vs_reference")
    step, message = failure_message(result)
    assert step == "validated_flights"
    # The same measure, from the snapshot the run froze: the day's 90th percentile of its
    # valid rows against the median of the validated days' before it.
    lake = DeltaLake(str(tmp_path / "lake"))
    snapshot = lake.read("raw_snapshot").filter(pl.col("distance_miles") <= 6000)
    q90 = snapshot.group_by("day").agg(pl.col("distance_miles").quantile(0.9, "nearest"))
    by_day = {str(d): v for d, v in q90.iter_rows()}
    day = by_day.pop("2013-02-04")
    median = statistics.median(v for d, v in by_day.items() if d < "2013-02-04")
    assert (
        f"data contract {LABEL} violated (rule: distribution_vs_reference): partition "
        f"2013-02-04: column 'distance_miles' q90 {day:.6g} is {day / median:.3g} times the "
        f"median of its reference window ({median:.6g} over 10 validated days, "
        "2013-01-25..2013-02-03), outside ratio in [0.88, 1.12] (the partition's rows stay "
        "in raw_snapshot to inspect"
    ) in message
    # Nothing of the run is validated; every row of the day is in the snapshot.
    assert lake.version("validated_flights") is None
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        landed = conn.execute(
            "select count(*) from raw.flights where flight_date = date '2013-02-04'"
        ).fetchone()
    day_rows = lake.read("raw_snapshot").filter(pl.col("day").cast(pl.String) == "2013-02-04")
    assert landed is not None and day_rows.height == landed[0]
    # The failing check shows the column, the observed ratio and limit, and the day beside
    # its window as a table.
    metadata = check_metadata(result, "distribution_vs_reference")
    assert metadata["column"] == "distance_miles"
    assert metadata["partition"] == f"2013-02-04: {day / median:.3f}"
    assert metadata["limit"] == "ratio in [0.88, 1.12]"
    rows = table_rows(metadata["partition_vs_window"])
    assert [r["role"] for r in rows] == ["reference"] * 10 + ["window median", "partition"]
    assert rows[-1] == {"day": "2013-02-04", "role": "partition", "distance_miles.q90": day}
    assert rows[-2]["distance_miles.q90"] == median


def test_every_expectation_shows_its_observed_value_limit_and_worst_partition(
    warehouse: Path, tmp_path: Path
) -> None:
    result = materialize(warehouse, tmp_path / "lake", ("2013-01-01", "2013-01-20"))
    assert result.success
    assert check_outcomes(result) == dict.fromkeys(CONTRACT_CHECKS, True)
    volume = check_metadata(result, "volume_vs_reference")
    assert volume["limit"] == "[0.5, 1.5]"
    assert volume["partitions_checked"] == 13  # from Jan 8: seven validated days before
    worst_day = volume["worst_partition"].split(":")[0]
    rows = table_rows(volume["worst_partition_vs_window"])
    assert rows[-1]["day"] == worst_day and rows[-1]["role"] == "partition"
    distribution = check_metadata(result, "distribution_vs_reference")
    worst = distribution["worst_column"]
    column = worst.split(" on ")[0]
    assert column in CONTRACT.expectations.distribution_vs_reference
    assert any(name.startswith(f"{column} (") for name in distribution)
    rows = table_rows(distribution["worst_column_vs_window"])
    assert rows[-1]["role"] == "partition" and rows[-1]["day"] == worst.split(" on ")[1][:10]
    landed = check_metadata(result, "rows_landed")
    assert landed["partitions_reconciled"] == 20


def test_thin_day_fails_min_rows_rule(warehouse: Path, tmp_path: Path) -> None:
    change(
        warehouse,
        f"delete from raw.flights where flight_date = date '{BAD_DAY}' and source_row % 10 <> 0",
    )
    step, message = failure_message(materialize(warehouse, tmp_path / "lake"))
    assert step == "validated_flights"
    assert f"partition(s) {BAD_DAY} (" in message
    assert f"violate data contract {LABEL}: fewer than 400 rows (rule: min_rows_per_day)" in message


def test_null_rate_over_the_limit_fails_naming_partition_column_and_rule(
    warehouse: Path, tmp_path: Path
) -> None:
    # The tail-number feed drops for half of a day's rows (a null, not a row-level error).
    change(
        warehouse,
        f"update raw.flights set tailnum = null where flight_date = date '{BAD_DAY}' "
        "and source_row % 2 = 0",
    )
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        row = conn.execute(
            "select avg(cast(tailnum is null as double)) from main.flights_enriched "
            f"where day = date '{BAD_DAY}'"
        ).fetchone()
    assert row is not None
    result = materialize(warehouse, tmp_path / "lake")
    assert check_outcomes(result) == passed_until("max_null_fraction")
    step, message = failure_message(result)
    assert step == "validated_flights"
    assert f"data contract {LABEL} violated (rule: max_null_fraction): " in message
    assert (
        f"partition {BAD_DAY}: column 'tailnum' is null in {row[0]:.1%} of rows, "
        "over max_null_fraction 35.0%"
    ) in message
    assert "partition 2013-02-02" not in message
    assert DeltaLake(str(tmp_path / "lake")).version("validated_flights") is None


def test_timestamps_shifted_by_a_timezone_fail_the_partition_and_keep_every_row(
    warehouse: Path, tmp_path: Path
) -> None:
    # Upstream starts writing New York wall-clock time labelled as UTC (5 hours early in
    # February): the weather join would silently pick the wrong hour's weather.
    change(
        warehouse,
        "update raw.flights set time_hour = strftime(cast(time_hour as timestamptz) "
        "at time zone 'America/New_York', '%Y-%m-%dT%H:%M:%SZ') "
        f"where flight_date = date '{BAD_DAY}'",
    )
    result = materialize(warehouse, tmp_path / "lake")
    assert check_outcomes(result) == passed_until("max_reject_fraction")
    step, message = failure_message(result)
    lake = DeltaLake(str(tmp_path / "lake"))
    day_rows = lake.read("raw_snapshot").filter(pl.col("day").cast(pl.String) == BAD_DAY).height
    assert step == "validated_flights"
    assert (
        f"partition {BAD_DAY}: {day_rows} of {day_rows} rows (100.0%) rejected, over "
        "max_reject_fraction 5.0%: column 'sched_dep_hour_utc' rule "
        f"utc_hour_of(sched_dep_local, America/New_York) ({day_rows} rows)"
    ) in message
    quarantine = lake.read(QUARANTINE_TABLE)
    assert quarantine["row_index"].n_unique() == day_rows  # every row kept, none lost
    assert lake.version("validated_flights") is None


def land_late(warehouse: Path, late_day: str, newest_landed: str) -> None:
    """Warehouse state where `late_day` was missing while days up to `newest_landed` had
    landed; then `late_day` lands, through the real landing code."""
    change(
        warehouse,
        f"delete from raw.flights where flight_date = date '{late_day}' "
        f"or flight_date > date '{newest_landed}'",
        f"delete from raw.weather where weather_date = date '{late_day}' "
        f"or weather_date > date '{newest_landed}'",
        f"delete from raw.landings where day = date '{late_day}' or day > date '{newest_landed}'",
    )


def test_late_day_within_the_allowance_redoes_the_feature_windows_that_include_it(
    warehouse: Path, tmp_path: Path
) -> None:
    land_late(warehouse, BAD_DAY, newest_landed=DAYS[1])
    lake_path = tmp_path / "lake"
    assert materialize(warehouse, lake_path, ("2013-02-01", "2013-02-02")).success
    assert materialize(warehouse, lake_path, ("2013-02-04", "2013-02-05")).success
    landing.land(warehouse, [dt.date.fromisoformat(BAD_DAY)])  # two days after Feb 5

    result = materialize(warehouse, lake_path)
    assert result.success
    # The late day is snapshotted and validated; every validated day whose reference window
    # holds it (Feb 4, 5: validated against windows without it) is validated again, every
    # feature day whose 28-day window holds it is recomputed; Feb 1 and 2 are untouched.
    assert computed_days(result) == {
        "raw_snapshot": [BAD_DAY],
        "validated_flights": [BAD_DAY, "2013-02-04", "2013-02-05"],
        "flight_features": [BAD_DAY, "2013-02-04", "2013-02-05"],
    }
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["allowed_late_arrival"].passed
    assert checks["allowed_late_arrival"].metadata["max_days_late_observed"].value == 2
    lake = DeltaLake(str(lake_path))
    features = lake.read("flight_features")
    assert features["flight_id"].n_unique() == features.height
    assert features.filter(pl.col("day").cast(pl.String) == BAD_DAY).height > 0
    assert_nothing_lost(lake, quarantined_rows=0)


def test_day_landed_later_than_allowed_fails_naming_its_lateness(
    warehouse: Path, tmp_path: Path
) -> None:
    land_late(warehouse, BAD_DAY, newest_landed="2013-02-28")
    landing.land(warehouse, [dt.date.fromisoformat(BAD_DAY)])  # 25 days after Feb 28
    result = materialize(warehouse, tmp_path / "lake")
    assert check_outcomes(result) == passed_until("allowed_late_arrival")
    step, message = failure_message(result)
    assert step == "validated_flights"
    assert (
        f"partition(s) {BAD_DAY} (25 days late) violate data contract {LABEL}: landed "
        "more than 7 days after later partitions (column 'landed_days_late', rule: "
        "allowed_late_arrival)"
    ) in message
    assert DeltaLake(str(tmp_path / "lake")).version("flight_features") is None


def test_broken_reference_table_stops_the_snapshot_naming_table_column_and_rule(
    warehouse: Path, tmp_path: Path
) -> None:
    # The aircraft registry starts shipping 0 seats for some planes: every flight joins it.
    change(warehouse, "update raw.planes set seats = 0 where year = 2004")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        row = conn.execute("select count(*) from raw.planes where year = 2004").fetchone()
    assert row is not None and row[0] > 0
    result = materialize(warehouse, tmp_path / "lake")
    step, message = failure_message(result)
    assert step == "raw_snapshot"
    assert (
        f"table planes violates data contract planes v2: {row[0]} of 3322 rows "
        f"({row[0] / 3322:.2%}) break a rule, over max_reject_fraction 0.0%: column 'seats' "
        f"rule greater_than_or_equal_to(1.0) ({row[0]} rows, e.g. observed '0')"
    ) in message
    assert DeltaLake(str(tmp_path / "lake")).version("raw_snapshot") is None


def test_quarantine_command_lists_and_shows_rows(warehouse: Path, tmp_path: Path) -> None:
    change(
        warehouse,
        f"update raw.flights set carrier = 'ZZ' where flight_date = date '{BAD_DAY}' "
        "and source_row % 50 = 0",
    )
    assert materialize(warehouse, tmp_path / "lake").success
    env = {**os.environ, "TRAINFLOW_LAKE_URI": str(tmp_path / "lake")}
    listed = subprocess.run(
        [str(BIN / "trainflow"), "quarantine", "list"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    rows = DeltaLake(str(tmp_path / "lake")).read(QUARANTINE_TABLE).height
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert [BAD_DAY, str(rows), "carrier", "isin(enum)", *LABEL.split()] in lines
    shown = subprocess.run(
        [str(BIN / "trainflow"), "quarantine", "show", BAD_DAY, "--limit", "2"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"partition {BAD_DAY}: {rows} row(s) quarantined" in shown.stdout
    assert "observed 'ZZ'" in shown.stdout
    missing = subprocess.run(
        [str(BIN / "trainflow"), "quarantine", "show", "2013-02-02"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "no quarantined rows for partition 2013-02-02" in missing.stderr


def test_quarantine_revalidate_after_a_contract_change_releases_the_rows(
    warehouse: Path, tmp_path: Path
) -> None:
    # A new airline's code arrives: its rows are quarantined under the shipped contract ...
    change(
        warehouse,
        f"update raw.flights set carrier = 'ZZ' where flight_date = date '{BAD_DAY}' "
        "and source_row % 50 = 0",
    )
    lake_path = tmp_path / "lake"
    assert materialize(warehouse, lake_path).success
    lake = DeltaLake(str(lake_path))
    held = lake.read(QUARANTINE_TABLE)["row_index"].n_unique()
    assert held > 0
    # ... the team accepts it in the next contract version, then revalidates the partition.
    contracts = tmp_path / "contracts"
    shutil.copytree(PACKAGED_CONTRACTS_DIR, contracts, ignore=shutil.ignore_patterns("*.py*"))
    text = (contracts / "flights.yaml").read_text()
    bumped = text.replace(f"version: {CONTRACT.version}", f"version: {CONTRACT.version + 1}")
    (contracts / "flights.yaml").write_text(bumped.replace("VX, WN, YV]", "VX, WN, YV, ZZ]"))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    env = {
        **os.environ,
        "TRAINFLOW_LAKE_URI": str(lake_path),
        "TRAINFLOW_WAREHOUSE_URL": str(warehouse),
        "TRAINFLOW_CONTRACTS_DIR": str(contracts),
        "DAGSTER_HOME": str(dagster_home),
    }
    revalidate = [str(BIN / "trainflow"), "quarantine", "revalidate", BAD_DAY, "2013-02-02"]
    done = subprocess.run(revalidate, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = lake.read("raw_snapshot").filter(pl.col("day").cast(pl.String) == BAD_DAY).height
    # Partitions run in date order; a clean one is revalidated too (new contract version).
    first, second = done.stdout.splitlines()
    assert first.startswith("partition 2013-02-02: ") and "0 quarantined (was 0)" in first
    assert second.startswith(
        f"partition {BAD_DAY}: {rows} rows in, {rows} validated, 0 quarantined "
        f"(was {held}) against flights v{CONTRACT.version + 1}"
    )
    # The old version's rejects no longer belong to the validated rows stored: not counted.
    quarantine = visible(lake.read(QUARANTINE_TABLE), lake.day_keys("validated_flights"))
    assert quarantine.filter(pl.col("day").cast(pl.String) == BAD_DAY).is_empty()
    validated = lake.read("validated_flights").filter(pl.col("day").cast(pl.String) == BAD_DAY)
    assert validated.height == rows and validated["flight_id"].n_unique() == rows
    # Each partition was one Dagster run in the instance the UI reads.
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # Unchanged contract and snapshot: nothing to redo.
    again = subprocess.run(revalidate[:-1], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"partition {BAD_DAY}: unchanged (validated with this contract already)"
    )
