"""A contract's row rules compiled to a pandera polars schema.

`row_schema` turns each field's enum, bounds, pattern, nullability, uniqueness and
cross-column rules (`utc_hour_of`, `at_most_column`) into pandera checks; the column types
are not part of it (`table_rules.check_table` checks them first, for the whole table).
"""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl

from trainflow.contracts.spec import Contract, UtcHourOf


def row_schema(contract: Contract) -> pa.DataFrameSchema:
    """The row-level rules as a pandera schema (types are checked before, table-level)."""
    columns = {}
    for name, spec in contract.fields.items():
        checks = []
        if spec.enum is not None:
            checks.append(pa.Check.isin(spec.enum))
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.pattern is not None:
            checks.append(pa.Check.str_matches(spec.pattern))
        if spec.utc_hour_of is not None:
            checks.append(_utc_hour_check(spec.utc_hour_of))
        if spec.at_most_column is not None:
            checks.append(_at_most_check(spec.at_most_column))
        columns[name] = pa.Column(None, checks=checks, nullable=spec.nullable, unique=spec.unique)
    # A composite key is unique as a whole (a single-column key uses `unique: true`).
    unique = contract.key if len(contract.key) > 1 else None
    return pa.DataFrameSchema(columns=columns, strict=False, unique=unique, name=contract.label)


def _utc_hour_check(rule: UtcHourOf) -> pa.Check:
    """Cross-column row rule: catches timestamps shifted by a timezone upstream."""
    local_as_utc = (
        pl.col(rule.column)
        .dt.truncate("1h")
        # Ambiguous hours (the autumn DST change) take the first; a local time that does
        # not exist (the spring change) cannot be checked and fails the row.
        .dt.replace_time_zone(rule.timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )

    def matches(data: Any) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col(data.key) == local_as_utc).fill_null(False))

    return pa.Check(matches, name=f"utc_hour_of({rule.column}, {rule.timezone})")


def _at_most_check(other: str) -> pa.Check:
    """Cross-column row rule: this value is at most `other`'s on the same row."""

    def at_most(data: Any) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col(data.key) <= pl.col(other)).fill_null(True))

    return pa.Check(at_most, name=f"at_most_column({other})")
