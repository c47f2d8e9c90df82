"""The flights data contract (a YAML file compiled to pandera) on real landed data:
table-level violations fail fast, row-level ones go to quarantine, counted; every message
names partition, column, contract version and rule."""

import contextlib
import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import run_dbt_build
from trainflow.contracts import (
    Contract,
    ContractViolation,
    WindowTable,
    load_contract,
    reference_for,
    validate_partitions,
)
from trainflow.defs.resources import WarehouseResource
from trainflow.features.flights import PLANE_FEATURES, SCHEDULE_FEATURES, WEATHER_FEATURES
from trainflow.lake.delta_lake import DayWindow
from trainflow.settings import PACKAGED_CONTRACTS_DIR
from trainflow.warehouse import landing

DAY = dt.date(2013, 2, 1)
CONTRACT_FILE = PACKAGED_CONTRACTS_DIR / "flights.yaml"
FLIGHTS_CONTRACT = load_contract(CONTRACT_FILE)
LABEL = FLIGHTS_CONTRACT.label


@pytest.fixture(scope="module")
def real_day(built_warehouse) -> pl.DataFrame:
    return WarehouseResource(url=str(built_warehouse)).read_flights(DayWindow(DAY, DAY))


@pytest.fixture(scope="module")
def real_days(built_warehouse) -> pl.DataFrame:
    """January and February 2013 as landed."""
    window = DayWindow(dt.date(2013, 1, 1), dt.date(2013, 2, 28))
    return WarehouseResource(url=str(built_warehouse)).read_flights(window)


@pytest.fixture(scope="module")
def real_year(tmp_path_factory) -> pl.DataFrame:
    """The whole of 2013 as landed and modelled by dbt."""
    path = tmp_path_factory.mktemp("year") / "warehouse.duckdb"
    landing.land(path, landing.plan_days([], through=dt.date(2013, 12, 31)))
    run_dbt_build(path)
    window = DayWindow(dt.date(2013, 1, 1), dt.date(2013, 12, 31))
    return WarehouseResource(url=str(path)).read_flights(window)


def validate(frame: pl.DataFrame):
    return validate_partitions(frame, FLIGHTS_CONTRACT, [DAY], run_id="test-run")


