"""The Delta IO manager round-trips single partitions and multi-day windows, on a local
folder and on S3 (moto's HTTP server on loopback), through real Dagster materializations."""
# No `from __future__ import annotations`: Dagster reads these assets' annotations.

import datetime as dt

import boto3
import dagster as dg
import polars as pl
import pytest

from trainflow.defs.io_manager import DeltaLakeIOManager
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.resources import LakeResource
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.tables import DeltaInput

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dg.asset(partitions_def=daily_2013, backfill_policy=dg.BackfillPolicy.single_run())
def numbers(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """Three rows per day of the window; `value` carries the run's tag so rewrites show."""
    window = day_window(context.partition_time_window)
    version = int(context.run.tags.get("value", "1"))
    return pl.DataFrame(
        {
            "day": [d for d in window.days() for _ in range(3)],
            "value": [d.day * version for d in window.days() for _ in range(3)],
        }
    )


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "numbers": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-6, allow_nonexistent_upstream_partitions=True
            )
        )
    },
)
def weekly_window(context: dg.AssetExecutionContext, numbers: pl.DataFrame) -> pl.DataFrame:
    """Records which upstream days it was handed for each of its own days."""
    window = day_window(context.partition_time_window)
    seen = sorted(set(numbers["day"].to_list()))
    return pl.DataFrame(
        {
            "day": window.days(),
            "days_seen": [len(seen)] * window.n_days,
            "rows_seen": numbers.height,
        }
    )


@dg.asset
def whole_table(numbers: DeltaInput, weekly_window: pl.LazyFrame) -> pl.DataFrame:
    """Unpartitioned reader of both partitioned tables (versioned and lazy inputs)."""
    return pl.DataFrame(
        {
            "numbers_rows": [numbers.frame.height],
            "numbers_version": [numbers.version],
            "weekly_rows": [weekly_window.select(pl.len()).collect().item()],
        }
    )


@pytest.fixture(params=["local", "s3"])
def io_manager(request: pytest.FixtureRequest, tmp_path) -> DeltaLakeIOManager:
    if request.param == "local":
        return DeltaLakeIOManager(lake=LakeResource(lake_uri=str(tmp_path / "lake")))
    env = request.getfixturevalue("s3_environ")
    return DeltaLakeIOManager(
        lake=LakeResource(
            lake_uri=f"s3://{env['BUCKET']}/lake",
            aws_endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_region=env["AWS_REGION"],
            aws_allow_http=True,
        )
    )


def materialize(
    io_manager: DeltaLakeIOManager, assets: list, **kwargs: object
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, resources={"io_manager": io_manager}, **kwargs)  # type: ignore[arg-type]
    assert result.success
    return result


def test_seven_day_range_written_in_one_commit_and_read_back_as_a_window(io_manager) -> None:
    result = materialize(
        io_manager,
        [numbers, weekly_window],
        tags={RANGE_START: "2013-01-01", RANGE_END: "2013-01-07"},
    )
    lake = io_manager.lake.lake()
    table = lake.read("numbers")
    assert table.height == 21
    assert sorted(set(table["day"].to_list())) == [dt.date(2013, 1, d) for d in range(1, 8)]
    assert lake.version("numbers") == 0  # the whole range is one Delta commit

    weekly = lake.read("weekly_window").sort("day")
    # The range run reads days Dec 26 .. Jan 7 mapped; only Jan 1..7 exist.
    assert weekly["days_seen"].to_list() == [7] * 7
    mats = result.asset_materializations_for_node("numbers")
    assert mats and mats[0].metadata["rows_written"].value == 21


def test_one_partition_overwrites_only_its_day_without_duplicates(io_manager) -> None:
    materialize(io_manager, [numbers], tags={RANGE_START: "2013-01-01", RANGE_END: "2013-01-07"})
    materialize(io_manager, [numbers], partition_key="2013-01-03", tags={"value": "100"})
    materialize(io_manager, [numbers], partition_key="2013-01-03", tags={"value": "100"})
    lake = io_manager.lake.lake()
    table = lake.read("numbers")
    assert table.height == 21, "rewriting a partition twice must not duplicate rows"
    jan3 = table.filter(pl.col("day") == dt.date(2013, 1, 3))
    assert jan3["value"].to_list() == [300, 300, 300]
    others = table.filter(pl.col("day") != dt.date(2013, 1, 3))
    assert sorted(set(others["value"].to_list())) == [1, 2, 4, 5, 6, 7]
    assert lake.version("numbers") == 2
    # Time travel: version 0 still holds the original day.
    assert lake.read("numbers", version=0).filter(pl.col("day") == dt.date(2013, 1, 3))[
        "value"
    ].to_list() == [3, 3, 3]


def test_single_partition_reads_its_seven_day_window(io_manager) -> None:
    materialize(io_manager, [numbers], tags={RANGE_START: "2013-01-01", RANGE_END: "2013-01-10"})
    materialize(
        io_manager, [numbers, weekly_window], partition_key="2013-01-09", selection=[weekly_window]
    )
    weekly = io_manager.lake.lake().read("weekly_window")
    assert weekly.to_dicts() == [{"day": dt.date(2013, 1, 9), "days_seen": 7, "rows_seen": 21}]


def test_unpartitioned_reader_gets_versioned_and_lazy_inputs(io_manager) -> None:
    materialize(
        io_manager,
        [numbers, weekly_window],
        tags={RANGE_START: "2013-01-01", RANGE_END: "2013-01-04"},
    )
    materialize(io_manager, [numbers, weekly_window, whole_table], selection=[whole_table])
    row = io_manager.lake.lake().read("whole_table").row(0, named=True)
    assert row == {"numbers_rows": 12, "numbers_version": 0, "weekly_rows": 4}


def test_s3_lake_objects_really_live_in_the_bucket(s3_environ) -> None:
    lake_uri = f"s3://{s3_environ['BUCKET']}/lake"
    manager = DeltaLakeIOManager(
        lake=LakeResource(
            lake_uri=lake_uri,
            aws_endpoint_url=s3_environ["AWS_ENDPOINT_URL"],
            aws_region="us-east-1",
            aws_allow_http=True,
        )
    )
    materialize(manager, [numbers], partition_key="2013-05-05")
    s3 = boto3.client("s3", endpoint_url=s3_environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_environ["BUCKET"])["Contents"]]
    assert "lake/numbers/_delta_log/00000000000000000000.json" in keys
    assert any(
        k.startswith("lake/numbers/day=2013-05-05/") and k.endswith(".parquet") for k in keys
    )
    # Any Delta reader can open it without trainflow.
    other = DeltaLake(
        lake_uri,
        {
            "AWS_ENDPOINT_URL": s3_environ["AWS_ENDPOINT_URL"],
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
        },
    )
    assert other.read("numbers").height == 3


def test_write_outside_the_partition_window_is_refused(tmp_path) -> None:
    @dg.asset(partitions_def=daily_2013, name="numbers")
    def leaky(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return pl.DataFrame({"day": [dt.date(2013, 1, 1), dt.date(2013, 1, 2)], "value": [1, 2]})

    result = dg.materialize(
        [leaky],
        partition_key="2013-01-01",
        resources={
            "io_manager": DeltaLakeIOManager(lake=LakeResource(lake_uri=str(tmp_path / "lake")))
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "outside partition window 2013-01-01" in str(failure.cause or failure.message)
