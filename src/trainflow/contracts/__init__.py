"""Data contracts: what a table must look like before anything downstream may read it.

Data contracts are versioned YAML files (`<table>.yaml` here), compiled to pandera polars
schemas. Two kinds of violation, treated differently (nothing is ever silently dropped):
- table-level (a missing, renamed or retyped column; a day with too few rows; a column
  null more often than its `max_null_fraction`; a day that landed later than
  `allowed_late_arrival` allows) fails the partition at once: nothing downstream can be
  trusted;
- row-level (a null key, an unknown code, a value outside its physical bounds or above
  another column it may not exceed, a duplicate key, a UTC timestamp that is not the local
  one) sends the row to quarantine with the rule, column
  and observed value; the partition keeps its good rows, unless more than
  `max_reject_fraction` of its rows were rejected, which fails it.
Every message names the partition, the column, the contract version and the rule.

One module per idea, each importing only those listed before it:
- `spec`: the contract file format (models, `load_contract`, the fingerprint);
- `pandera_schema`: the row rules compiled to a pandera schema;
- `rules`: the expectations' names, `ContractViolation`, `ValidationOutcome`;
- `row_rules`: rows that break a row rule, as quarantine rows;
- `table_rules`: table-level expectations (schema, rows, null rates, late arrival);
- `reference`: the trailing reference window of a day, and the cache keys it shapes;
- `window_rules`: expectations against the reference window (volume, distribution);
- `chunked`: validating a partitioned table, a chunk of whole days at a time;
- `whole_table`: validating a reference table whole;
- `quarantine`: the write order and read rule of the quarantine and validated tables.
"""

from trainflow.contracts.chunked import validate_chunks, validate_partitions
from trainflow.contracts.row_rules import describe_quarantine
from trainflow.contracts.rules import (
    DISTRIBUTION_RULE,
    LATE_ARRIVAL_RULE,
    MIN_ROWS_RULE,
    NULL_RATE_RULE,
    REJECT_RULE,
    ROWS_LANDED_RULE,
    SCHEMA_RULE,
    TABLE_EXPECTATIONS,
    TABLE_MIN_ROWS_RULE,
    VOLUME_RULE,
    ContractViolation,
    Observed,
    ValidationOutcome,
)
from trainflow.contracts.spec import Contract, load_contract
from trainflow.contracts.whole_table import TableReport, validate_table
from trainflow.contracts.window_rules import WindowTable, reference_for

__all__ = [
    "DISTRIBUTION_RULE",
    "LATE_ARRIVAL_RULE",
    "MIN_ROWS_RULE",
    "NULL_RATE_RULE",
    "REJECT_RULE",
    "ROWS_LANDED_RULE",
    "SCHEMA_RULE",
    "TABLE_EXPECTATIONS",
    "TABLE_MIN_ROWS_RULE",
    "VOLUME_RULE",
    "Contract",
    "ContractViolation",
    "Observed",
    "TableReport",
    "ValidationOutcome",
    "WindowTable",
    "describe_quarantine",
    "load_contract",
    "reference_for",
    "validate_chunks",
    "validate_partitions",
    "validate_table",
]
