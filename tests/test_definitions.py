"""The code location loads, and its graph is exactly the designed one (docs/architecture.md).

A refactor that silently drops an edge, a partition mapping or a code version fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys

import dagster as dg
import pytest

from trainflow.defs.code_versions import ASSET_CODE
from trainflow.experiments import EXPERIMENT_TABLES
from trainflow.settings import Settings, SettingsError

EXPECTED_UPSTREAM = {
    "raw_snapshot": {
        "flights_enriched",
        "stg_weather",
        "stg_planes",
        "stg_airports",
        "stg_airlines",
    },
    "validated_flights": {"raw_snapshot"},
    "quarantine_flights": {"raw_snapshot"},
    "flight_features": {"validated_flights"},
    "training_dataset": {"flight_features"},
    "model": {"training_dataset", "raw/flights"},
    "evaluation_report": {"training_dataset", "model"},
    "registry_entry": {"model", "evaluation_report"},
    "flights_enriched": {
        "stg_flights",
        "stg_weather",
        "stg_planes",
        "stg_airlines",
        "stg_landings",
    },
    "stg_flights": {"raw/flights"},
    "stg_weather": {"raw/weather"},
    "stg_landings": {"raw/landings"},
}
DAILY = {
    "raw_snapshot",
    "validated_flights",
    "flight_features",
    "flight_delay_predictions",
    "champion_live_performance",
}


@pytest.fixture(scope="module")
def graph():
    from trainflow.definitions import defs

    return defs.resolve_asset_graph()


def test_graph_edges_are_the_designed_ones(graph) -> None:
    for asset, upstream in EXPECTED_UPSTREAM.items():
        parents = {
            k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(asset)).parent_keys
        }
        assert parents == upstream, asset


def test_every_contract_expectation_is_a_blocking_check_in_the_ui(graph) -> None:
    checks = {key.to_user_string(): key for key in graph.asset_check_keys}
    expected = {
        *(
            f"validated_flights:{name}"
            for name in (
                "schema",
                "min_rows_per_day",
                "rows_landed",
                "volume_vs_reference",
                "distribution_vs_reference",
                "max_null_fraction",
                "allowed_late_arrival",
                "max_reject_fraction",
            )
        ),
        *(
            f"stg_{table}:{name}"
            for table in ("weather", "planes", "airports", "airlines")
            for name in ("schema", "min_rows", "max_reject_fraction")
        ),
    }
    assert expected <= set(checks)
    assert all(graph.get_check_spec(checks[name]).blocking for name in expected)
    # Freshness against landed data: checks a sensor evaluates, blocking nothing.
    freshness = {
        "flight_features:fresh_against_landed_days",
        "registry_entry:champion_fresh_against_landed_days",
    }
    assert freshness <= set(checks)
    assert not any(graph.get_check_spec(checks[name]).blocking for name in freshness)
    # The other checks are dbt's own tests (not_null, unique) on the staging models.
    others = set(checks) - expected - freshness
    assert {n.split(":")[1].split("_")[0] for n in others} <= {"not", "unique"}


def test_daily_assets_cover_2013_only_and_run_ranges_in_one_run(graph) -> None:
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        name = key.to_user_string()
        if name in EXPERIMENT_TABLES:  # one run per experiment (the next test)
            continue
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
        if name in DAILY:
            keys = node.partitions_def.get_partition_keys()
            assert (keys[0], keys[-1], len(keys)) == ("2013-01-01", "2013-12-31", 365)
        else:
            assert node.partitions_def is None, name


def test_the_training_side_is_partitioned_by_experiment_and_reads_every_day(graph) -> None:
    """Its assets share the dynamic `experiments` partitions, a backfill over several runs
    one experiment each, the features are read whole and the predictions follow every
    experiment's registry entry."""
    for name in EXPERIMENT_TABLES:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == dg.DynamicPartitionsDefinition(name="experiments"), name
        assert node.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
    features, dataset = dg.AssetKey("flight_features"), dg.AssetKey("training_dataset")
    assert isinstance(graph.get_partition_mapping(dataset, features), dg.AllPartitionMapping)
    predictions, registry = dg.AssetKey("flight_delay_predictions"), dg.AssetKey("registry_entry")
    assert isinstance(graph.get_partition_mapping(predictions, registry), dg.AllPartitionMapping)
    model, evaluation = dg.AssetKey("model"), dg.AssetKey("evaluation_report")
    assert isinstance(graph.get_partition_mapping(evaluation, model), dg.IdentityPartitionMapping)


