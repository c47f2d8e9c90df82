"""A search's runs: each round's trials as Dagster runs side by side (one process each, up
to the search's `parallel`), then the best trial's params as the search's candidate through
evaluation and registration (trainflow/search.py plans; this module only launches).

Each trial is a run of `training_dataset` and `model` with the trial's config: its
experiment's rows in the lake, its own cache keys, its MLflow run, visible in the UI on a
persistent instance (DAGSTER_HOME) with the tags `trainflow/search` and `trainflow/trial`.
Trials are never evaluated against the test window, nor registered: only the candidate is.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import dagster as dg

from trainflow.cache import EXPERIMENT_COLUMN
from trainflow.config import ExperimentConfig, load_config
from trainflow.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from trainflow.defs.partitions import add_experiment
from trainflow.defs.replay import first_error
from trainflow.lake.delta_lake import DeltaLake
from trainflow.search import (
    Trial,
    TrialResult,
    best,
    candidate_config,
    plan,
    trial_config,
    trial_number,
)
from trainflow.settings import Settings

SEARCH_TAG = "trainflow/search"
TRIAL_TAG = "trainflow/trial"
TRIAL_ASSETS = ["training_dataset", "model"]
CANDIDATE_ASSETS = ["training_dataset", "model", "evaluation_report", "registry_entry"]


class SearchError(RuntimeError):
    """A trial's or the candidate's run failed: named, with its first error."""


@dataclass(frozen=True)
class SearchOutcome:
    results: list[TrialResult]
    trained: list[str]  # the trials this call ran (the others were in the lake already)
    stopped: str  # why the search asked no more trials
    best: TrialResult
    wall_seconds: float
    cpu_seconds: float  # this process and its trial processes, all of the search


def store_config(settings: Settings, config: ExperimentConfig) -> str:
    """A trial's or the candidate's config stored in the lake's experiment store, where
    its run's steps read it by partition key (trainflow/experiment_store.py)."""
    build_resources(settings)["experiment"].store().add(config)  # type: ignore[attr-defined]
    return config.name


def run_assets(
    settings: Settings, experiment: str, assets: Sequence[str], tags: dict[str, str]
) -> tuple[bool, str]:
    """Materialize `assets` for experiment partition `experiment` (its config stored), in
    this process, on the DAGSTER_HOME instance (an ephemeral one without it). Returns
    success and the first error."""
    instance = dg.DagsterInstance.get() if settings.dagster_home else dg.DagsterInstance.ephemeral()
    with instance:
        add_experiment(instance, experiment)
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=[dg.AssetKey(a) for a in assets],
            partition_key=experiment,
            resources=build_resources(settings),
            instance=instance,
            tags=tags,
            raise_on_error=False,
        )
    return result.success, "" if result.success else first_error(result)


def _trial_run(settings: Settings, experiment: str, tags: dict[str, str]) -> tuple[bool, str]:
    """A trial's run in a worker process (a function at module level: the pool pickles it)."""
    return run_assets(settings, experiment, TRIAL_ASSETS, tags)


def stored_result(
    lake: DeltaLake,
    config: ExperimentConfig,
    trial: Trial,
    cpu_seconds: Callable[[str], float | None],
) -> TrialResult | None:
    """The trial's result when the lake holds its model trained with the trial's config
    (same config hash): the validation metric from the model row, the CPU-seconds from its
    MLflow run. None when it has not run (or ran with another config)."""
    trial_cfg = trial_config(config, trial)
    if lake.experiment_version("model", trial_cfg.name) is None:
        return None
    row = lake.read("model", experiment=trial_cfg.name).row(0, named=True)
    if row["config_hash"] != trial_cfg.config_hash:
        return None
    run_id = row["mlflow_run_id"]
    return TrialResult(trial, float(row["validation_roc_auc"]), cpu_seconds(run_id), run_id)


