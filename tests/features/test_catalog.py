"""The feature catalog: every feature described once, docs/features.md generated from it,
and the UI's column descriptions and lineage (warehouse -> validated -> features) from it."""

from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT, thin_history_config
from tests.helpers.graph import ingest_resources, partition_range_tags
from trainflow.contracts import load_contract
from trainflow.defs.features import flight_features
from trainflow.defs.ingest import raw_snapshot, validated_flights
from trainflow.features.catalog import CATALOG, describe, lineage, missing_entries, render_markdown
from trainflow.features.flights import ALL_FEATURES, LABEL
from trainflow.settings import PACKAGED_CONTRACTS_DIR


def test_every_feature_has_one_entry_and_the_docs_are_generated_from_them() -> None:
    assert missing_entries() == []
    assert list(CATALOG) == list(ALL_FEATURES)
    assert (REPO_ROOT / "docs" / "features.md").read_text() == render_markdown(), (
        "docs/features.md is stale: python -m trainflow.features.catalog docs/features.md"
    )


def test_every_source_is_a_column_of_the_validated_table() -> None:
    contract = load_contract(PACKAGED_CONTRACTS_DIR / "flights.yaml")
    for feature, sources in lineage().items():
        assert sources and set(sources) <= set(contract.fields), feature


def test_the_ui_shows_descriptions_and_column_lineage(warehouse_copy: Path, tmp_path: Path) -> None:
    result = dg.materialize(
        [raw_snapshot, validated_flights, flight_features],
        resources=ingest_resources(
            warehouse_copy, tmp_path / "lake", thin_history_config(tmp_path)
        ),
        tags=partition_range_tags("2013-02-01", "2013-02-02"),
    )
    assert result.success
    by_asset = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    features = by_asset["flight_features"]
    schema = {c.name: c.description for c in features["dagster/column_schema"].value.columns}
    assert set(ALL_FEATURES) | {LABEL} <= set(schema)
    assert schema["temp_f"] == describe("temp_f")
    assert "Point in time: the origin's latest observation completed strictly before" in (
        schema["temp_f"] or ""
    )
    assert schema["flight_id"] is None  # identity columns need no catalog entry
    deps = features["dagster/column_lineage"].value.deps_by_column
    assert sorted(d.column_name for d in deps["route_delay_rate_28d"]) == [
        "arr_delay_minutes", "day", "dest", "origin",
    ]  # fmt: skip
    assert {d.asset_key.to_user_string() for ds in deps.values() for d in ds} == {
        "validated_flights"
    }
    validated = by_asset["validated_flights"]["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key.to_user_string(), d.column_name) for d in validated["temp_f"]] == [
        ("flights_enriched", "temp_f")
    ]


@pytest.mark.parametrize("feature", ALL_FEATURES)
def test_each_description_says_meaning_rule_and_range(feature: str) -> None:
    text = describe(feature) or ""
    assert CATALOG[feature].meaning in text and "Point in time:" in text and "Expected:" in text