def test_every_trainflow_asset_has_a_code_version_derived_from_its_code(graph) -> None:
    for name, spec in ASSET_CODE.items():
        node = graph.get(dg.AssetKey(name))
        assert re.fullmatch(rf"{spec.human}-[0-9a-f]{{16}}", node.code_version or ""), name
        sources = node.metadata["code_version_sources"].value
        assert any(source.endswith(f":{name}") for source in sources), name
    assert len({graph.get(dg.AssetKey(n)).code_version for n in ASSET_CODE}) == len(ASSET_CODE)


def test_features_read_a_28_day_window_of_validated_flights(graph) -> None:
    mapping = graph.get_partition_mapping(
        dg.AssetKey("flight_features"), dg.AssetKey("validated_flights")
    )
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-28, 0)


def test_settings_come_from_the_environment_only(tmp_path) -> None:
    settings = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path)})
    assert settings.profile == "local"
    assert settings.lake_uri == str(tmp_path / "lake")
    assert settings.warehouse_url == str(tmp_path / "warehouse.duckdb")
    s3 = Settings.from_env({"TRAINFLOW_LAKE_URI": "s3://bucket/prefix/", "AWS_REGION": "eu-west-1"})
    assert s3.lake_uri == "s3://bucket/prefix" and s3.storage_options == {"AWS_REGION": "eu-west-1"}
    with pytest.raises(SettingsError, match="TRAINFLOW_PROFILE='staging'"):
        Settings.from_env({"TRAINFLOW_PROFILE": "staging"})


def test_s3_timeout_bounds_requests_to_an_s3_lake_only(tmp_path) -> None:
    s3 = Settings.from_env({"TRAINFLOW_LAKE_URI": "s3://bucket/lake", "TRAINFLOW_S3_TIMEOUT": "5"})
    assert s3.s3_timeout_seconds == 5
    assert s3.storage_options == {"timeout": "5s", "retry_timeout": "5s"}
    from trainflow.definitions import build_resources

    assert build_resources(s3)["lake"].lake().storage_options == s3.storage_options
    local = Settings.from_env({"TRAINFLOW_HOME": str(tmp_path), "TRAINFLOW_S3_TIMEOUT": "5"})
    assert local.storage_options == {}
    with pytest.raises(SettingsError, match=r"TRAINFLOW_S3_TIMEOUT='2\.5'"):
        Settings.from_env({"TRAINFLOW_S3_TIMEOUT": "2.5"})


def test_local_steps_fork_from_a_preloaded_server_unless_the_run_chooses() -> None:
    from trainflow.definitions import PRELOADED_MODULES, _forkserver_unless_chosen

    forked = {"forkserver": {"preload_modules": PRELOADED_MODULES}}
    assert _forkserver_unless_chosen({"multiprocess": {}}) == {
        "multiprocess": {"start_method": forked}
    }
    assert _forkserver_unless_chosen({"multiprocess": {"max_concurrent": 1}}) == {
        "multiprocess": {"max_concurrent": 1, "start_method": forked}
    }
    chosen = {"multiprocess": {"start_method": {"spawn": {}}}}
    assert _forkserver_unless_chosen(chosen) == chosen
    assert _forkserver_unless_chosen({"in_process": {}}) == {"in_process": {}}


FORKSERVER_PROBE = """
import sys
from multiprocessing import forkserver
sys.argv = ["dagster", *sys.argv[1:]]
from trainflow.definitions import _forkserver_unless_chosen
_forkserver_unless_chosen({"multiprocess": {}})
print(forkserver._forkserver._forkserver_pid)
"""


