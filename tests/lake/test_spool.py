"""Chunked outputs: days cut by a row budget, spooled chunks committed to Delta in one
commit with the same rows as a frame, on a local folder and on S3 (moto on loopback)."""

import datetime as dt
import hashlib
import itertools
import subprocess
import sys
import time
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


# What a spooled write that lost a race raises: deltalake's commit conflict texts.
LOST_RACE = ("CommitFailedError", "table already exists at")
RACE_DAYS = JAN[:8]


def spool_race_worker(root: str, who: str, rounds: str) -> None:
    """One racer, run as `python -c` in its own process: each round, wait at a file
    barrier, then replace RACE_DAYS of table `round-N` (created by the first round's
    winner) from a spool of two chunks with this racer's own values; write what happened."""
    folder = Path(root)
    lake = DeltaLake(str(folder / "lake"))
    window = DayWindow(JAN[0], JAN[-1])
    mark = float(ord(who))
    for index in range(int(rounds)):
        output = OutputRows()
        for days in (RACE_DAYS[:4], RACE_DAYS[4:]):
            output.add(rows_of(days, per_day=3).with_columns(pl.lit(mark).alias("value")))
        (folder / f"ready-{index}-{who}").touch()
        while not (folder / f"go-{index}").exists():
            time.sleep(0.0005)
        try:
            lake.write(f"round-{index % 3}", output.result(), window, days=RACE_DAYS)
            outcome = "committed"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        # Renamed into place: the test never reads a half-written result.
        (folder / f"partial-{index}-{who}").write_text(outcome)
        (folder / f"partial-{index}-{who}").rename(folder / f"result-{index}-{who}")


def test_two_spooled_writes_racing_on_the_same_days_store_each_row_once(tmp_path) -> None:
    """The spool commit (`DeltaLake._commit_spool`: files written first, then one
    transaction that adds them and removes the days' old files) raced by two processes
    released together, round after round, on new tables (creation) and on stored ones
    (replacing the same days): whatever the interleaving, each day holds exactly one
    writer's rows, and a writer that lost either committed after the winner or failed
    with a commit conflict (IO_RETRY re-runs such a step); never both writers' rows.
    (Seen here: every creation round lost by one writer, and replacement rounds failing
    with "a concurrent transaction deleted data this operation read".)"""
    rounds = 15  # three tables: created in rounds 0-2, their days replaced in rounds 3-14
    code = (
        "import sys; from tests.lake.test_spool import spool_race_worker; "
        "spool_race_worker(*sys.argv[1:])"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), who, str(rounds)],
            cwd=Path(__file__).resolve().parents[2],
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    deadline = time.monotonic() + 180
    try:
        outcomes = []
        for index in range(rounds):
            for who in ("a", "b"):
                while not (tmp_path / f"ready-{index}-{who}").exists():
                    assert all(r.poll() is None for r in racers), [r.stderr for r in racers]
                    assert time.monotonic() < deadline, "the racers stalled"
                    time.sleep(0.005)
            (tmp_path / f"go-{index}").touch()
            for who in ("a", "b"):
                result = tmp_path / f"result-{index}-{who}"
                while not result.exists():
                    assert time.monotonic() < deadline, "the racers stalled"
                    time.sleep(0.005)
            outcomes.append({who: (tmp_path / f"result-{index}-{who}").read_text() for who in "ab"})
            stored = DeltaLake(str(tmp_path / "lake")).read(f"round-{index % 3}")
            per_day = stored.group_by("day").agg(pl.len(), pl.col("value").unique())
            assert per_day.height == len(RACE_DAYS), (index, outcomes[-1])
            for day, count, values in per_day.iter_rows():
                # Each day: one writer's 3 rows, never both writers' 6.
                assert count == 3 and len(values) == 1, (index, day, count, values, outcomes[-1])
            for outcome in outcomes[-1].values():
                assert outcome == "committed" or any(t in outcome for t in LOST_RACE), outcome
            assert "committed" in outcomes[-1].values()
        for racer in racers:
            assert racer.wait(timeout=60) == 0, racer.stderr.read() if racer.stderr else ""
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
