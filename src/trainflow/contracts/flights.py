"""The flights data contract (`flights.yaml` beside this file), loaded once."""

from __future__ import annotations

from pathlib import Path

from trainflow.contracts.contract import Contract, load_contract

CONTRACT_FILE = Path(__file__).with_name("flights.yaml")
FLIGHTS_CONTRACT: Contract = load_contract(CONTRACT_FILE)