@pytest.mark.parametrize(
    ("command", "starts"),
    [
        (["asset", "materialize"], True),
        (["launch", "--partition", "2013-01-01", "--assets", "*"], True),  # dg launch
        (["api", "execute_run"], True),
        (["api", "grpc"], False),
        (["list", "defs"], False),  # dg list defs
    ],
)
def test_a_run_process_starts_the_forkserver_when_its_config_resolves(
    command: list[str], starts: bool
) -> None:
    """Its imports then overlap the run's planned events; a code server that only validates
    a run's config starts none."""
    done = subprocess.run(
        [sys.executable, "-c", FORKSERVER_PROBE, *command],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    started = done.stdout.strip().splitlines()[-1] != "None"
    assert started == starts, done.stdout + done.stderr


LEFT_OUT_OF_LOADING = ("mlflow", "lightgbm", "sklearn", "matplotlib", "torch")


def test_loading_the_code_location_leaves_the_step_libraries_to_the_steps() -> None:
    """The terminal, webserver, daemon and run workers load the definitions without MLflow,
    LightGBM, scikit-learn or matplotlib; the steps' forkserver preloads all of them."""
    probe = (
        "import sys, importlib\n"
        "import trainflow.definitions as d\n"
        f"print(sorted(m for m in {LEFT_OUT_OF_LOADING!r} if m in sys.modules))\n"
        "for name in d.PRELOADED_MODULES: importlib.import_module(name)\n"
        f"print(sorted(m for m in {LEFT_OUT_OF_LOADING!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    loaded, preloaded = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]", done.stdout
    assert preloaded == "['lightgbm', 'matplotlib', 'mlflow', 'sklearn']", done.stdout


def test_every_import_inside_an_asset_is_preloaded_for_the_steps() -> None:
    """An import inside a function of the Dagster layer or of a stage it calls is left out of
    loading on purpose; listed in STEP_MODULES, no step pays for it at run time."""
    import ast
    from pathlib import Path

    import trainflow.defs
    import trainflow.stages
    from trainflow.definitions import STEP_MODULES

    found = {}
    paths = [
        *Path(trainflow.defs.__file__).parent.glob("*.py"),
        *Path(trainflow.stages.__file__).parent.glob("*.py"),
    ]
    for path in paths:
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found[node.module] = path.name
                elif isinstance(node, ast.Import):
                    found.update({alias.name: path.name for alias in node.names})
    assert found, "no import inside a function found: the walk is broken"
    missing = {module: file for module, file in found.items() if module not in STEP_MODULES}
    assert not missing, f"imported inside an asset but not preloaded: {missing}"


def test_every_asset_has_a_description_and_a_named_group(graph) -> None:
    """What a first-time user reads in the UI: no asset without a description, none in
    Dagster's `default` group; the landed tables say they are warehouse tables."""
    groups = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert (node.description or "").strip(), key.to_user_string()
        assert node.group_name and node.group_name != "default", key.to_user_string()
        groups.add(node.group_name)
    assert groups == {"warehouse", "ingest", "features", "training", "evaluation", "predictions"}
    for key in graph.get_all_asset_keys():
        if key.path[0] == "raw":
            assert graph.get(key).description.startswith(f"Warehouse table `raw.{key.path[1]}`")


def test_landed_tables_are_labelled_with_the_profiles_warehouse(tmp_path) -> None:
    """DuckDB here; a PostgreSQL warehouse (prod) shows its tables as `postgres`."""
    from trainflow.definitions import build_definitions

    def kinds(env: dict[str, str]) -> set[str]:
        defs = build_definitions(Settings.from_env({"TRAINFLOW_HOME": str(tmp_path), **env}))
        return set(defs.resolve_asset_graph().get(dg.AssetKey(["raw", "flights"])).kinds)

    assert kinds({}) == {"duckdb", "table"}
    postgres = {"TRAINFLOW_WAREHOUSE_URL": "postgresql://postgres@127.0.0.1:5432/warehouse"}
    assert kinds(postgres) == {"postgres", "table"}


def test_the_benchmarks_no_op_graph_has_trainflows_shape() -> None:
    """`make bench` measures Dagster's floor on a no-op graph of trainflow's shape and
    refuses to run when they differ: a new step or check must reach both (this drifted
    once, unseen until the benchmark was run)."""
    from benchmarks.noop_graph import check_shape

    check_shape()
