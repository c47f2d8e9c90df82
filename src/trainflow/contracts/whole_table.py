"""Validating a reference table (weather, planes, airports, airlines) whole: no partition
to quarantine, so a broken schema, too few rows or too many rejected rows fail the table.

`validate_table` returns a `TableReport` (rows, and the rows breaking each rule) or raises
`ContractViolation` naming table, column, contract version and rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from trainflow.contracts.row_rules import row_failures
from trainflow.contracts.rules import (
    REJECT_RULE,
    SCHEMA_RULE,
    TABLE_MIN_ROWS_RULE,
    ContractViolation,
    Observed,
)
from trainflow.contracts.spec import Contract
from trainflow.contracts.table_rules import check_table


@dataclass(frozen=True)
class TableReport:
    """A reference table checked whole: its rows and the rows breaking each rule."""

    contract: str
    columns: int
    rows: int
    min_rows: int
    rejected_rows: int
    rejects_by_rule: dict[str, int]
    max_reject_fraction: float

    def observed(self) -> dict[str, Observed]:
        """What each of TABLE_EXPECTATIONS observed against its limit."""
        return {
            SCHEMA_RULE: {"contract": self.contract, "columns": self.columns},
            TABLE_MIN_ROWS_RULE: {"rows": self.rows, "limit": self.min_rows},
            REJECT_RULE: {
                "rejected_rows": self.rejected_rows,
                "reject_fraction_observed": round(self.rejected_rows / max(self.rows, 1), 6),
                "limit": self.max_reject_fraction,
                **{f"rejected by {rule}": n for rule, n in self.rejects_by_rule.items()},
            },
        }


def validate_table(frame: pl.DataFrame, contract: Contract) -> TableReport:
    """A whole reference table (weather, planes, airports, airlines) against its contract.

    Every flight joins these tables, so there is no partition to quarantine: a broken
    schema, too few rows or a reject fraction over the limit raises `ContractViolation`
    naming table, column, contract version and rule; otherwise the counts are returned.
    """
    check_table(frame, contract, f"table {contract.name}")
    if frame.height < contract.expectations.min_rows:
        raise ContractViolation(
            f"table {contract.name} violates data contract {contract.label}: {frame.height} "
            f"rows, fewer than {contract.expectations.min_rows} (rule: {TABLE_MIN_ROWS_RULE})",
            TABLE_MIN_ROWS_RULE,
        )
    indexed = frame.with_row_index("row_index").with_columns(pl.col("row_index").cast(pl.Int64))
    failures = row_failures(indexed, contract, run_id="")
    by_rule = (
        failures.group_by("column", "rule")
        .agg(pl.col("row_index").n_unique().alias("rows"), pl.col("observed").first())
        .sort(["rows", "column", "rule"], descending=[True, False, False])
    )
    report = TableReport(
        contract=contract.label,
        columns=len(contract.fields),
        rows=frame.height,
        min_rows=contract.expectations.min_rows,
        rejected_rows=failures["row_index"].n_unique(),
        rejects_by_rule={f"{c}: {r}": n for c, r, n, _ in by_rule.iter_rows()},
        max_reject_fraction=contract.expectations.max_reject_fraction,
    )
    fraction = report.rejected_rows / max(frame.height, 1)
    if fraction > contract.expectations.max_reject_fraction:
        detail = ", ".join(
            f"column {column!r} rule {rule} ({n} rows, e.g. observed {observed!r})"
            for column, rule, n, observed in by_rule.head(3).iter_rows()
        )
        raise ContractViolation(
            f"table {contract.name} violates data contract {contract.label}: "
            f"{report.rejected_rows} of {frame.height} rows ({fraction:.2%}) break a rule, over "
            f"max_reject_fraction {contract.expectations.max_reject_fraction:.1%}: {detail}",
            REJECT_RULE,
        )
    return report
