"""Row-level rules: which rows break one, and the quarantine rows that record why.

A row that breaks a rule (pandera's row rules, or a value the warehouse could not cast) is
quarantined with the rule, column and observed value, never dropped silently;
`row_failures` returns those rows in the quarantine table's shape (`QUARANTINE_SCHEMA`),
`describe_quarantine` counts them per column and rule.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from pandera.errors import SchemaErrors

from trainflow.contracts.pandera_schema import row_schema
from trainflow.contracts.spec import Contract

QUARANTINE_SCHEMA = {
    "day": pl.Date,
    "row_index": pl.Int64,
    "column": pl.String,
    "rule": pl.String,
    "observed": pl.String,
    "row_json": pl.String,
    "contract": pl.String,
    "run_id": pl.String,
}


def row_failures(indexed: pl.DataFrame, contract: Contract, run_id: str) -> pl.DataFrame:
    """Every (row, column, rule, observed value) that breaks a row rule, with the row. A
    cell the warehouse could not cast fails that rule only (not the rules its null breaks)."""
    cast = _cast_failures(indexed, contract)
    other = _schema_failures(indexed, contract).join(cast, on=["row_index", "column"], how="anti")
    failures = pl.concat([other, cast])
    if failures.is_empty():
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    rows = indexed.filter(pl.col("row_index").is_in(failures["row_index"].unique())).select(
        "row_index",
        pl.col("day") if "day" in indexed.columns else pl.lit(None, pl.Date).alias("day"),
        pl.struct(pl.all().exclude("row_index")).struct.json_encode().alias("row_json"),
    )
    return (
        failures.join(rows, on="row_index", how="left")
        .with_columns(pl.lit(contract.label).alias("contract"), pl.lit(run_id).alias("run_id"))
        .select(list(QUARANTINE_SCHEMA))
        .cast(pl.Schema(QUARANTINE_SCHEMA))
        .sort("day", "row_index", "column")
    )


# One row rule broken by one cell, before the row and its context are joined on.
FAILURE_SCHEMA = pl.Schema(
    {
        "row_index": pl.Int64,
        "column": pl.String,
        "rule": pl.String,
        "observed": pl.String,
    }
)


def _schema_failures(indexed: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """The pandera row rules' failures: (row_index, column, rule, observed)."""
    try:
        row_schema(contract).validate(indexed, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases.filter(pl.col("index").is_not_null())
    else:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    failures = failures.select(
        pl.col("index").cast(pl.Int64).alias("row_index"),
        pl.col("column").cast(pl.String),
        pl.col("check")
        .cast(pl.String)
        .map_elements(_rule_name, return_dtype=pl.String)
        .alias("rule"),
        pl.col("failure_case").cast(pl.String).alias("observed"),
    )
    if len(contract.key) > 1:  # pandera names the schema and the whole row: name the key
        composite = pl.col("rule") == "multiple_fields_uniqueness"
        failures = failures.with_columns(
            pl.when(composite)
            .then(pl.lit(", ".join(contract.key)))
            .otherwise(pl.col("column"))
            .alias("column"),
            pl.when(composite)
            .then(
                pl.concat_str(
                    [pl.col("observed").str.json_path_match(f"$.{k}") for k in contract.key],
                    separator=", ",
                )
            )
            .otherwise(pl.col("observed"))
            .alias("observed"),
        )
    return failures.cast(FAILURE_SCHEMA)


def _cast_failures(indexed: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """One failure per cell the warehouse could not cast, from the staging view's record
    (`cast_failures_column`: a JSON object of column -> raw value): rule `castable_to(<type>)`,
    observed the raw value."""
    record = contract.cast_failures_column
    if record is None or record not in indexed.columns:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    fields = {name: pl.String for name in contract.fields if name != record}
    failed = indexed.filter(pl.col(record).is_not_null())
    if failed.is_empty():
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    types = pl.DataFrame(
        {
            "column": list(fields),
            "rule": [f"castable_to({contract.fields[name].type})" for name in fields],
        }
    )
    return (
        failed.select("row_index", pl.col(record).str.json_decode(pl.Struct(fields)).alias("raw"))
        .unnest("raw")
        .unpivot(index="row_index", variable_name="column", value_name="observed")
        .filter(pl.col("observed").is_not_null())
        .join(types, on="column", how="left")
        .select(list(FAILURE_SCHEMA))
        .cast(FAILURE_SCHEMA)
    )


def _rule_name(check: str) -> str:
    """pandera's check name, with enum lists shortened: `isin(['9E', ...])` -> `isin(enum)`."""
    return re.sub(r"^isin\(\[.*\]\)$", "isin(enum)", check)


def describe_quarantine(quarantine: pl.DataFrame) -> dict[str, Any]:
    """Counts per column and rule, for metadata and the CLI."""
    grouped = quarantine.group_by("column", "rule").agg(
        pl.col("row_index").n_unique().alias("rows")
    )
    return {f"{c}: {r}": n for c, r, n in grouped.sort("rows", descending=True).iter_rows()}
