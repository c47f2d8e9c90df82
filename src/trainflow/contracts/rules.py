"""The names of a contract's expectations, the violation that names one, and what a
validation returns.

`ContractViolation` is raised by every check (its message names partition, column,
contract version and rule); `ValidationOutcome` holds the validated rows, the quarantine,
the counts per day and what each expectation observed (`Observed`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

# The contract's expectations, each a Dagster asset check on the validated table, in the
# order they are evaluated: table-level ones first, the reject fraction last.
SCHEMA_RULE = "schema"
MIN_ROWS_RULE = "min_rows_per_day"
ROWS_LANDED_RULE = "rows_landed"
VOLUME_RULE = "volume_vs_reference"
DISTRIBUTION_RULE = "distribution_vs_reference"
NULL_RATE_RULE = "max_null_fraction"
LATE_ARRIVAL_RULE = "allowed_late_arrival"
REJECT_RULE = "max_reject_fraction"
# A reference table's expectations, checked whole, in order.
TABLE_MIN_ROWS_RULE = "min_rows"
TABLE_EXPECTATIONS = (SCHEMA_RULE, TABLE_MIN_ROWS_RULE, REJECT_RULE)


class ContractViolation(ValueError):
    """A partition broke its contract; the message names partition, column, version, rule.

    `expectation` says which expectation failed (one of the *_RULE names above).
    """

    def __init__(
        self,
        message: str,
        expectation: str,
        outcome: ValidationOutcome | None = None,
        observed: Observed | None = None,
    ) -> None:
        super().__init__(message)
        self.expectation = expectation
        self.outcome = outcome
        # What the failing expectation saw (for its asset check), where it says more than
        # the message: a failing partition beside its reference window.
        self.observed = observed or {}


Observed = dict[str, Any]


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    # day -> rows in, validated and quarantined (rows in = validated + quarantined)
    counts_by_day: dict[dt.date, dict[str, int]]
    # expectation -> what was observed against its limit (the asset checks' metadata)
    observed: dict[str, Observed] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        valid: pl.DataFrame,
        quarantine: pl.DataFrame,
        rows_in: dict[dt.date, int],
        observed: dict[str, Observed] | None = None,
    ) -> ValidationOutcome:
        # Every row in is either validated or quarantined (by row_index, once whatever the
        # number of rules it broke), so the validated count follows from the other two.
        rejected = dict(quarantine.group_by("day").agg(pl.col("row_index").n_unique()).iter_rows())
        counts = {
            day: {
                "rows_in": rows,
                "rows_validated": rows - rejected.get(day, 0),
                "rows_quarantined": rejected.get(day, 0),
            }
            for day, rows in rows_in.items()
        }
        return cls(
            valid=valid, quarantine=quarantine, counts_by_day=counts, observed=observed or {}
        )

    def worst_reject_fraction(self) -> tuple[str, float]:
        """(partition, fraction) of the partition with the largest share of rejected rows."""
        worst = max(
            self.counts_by_day.items(),
            key=lambda item: item[1]["rows_quarantined"] / max(item[1]["rows_in"], 1),
        )
        return str(worst[0]), worst[1]["rows_quarantined"] / max(worst[1]["rows_in"], 1)

    def only(self, days: Iterable[dt.date]) -> ValidationOutcome:
        """The outcome of some of the days (those a caller keeps)."""
        kept = set(days)
        return replace(
            self,
            quarantine=self.quarantine.filter(pl.col("day").is_in(kept)),
            counts_by_day={d: c for d, c in self.counts_by_day.items() if d in kept},
        )

    def counts(self, day: dt.date) -> dict[str, int]:
        return self.counts_by_day.get(
            day, {"rows_in": 0, "rows_validated": 0, "rows_quarantined": 0}
        )
