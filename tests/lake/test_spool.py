"""Chunked outputs: days cut by a row budget, spooled chunks committed to Delta in one
commit with the same rows as a frame, on a local folder and on S3 (moto on loopback)."""

import datetime as dt
import hashlib
import itertools
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainflow import manifest
from trainflow.lake.delta_lake import DayWindow, DeltaLake, LakeError
from trainflow.lake.spool import OutputRows, Spool, chunk_days

JAN = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(31)]


@given(
    rows=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=31),
    budget=st.integers(min_value=1, max_value=200),
)
def test_chunks_cover_every_day_once_in_order_within_the_budget(rows, budget) -> None:
    days = JAN[: len(rows)]
    per_day = dict(zip(days, rows, strict=True))
    chunks = chunk_days(per_day, list(reversed(days)), budget)
    assert [d for chunk in chunks for d in chunk] == days
    for chunk in chunks:
        # Over the budget only as a single day bigger than the budget.
        assert sum(per_day[d] for d in chunk) <= budget or len(chunk) == 1
    # Greedy: a chunk never could have taken the next chunk's first day.
    for chunk, following in itertools.pairwise(chunks):
        assert sum(per_day[d] for d in chunk) + per_day[following[0]] > budget


def rows_of(days: list[dt.date], per_day: int = 4) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [d for d in days for _ in range(per_day)],
            "value": [float(d.day * 10 + i) for d in days for i in range(per_day)],
            "note": [None if i % 2 else f"{d}" for d in days for i in range(per_day)],
        },
        schema={"day": pl.Date, "value": pl.Float64, "note": pl.String},
    )


def test_one_chunk_stays_a_frame_and_more_go_to_a_spool() -> None:
    one = OutputRows()
    one.add(rows_of(JAN[:3]))
    assert isinstance(one.result(), pl.DataFrame)
    many = OutputRows()
    for days in (JAN[:3], JAN[3:5], JAN[5:9]):
        many.add(rows_of(days))
    spool = many.result()
    assert isinstance(spool, Spool)
    assert spool.rows == 9 * 4 and spool.days == set(JAN[:9]) and len(spool.parts) == 3
    # A chunk whose column is all null (typed Null by polars) joins the first chunk's type.
    many.add(rows_of(JAN[9:10]).with_columns(pl.lit(None).alias("note")))
    assert spool.polars_schema["note"] == pl.String
    streamed = pl.from_arrow(spool.reader().read_all())
    assert isinstance(streamed, pl.DataFrame) and streamed.height == 10 * 4
    folder = spool.folder
    spool.remove()
    assert not folder.exists()


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_spool_commits_once_with_the_rows_a_frame_would(where, tmp_path, request) -> None:
    if where == "s3":
        environ = request.getfixturevalue("s3_environ")
        options = {k: environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP")}
        roots = [f"s3://{environ['BUCKET']}/{name}" for name in ("frame", "spool")]
    else:
        options = {}
        roots = [str(tmp_path / name) for name in ("frame", "spool")]
    window = DayWindow(JAN[0], JAN[-1])
    by_frame, by_spool = (DeltaLake(root, options) for root in roots)
    by_frame.write("t", rows_of(JAN), window)
    by_spool.write("t", rows_of(JAN), window)  # version 0 of both
    # Replace days 5..20 of both: from one frame, and from four spooled chunks.
    replaced = JAN[4:20]
    new = rows_of(replaced, per_day=6).with_columns(pl.col("value") * -1)
    output = OutputRows()
    for days in chunk_days(dict.fromkeys(replaced, 6), replaced, 24):
        output.add(new.filter(pl.col("day").is_in(days)))
    spool = output.result()
    assert isinstance(spool, Spool) and len(spool.parts) == 4
    by_frame.write("t", new, window, days=replaced)
    result = by_spool.write("t", spool, window, days=replaced)
    assert result.version == 1 and result.rows == new.height  # one commit
    sort = ["day", "value"]
    assert by_spool.read("t").sort(sort).equals(by_frame.read("t").sort(sort))
    # A table created from a spool: version 0, the rows as spooled.
    again = OutputRows()
    for days in (JAN[:10], JAN[10:]):
        again.add(rows_of(days))
    created = by_spool.write("created", again.result(), window)
    assert created.version == 0 and created.rows == 31 * 4
    assert by_spool.read("created").sort(sort).equals(rows_of(JAN).sort(sort))


def test_a_spool_with_rows_outside_its_days_is_refused(tmp_path: Path) -> None:
    lake = DeltaLake(str(tmp_path))
    window = DayWindow(JAN[0], JAN[-1])
    lake.write("t", rows_of(JAN), window)
    output = OutputRows()
    output.add(rows_of(JAN[:2]))
    output.add(rows_of(JAN[2:4]))
    with pytest.raises(LakeError, match=r"outside partition window .* 2013-01-04"):
        lake.write("t", output.result(), window, days=JAN[:3])
    assert lake.version("t") == 0


@given(
    rows=st.integers(min_value=0, max_value=40), slice_rows=st.integers(min_value=1, max_value=9)
)
def test_content_hash_hashes_slices_as_one_text(rows, slice_rows) -> None:
    """The content hash, taken a slice of CSV at a time (bounded memory), is the sha256 of
    the whole frame's CSV: stored hashes and manifests stay valid."""
    frame = rows_of(JAN[:rows], per_day=1).with_columns(
        pl.col("day").alias("listed").implode().over("day")
    )
    whole = hashlib.sha256(
        frame.with_columns(pl.struct("listed").struct.json_encode().alias("listed"))
        .write_csv()
        .encode()
    ).hexdigest()
    default = manifest.CSV_HASH_SLICE_ROWS
    manifest.CSV_HASH_SLICE_ROWS = slice_rows
    try:
        assert manifest.content_hash(frame) == whole
    finally:
        manifest.CSV_HASH_SLICE_ROWS = default
