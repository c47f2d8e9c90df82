"""Every trainflow asset's code version, in one place: bump one when its logic changes.

Code versions are part of each asset's cache key (docs/architecture.md) and of every registered
model's lineage tags.
"""

CODE_VERSIONS: dict[str, str] = {
    "raw_snapshot": "1",
    "validated_flights": "1",
    "flight_features": "1",
    "training_dataset": "1",
    "model": "1",
    "evaluation_report": "1",
    "registry_entry": "1",
}