def trials_in_lake(lake: DeltaLake, config: ExperimentConfig) -> list[Trial]:
    """The trials of this search the lake holds (numbered within its count budget), each
    with the params it was trained with (those the space names): the search's memory, so a
    re-run, a resumed run or a wider space continues from them instead of asking again."""

    assert config.search is not None
    if lake.version("model") is None:
        return []
    models = lake.scan("model")
    if EXPERIMENT_COLUMN not in models.collect_schema().names():
        return []
    found = []
    for name in models.select(EXPERIMENT_COLUMN).unique().collect().to_series():
        number = trial_number(config.name, name)
        if number is None or number >= config.search.trials:
            continue
        row = lake.read("model", experiment=name).row(0, named=True)
        params = json.loads(row["manifest_json"])["config"]["model"]["params"]
        space = config.search.space
        found.append(Trial(number, name, {k: params[k] for k in sorted(space) if k in params}))
    return sorted(found, key=lambda t: t.number)


def run_search(
    settings: Settings,
    config: ExperimentConfig,
    cpu_seconds: Callable[[str], float | None],
    say: Callable[[str], None] = print,
    workers: int | None = None,
) -> SearchOutcome:
    """Plan rounds until a budget stops the search, running the trials the lake does not
    hold yet, then the best trial's params as the search's candidate.

    `workers` trial runs at a time (default: the search's `parallel`, a round at once);
    fewer run the same trials one after the other, for the same bytes."""
    own = load_config(settings.config_path).name
    if config.name == own:
        # Its steps would read TRAINFLOW_CONFIG's file for the candidate, not the best
        # params (trainflow/experiment_store.py): the code location's own config is not
        # a search's.
        raise SearchError(
            f"the search {config.name} is the code location's own experiment "
            f"(TRAINFLOW_CONFIG={settings.config_path}): run it with another TRAINFLOW_CONFIG"
        )
    started = time.perf_counter()  # wall clock for the reported duration only
    cpu_started = process_cpu_seconds()
    lake = DeltaLake(settings.lake_uri, settings.storage_options)
    search = config.search
    assert search is not None
    results: list[TrialResult] = []
    trained: list[str] = []
    if settings.dagster_home:
        # The instance's SQLite storages made here, once: trial processes opening a new
        # instance at the same moment race to create them (alembic then finds two heads).
        dg.DagsterInstance.get().dispose()
    # spawn: a forked child would inherit this process's Dagster and MLflow state.
    context = multiprocessing.get_context("spawn")
    pool_size = workers or search.parallel
    with ProcessPoolExecutor(max_workers=pool_size, mp_context=context) as pool:
        # The trials the lake holds first (trained again, with their params, where the
        # config around them changed), then rounds asked from them.
        stored = trials_in_lake(lake, config)
        while True:
            step = plan(config, results)  # the budgets, checked before every round
            if step.done:
                stopped = step.reason
                break
            # A round of the trials the lake holds, while any are left; then asked ones.
            pending = stored[: search.parallel] or step.trials
            stored = stored[search.parallel :]
            todo = [t for t in pending if stored_result(lake, config, t, cpu_seconds) is None]
            say(
                f"search {config.name}: trials {pending[0].number}..{pending[-1].number}"
                f" ({len(todo)} to train, {len(pending) - len(todo)} in the lake)"
            )
            futures = {
                t.name: pool.submit(
                    _trial_run,
                    settings,
                    store_config(settings, trial_config(config, t)),
                    {SEARCH_TAG: config.name, TRIAL_TAG: t.name},
                )
                for t in todo
            }
            for name, future in futures.items():
                ok, error = future.result()
                if not ok:
                    raise SearchError(f"trial {name} failed: {error}")
                trained.append(name)
            for t in pending:
                found = stored_result(lake, config, t, cpu_seconds)
                if found is None:
                    raise SearchError(f"trial {t.name} ran but the lake holds no model of it")
                results.append(found)
    top = best(results)
    say(
        f"search {config.name}: {stopped}; best {top.trial.name} "
        f"(validation ROC AUC {top.value:.4f}); its params go to the gate as {config.name}"
    )
    ok, error = run_assets(
        settings,
        store_config(settings, candidate_config(config, top.trial)),
        CANDIDATE_ASSETS,
        {SEARCH_TAG: config.name},
    )
    if not ok:
        raise SearchError(f"the search's candidate {config.name} failed: {error}")
    return SearchOutcome(
        results,
        trained,
        stopped,
        top,
        time.perf_counter() - started,
        process_cpu_seconds() - cpu_started,
    )


def process_cpu_seconds() -> float:
    """CPU-seconds this process and its finished children used (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
