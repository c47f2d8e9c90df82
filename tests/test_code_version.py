"""Code versions follow the code: derived from an edited copy of the source tree, a logic
edit changes the versions of the assets that run it (and nothing upstream), while comments,
docstrings and formatting change nothing. Library versions and a human bump count too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from trainflow.code_version import SourceTree, derive_code_version
from trainflow.defs.code_versions import ASSET_CODE

ASSET_MODULES = {
    "raw_snapshot": "trainflow.defs.ingest",
    "validated_flights": "trainflow.defs.ingest",
    "flight_features": "trainflow.defs.features",
    "training_dataset": "trainflow.defs.training",
    "model": "trainflow.defs.training",
    "evaluation_report": "trainflow.defs.evaluation",
    "registry_entry": "trainflow.defs.evaluation",
    "flight_delay_predictions": "trainflow.defs.predictions",
    "champion_live_performance": "trainflow.defs.predictions",
}
FEATURES = Path("trainflow/features/flights.py")


def versions(root: Path) -> dict[str, str]:
    tree = SourceTree(root)
    return {
        name: derive_code_version(
            tree, ASSET_MODULES[name], name, human="1", installed={"polars": "1.0"}
        ).version
        for name in ASSET_CODE
    }


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT / "src", root, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return root


def edit(root: Path, relative: Path, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def test_every_asset_module_is_known() -> None:
    assert set(ASSET_MODULES) == set(ASSET_CODE)


def test_comments_docstrings_and_formatting_change_nothing(source_copy: Path) -> None:
    before = versions(source_copy)
    edit(source_copy, FEATURES, '"""Point-in-time flight features', '"""Reworded: features')
    edit(source_copy, FEATURES, "    targets = sorted(set(days))\n",
         "    # a new comment\n    targets = sorted(\n        set(days)\n    )  # trailing\n")  # fmt: skip
    edit(source_copy, Path("trainflow/defs/features.py"), "    return compute_features(",
         "    # why: the stage does the work\n    return compute_features(")  # fmt: skip
    assert versions(source_copy) == before


def test_a_feature_logic_edit_changes_features_not_upstream(source_copy: Path) -> None:
    before = versions(source_copy)
    edit(source_copy, FEATURES, 'pl.col("day").dt.weekday().cast(pl.Int32)',
         '(pl.col("day").dt.weekday() - 1).cast(pl.Int32)')  # fmt: skip
    after = versions(source_copy)
    assert after["raw_snapshot"] == before["raw_snapshot"]
    assert after["validated_flights"] == before["validated_flights"]
    for name in ("flight_features", "training_dataset", "model", "evaluation_report"):
        assert after[name] != before[name], name


def test_an_edit_deep_in_a_helper_module_counts(source_copy: Path) -> None:
    """flight_features never names rolling_delay_rates: module granularity covers it."""
    before = versions(source_copy)
    edit(source_copy, FEATURES, "SMOOTHING_FLIGHTS = 20.0", "SMOOTHING_FLIGHTS = 25.0")
    assert versions(source_copy)["flight_features"] != before["flight_features"]


def test_another_asset_in_the_same_module_does_not_count(source_copy: Path) -> None:
    before = versions(source_copy)
    edit(source_copy, Path("trainflow/defs/ingest.py"), "    yield from _quarantine_written(",
         "    assert validation.quarantine_uri\n    yield from _quarantine_written(")  # fmt: skip
    after = versions(source_copy)
    assert after["validated_flights"] != before["validated_flights"]
    assert after["raw_snapshot"] == before["raw_snapshot"]
    # ... nor does another stage's module, imported beside it.
    edit(source_copy, Path("trainflow/stages/validation.py"), "    stored = lake.stored_versions(TABLE, window)",
         "    stored = lake.stored_versions(TABLE, window)\n    assert stored is not None")  # fmt: skip
    again = versions(source_copy)
    assert again["validated_flights"] != after["validated_flights"]
    assert again["raw_snapshot"] == before["raw_snapshot"]


def test_library_upgrade_and_human_bump_change_the_version() -> None:
    tree = SourceTree.installed()
    module, name = ASSET_MODULES["model"], "model"
    base = derive_code_version(tree, module, name, installed={"lightgbm": "4.6.0"})
    upgraded = derive_code_version(tree, module, name, installed={"lightgbm": "4.7.0"})
    bumped = derive_code_version(tree, module, name, human="2", installed={"lightgbm": "4.6.0"})
    assert len({base.version, upgraded.version, bumped.version}) == 3
    assert bumped.version.startswith("2-") and base.version.startswith("1-")
    assert "trainflow.models.lightgbm_model" in base.sources
    live = derive_code_version(tree, module, name, libraries=ASSET_CODE["model"].libraries)
    assert set(live.libraries) == {"lightgbm", "numpy", "polars"}
    assert all(v[0].isdigit() for v in live.libraries.values())


def test_a_resized_pod_changes_no_version(source_copy: Path) -> None:
    """Where a step runs (defs/pods.py) is not what it computes: no cache miss."""
    before = versions(source_copy)
    edit(source_copy, Path("trainflow/defs/pods.py"), '"2", "3Gi", "2", "6Gi"',
         '"4", "16Gi", "8", "32Gi"')  # fmt: skip
    assert versions(source_copy) == before