def set_rows(frame: pl.DataFrame, column: str, value, rows: int) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) < rows)
        .then(pl.lit(value, dtype=frame.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_contract_file_is_versioned_and_loads() -> None:
    contract = load_contract(CONTRACT_FILE)
    assert contract.label == "flights v8"
    assert contract.key == ["flight_id"]
    assert contract.fields["carrier"].enum and "AA" in contract.fields["carrier"].enum


def test_real_landed_day_passes_whole(real_day: pl.DataFrame) -> None:
    outcome = validate(real_day)
    assert outcome.counts(DAY) == {
        "rows_in": real_day.height,
        "rows_validated": real_day.height,
        "rows_quarantined": 0,
    }


def test_retyped_column_fails_naming_partition_column_version_and_rule(real_day) -> None:
    retyped = real_day.with_columns(pl.col("arr_delay_minutes").cast(pl.String))
    with pytest.raises(ContractViolation) as failure:
        validate(retyped)
    assert str(failure.value) == (
        f"partition 2013-02-01 violates data contract {LABEL}: column 'arr_delay_minutes' "
        "has type String, the contract requires Float64 (rule: type)"
    )


def test_null_in_key_column_is_quarantined_with_rule_and_counts(real_day) -> None:
    outcome = validate(set_rows(real_day, "carrier", None, rows=3))
    assert outcome.counts(DAY) == {
        "rows_in": real_day.height,
        "rows_validated": real_day.height - 3,
        "rows_quarantined": 3,
    }
    q = outcome.quarantine
    assert q["column"].unique().to_list() == ["carrier"]
    assert q["rule"].unique().to_list() == ["not_nullable"]
    assert q["contract"].unique().to_list() == [LABEL]
    assert '"carrier":null' in q["row_json"][0]


def test_null_burst_in_key_column_fails_naming_partition_column_and_rule(real_day) -> None:
    burst = set_rows(real_day, "carrier", None, rows=real_day.height // 5)
    with pytest.raises(ContractViolation) as failure:
        validate(burst)
    message = str(failure.value)
    assert f"data contract {LABEL} violated; partition 2013-02-01:" in message
    assert "over max_reject_fraction 5.0%: column 'carrier' rule not_nullable" in message
    assert failure.value.outcome is not None
    assert failure.value.outcome.counts(DAY)["rows_quarantined"] == real_day.height // 5


def test_null_rate_over_the_column_limit_fails_naming_partition_column_and_rule(
    real_day,
) -> None:
    half = set_rows(real_day, "tailnum", None, rows=real_day.height // 2)
    rate = half["tailnum"].null_count() / half.height
    with pytest.raises(ContractViolation) as failure:
        validate(half)
    assert failure.value.expectation == "max_null_fraction"
    assert str(failure.value) == (
        f"data contract {LABEL} violated (rule: max_null_fraction): partition 2013-02-01: "
        f"column 'tailnum' is null in {rate:.1%} of rows, over max_null_fraction 35.0%"
    )


def test_null_rate_observed_per_column_and_waivers_skip_only_their_cells(real_day) -> None:
    outcome = validate(real_day)
    observed = outcome.observed["max_null_fraction"]
    rate = real_day["tailnum"].null_count() / real_day.height
    assert observed["tailnum (limit 0.35)"] == f"{rate:.4f} on 2013-02-01"
    # The waiver covers the weather columns on 2013-12-31 only, not other days or columns.
    assert FLIGHTS_CONTRACT.waived("max_null_fraction", dt.date(2013, 12, 31), "temp_f")
    assert not FLIGHTS_CONTRACT.waived("max_null_fraction", dt.date(2013, 12, 30), "temp_f")
    assert not FLIGHTS_CONTRACT.waived("max_null_fraction", dt.date(2013, 12, 31), "tailnum")
    as_dec_31 = set_rows(real_day, "temp_f", None, rows=real_day.height).with_columns(
        pl.lit(dt.date(2013, 12, 31)).alias("day")
    )
    waived = validate_partitions(as_dec_31, FLIGHTS_CONTRACT, [dt.date(2013, 12, 31)], "run")
    assert "2013-12-31 temp_f" in waived.observed["max_null_fraction"]["waived"]


def test_utc_hour_that_is_not_the_local_hour_is_quarantined(real_day) -> None:
    shifted = real_day.with_columns(
        pl.when(pl.int_range(pl.len()) < 4)
        .then(pl.col("sched_dep_hour_utc") - pl.duration(hours=5))
        .otherwise(pl.col("sched_dep_hour_utc"))
        .alias("sched_dep_hour_utc")
    )
    outcome = validate(shifted)
    assert outcome.counts(DAY)["rows_quarantined"] == 4
    assert outcome.quarantine.select("column", "rule").unique().rows() == [
        ("sched_dep_hour_utc", "utc_hour_of(sched_dep_local, America/New_York)")
    ]


def test_day_landed_later_than_allowed_fails_with_its_lateness(real_day) -> None:
    within = real_day.with_columns(pl.lit(7, dtype=pl.Int32).alias("landed_days_late"))
    assert validate(within).observed["allowed_late_arrival"] == {
        "max_days_late_observed": 7,
        "on": "2013-02-01",
        "limit": 7,
    }
    late = real_day.with_columns(pl.lit(8, dtype=pl.Int32).alias("landed_days_late"))
    with pytest.raises(ContractViolation) as failure:
        validate(late)
    assert failure.value.expectation == "allowed_late_arrival"
    assert str(failure.value).startswith(
        f"partition(s) 2013-02-01 (8 days late) violate data contract {LABEL}: landed more "
        "than 7 days after later partitions (column 'landed_days_late', rule: "
        "allowed_late_arrival)"
    )


# Contract columns the features and the label are computed from (flights.py).
FEATURE_SOURCES = (
    *(c for c in SCHEDULE_FEATURES if c in FLIGHTS_CONTRACT.fields),
    *WEATHER_FEATURES,
    *(c for c in PLANE_FEATURES if c in FLIGHTS_CONTRACT.fields),
    "plane_manufacture_year",
    "sched_dep_hour",
    "arr_delay_minutes",
)


def test_every_numeric_column_reaching_features_or_labels_has_physical_bounds() -> None:
    numeric = {n for n, s in FLIGHTS_CONTRACT.fields.items() if s.type in ("Float64", "Int32")}
    assert set(FEATURE_SOURCES) <= numeric
    unbounded = [
        n
        for n in sorted(numeric)
        if None in (FLIGHTS_CONTRACT.fields[n].min, FLIGHTS_CONTRACT.fields[n].max)
    ]
    # flight_number and landed_days_late reach no feature (and synthetic copies, `--scale`,
    # renumber flights); every other numeric column is bounded on both sides.
    assert unbounded == ["flight_number", "landed_days_late"]


def test_temperature_converted_to_celsius_breaks_the_dew_point_rule(real_day) -> None:
    celsius = real_day.with_columns((pl.col("temp_f") - 32) * 5 / 9)
    warmer_dew = celsius.filter(pl.col("dewpoint_f") > pl.col("temp_f")).height
    assert warmer_dew > real_day.height * 0.05  # the day fails rather than quarantining
    with pytest.raises(ContractViolation) as failure:
        validate(celsius)
    assert failure.value.outcome is not None
    assert failure.value.outcome.counts(DAY)["rows_quarantined"] == warmer_dew
    assert f"column 'dewpoint_f' rule at_most_column(temp_f) ({warmer_dew} rows)" in str(
        failure.value
    )


def with_cast_failures(frame: pl.DataFrame, rows: int) -> pl.DataFrame:
    """What staging hands on when `rows` delays arrived as text it could not cast."""
    failed = pl.int_range(pl.len()) < rows
    return frame.with_columns(
        pl.when(failed)
        .then(None)
        .otherwise(pl.col("dep_delay_minutes"))
        .alias("dep_delay_minutes"),
        pl.when(failed)
        .then(pl.lit('{"dep_delay_minutes":"12 min"}'))
        .otherwise(pl.col("cast_failures"))
        .alias("cast_failures"),
    )


def test_a_value_staging_could_not_cast_is_quarantined_naming_column_and_raw_value(
    real_day,
) -> None:
    outcome = validate(with_cast_failures(real_day, rows=5))
    assert outcome.counts(DAY) == {
        "rows_in": real_day.height,
        "rows_validated": real_day.height - 5,
        "rows_quarantined": 5,
    }
    assert outcome.quarantine.select("column", "rule", "observed").unique().rows() == [
        ("dep_delay_minutes", "castable_to(Float64)", "12 min")
    ]
    many = with_cast_failures(real_day, rows=real_day.height // 10)
    with pytest.raises(ContractViolation) as failure:
        validate(many)
    assert failure.value.expectation == "max_reject_fraction"
    assert (
        f"over max_reject_fraction 5.0%: column 'dep_delay_minutes' rule castable_to(Float64) "
        f"({real_day.height // 10} rows)"
    ) in str(failure.value)


def test_rows_found_other_than_landed_fail_naming_both_counts(real_day) -> None:
    logged = real_day.with_columns(pl.lit(real_day.height - 10, pl.Int64).alias("landed_rows"))
    with pytest.raises(ContractViolation) as failure:
        validate(logged)
    assert failure.value.expectation == "rows_landed"
    assert str(failure.value) == (
        f"data contract {LABEL} violated (column 'landed_rows', rule: rows_landed): partition "
        f"2013-02-01: the landing log records {real_day.height - 10} rows landed, the snapshot "
        f"holds {real_day.height} (10 more: rows of another day stamped with this date, or the "
        "day landed twice)"
    )
    assert validate(real_day).observed["rows_landed"]["rows_reconciled"] == real_day.height


def test_volume_is_measured_against_validated_days_before_only(real_days) -> None:
    days = sorted(real_days["day"].unique())
    outcome = validate_partitions(real_days, FLIGHTS_CONTRACT, days, "run")
    observed = outcome.observed["volume_vs_reference"]
    # January 1..7 have fewer than 7 validated days before them: not checked.
    assert observed["partitions_checked"] == len(days) - 7
    assert observed["partitions_without_reference"].startswith("7 (fewer than 7 validated days")
    # A day validated alone has no reference; with its window's profiles it has one.
    reference = reference_for(FLIGHTS_CONTRACT)
    reference.add({DAY - dt.timedelta(days=n): {"rows": 1000.0} for n in range(1, 8)})
    whole_day = real_days.filter(pl.col("day") == DAY)
    thin = whole_day.head(int(whole_day.height * 0.45))  # a partial file, landed as such
    thin = thin.with_columns(pl.lit(thin.height, pl.Int64).alias("landed_rows"))
    with pytest.raises(ContractViolation) as failure:
        validate_partitions(thin, FLIGHTS_CONTRACT, [DAY], "run", reference)
    assert failure.value.expectation == "volume_vs_reference"
    assert (
        f"partition 2013-02-01: {thin.height} rows, {thin.height / 1000:.2f} times the median"
        in (str(failure.value))
    )


def profiled_reference(frame: pl.DataFrame):
    """The reference windows a validation of `frame` builds (whatever it then decides)."""
    reference = reference_for(FLIGHTS_CONTRACT)
    with contextlib.suppress(ContractViolation):
        validate_partitions(frame, FLIGHTS_CONTRACT, sorted(frame["day"].unique()), "r", reference)
    return reference


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    day=st.dates(dt.date(2013, 1, 8), dt.date(2013, 2, 27)),
    dropped=st.sets(st.integers(1, 30), max_size=5),
    kept_share=st.integers(30, 100),
    scale=st.sampled_from([0.01, 0.5, 1.0, 60.0]),
)
def test_a_days_reference_never_changes_when_later_days_change(
    real_days, day, dropped, kept_share, scale
) -> None:
    later = pl.col("day") > day
    changed = real_days.filter(
        ~(later & pl.col("day").is_in([day + dt.timedelta(days=n) for n in dropped]))
        & (~later | (pl.col("flight_id") % 100 < kept_share))
    ).with_columns(
        *(
            pl.when(later).then(pl.col(c) * scale).otherwise(pl.col(c)).alias(c)
            for c in ("distance_miles", "arr_delay_minutes", "dep_delay_minutes")
        )
    )
    before, after = profiled_reference(real_days), profiled_reference(changed)
    assert after.window(day) == before.window(day)
    assert after.digest(day) == before.digest(day)
    for statistic in before.profiles[day]:
        assert after.baseline(day, statistic) == before.baseline(day, statistic)


def test_the_whole_real_year_passes_every_reference_expectation_unchanged(real_year) -> None:
    days = sorted(real_year["day"].unique())
    outcome = validate_partitions(real_year, FLIGHTS_CONTRACT, days, "run")
    assert sum(c["rows_in"] for c in outcome.counts_by_day.values()) == real_year.height
    volume = outcome.observed["volume_vs_reference"]
    assert volume["partitions_checked"] == 365 - 7
    # The extremes the contract file notes beside its limits.
    assert volume["lowest_ratio"] == "0.651 on 2013-11-28"
    assert volume["highest_ratio"] == "1.062 on 2013-02-14"
    assert volume["worst_partition"] == "2013-11-28: 0.651"
    distribution = outcome.observed["distribution_vs_reference"]
    limits = FLIGHTS_CONTRACT.expectations.distribution_vs_reference
    assert len(limits) == 14
    for column, limit in limits.items():
        seen = distribution[f"{column} ({limit})"]
        assert "% of the limit)" in seen
        assert int(seen.split("(")[-1].split("%")[0]) < 100, (column, seen)
    assert distribution["temp_f (shift in [-28, 40])"].startswith("-24.120 on 2013-11-24")
    assert distribution["distance_miles (ratio in [0.88, 1.12])"].startswith("0.925 on 2013-01-09")
    assert distribution["worst_column"] == "visibility_mi on 2013-02-11: 0.100 (95% of the limit)"
    table = distribution["worst_column_vs_window"]
    assert isinstance(table, WindowTable)
    assert table.rows[-1] == {"day": "2013-02-11", "role": "partition", "visibility_mi.q50": 1.0}
    assert table.rows[-2]["role"] == "window median"
    assert table.rows[-2]["visibility_mi.q50"] == 10.0


def test_a_day_of_delays_in_hours_fails_its_distribution_naming_partition_and_column(
    real_days,
) -> None:
    # Feb 1's delays arrive in hours: every value stays inside its physical bounds.
    hours = real_days.with_columns(
        pl.when(pl.col("day") == DAY).then(pl.col(c) / 60).otherwise(pl.col(c)).alias(c)
        for c in ("arr_delay_minutes", "dep_delay_minutes")
    )
    days = sorted(real_days.filter(pl.col("day") <= DAY)["day"].unique())
    with pytest.raises(ContractViolation) as failure:
        validate_partitions(hours.filter(pl.col("day") <= DAY), FLIGHTS_CONTRACT, days, "run")
    assert failure.value.expectation == "distribution_vs_reference"
    window = real_days.filter(pl.col("day").is_between(DAY - dt.timedelta(days=28), DAY, "left"))
    daily_q99 = window.group_by("day").agg(pl.col("arr_delay_minutes").quantile(0.99, "nearest"))
    median = daily_q99["arr_delay_minutes"].median()
    day_q99 = real_days.filter(pl.col("day") == DAY)["arr_delay_minutes"].quantile(0.99, "nearest")
    assert median is not None and day_q99 is not None
    message = str(failure.value)
    assert message.startswith(
        f"data contract {LABEL} violated (rule: distribution_vs_reference): partition 2013-02-01: "
        f"column 'arr_delay_minutes' q99 {day_q99 / 60:.6g} is {day_q99 / 60 / median:.3g} times "
        f"the median of its reference window ({median:.6g} over 28 validated days, "
        "2013-01-04..2013-01-31), outside ratio in [0.2, 6]; partition 2013-02-01: column "
        "'dep_delay_minutes' q99 "
    )
    assert message.endswith(
        "(the partition's rows stay in raw_snapshot to inspect; if the change is real, widen "
        "the limit in a new contract version and revalidate)"
    )
    # What its asset check shows: the partition beside each day of its window.
    table = failure.value.observed["partition_vs_window"]
    assert [row["role"] for row in table.rows] == ["reference"] * 28 + [
        "window median",
        "partition",
    ]
    assert table.rows[-1]["arr_delay_minutes.q99"] == pytest.approx(day_q99 / 60)
    # The same day in minutes passes.
    validate_partitions(real_days.filter(pl.col("day") <= DAY), FLIGHTS_CONTRACT, days, "run")


@pytest.mark.parametrize(
    "limit",
    [{"quantile": 0.5}, {"quantile": 0.5, "min_ratio": 0.5, "max_ratio": 2, "max_shift": 3},
     {"quantile": 0.5, "min_ratio": 0.5}, {"quantile": 50, "min_ratio": 0.5, "max_ratio": 2},
     {"quantile": 0.5, "min_ratio": 1.2, "max_ratio": 2}, {"quantile": 0.5, "min_shift": -3, "max_shift": 0}],
)  # fmt: skip
def test_a_distribution_limit_is_one_complete_measure(limit) -> None:
    data = FLIGHTS_CONTRACT.model_dump()
    data["expectations"]["distribution_vs_reference"] = {"distance_miles": limit}
    with pytest.raises(ValidationError):
        Contract.model_validate(data)
    data["expectations"]["distribution_vs_reference"] = {
        "carrier": {"quantile": 0.5, "min_ratio": 0.5, "max_ratio": 2}
    }
    with pytest.raises(ValidationError, match="'carrier' is not a numeric column"):
        Contract.model_validate(data)
