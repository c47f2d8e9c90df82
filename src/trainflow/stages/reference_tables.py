"""The reference tables every flight joins, checked whole against their data contracts.

`raw_snapshot` refuses to snapshot a flight while one breaks its contract; the warehouse's
asset checks (`defs/warehouse.py`) show the same outcomes in the UI.
"""

from __future__ import annotations

from trainflow.contracts import Contract, ContractViolation, TableReport, validate_table
from trainflow.warehouse.models import WarehouseModels

# Reference tables with a contract `<name>.yaml`, checked whole as the dbt model stg_<name>.
REFERENCE_TABLES = ("weather", "planes", "airports", "airlines")


def check_reference_tables(
    warehouse: WarehouseModels, contracts: dict[str, Contract]
) -> dict[str, TableReport | ContractViolation]:
    """Each reference table against its contract: the report, or the violation."""
    outcomes: dict[str, TableReport | ContractViolation] = {}
    for table in REFERENCE_TABLES:
        try:
            outcomes[table] = validate_table(warehouse.read_model(f"stg_{table}"), contracts[table])
        except ContractViolation as violation:
            outcomes[table] = violation
    return outcomes
