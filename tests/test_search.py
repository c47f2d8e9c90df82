"""The search planner (trainflow/search.py): rounds of trials asked of a seeded sampler from
the results before them, so a search re-run or resumed asks the same trials, a wider space
keeps the trials run so far, and both budgets stop it. The objective here is a plain
function of the params; the trials' real training is the pipeline's (tests/test_experiments.py
trains experiments)."""

from __future__ import annotations

import math

import pytest
import yaml

from tests.helpers.environment import QUICK_CONFIG
from trainflow.config import ConfigError, ExperimentConfig, SearchConfig, load_config
from trainflow.search import (
    TrialResult,
    best,
    candidate_config,
    plan,
    trial_config,
    trial_number,
)

SPACE = {
    "num_leaves": {"type": "int", "low": 15, "high": 127, "log": True},
    "learning_rate": {"type": "float", "low": 0.02, "high": 0.2, "log": True},
    "min_data_in_leaf": {"type": "int", "low": 50, "high": 400},
    "boosting": {"type": "choice", "choices": ["gbdt", "goss"]},
}


def _config(**search: object) -> ExperimentConfig:
    base = load_config(QUICK_CONFIG)
    block = {"space": SPACE, "trials": 8, "parallel": 2, **search}
    return base.model_copy(update={"search": SearchConfig.model_validate(block)})


def _objective(params: dict) -> float:
    """A validation ROC AUC-like score with its best at 63 leaves and rate 0.05."""
    return (
        0.7
        - 0.01 * (math.log(params["num_leaves"]) - math.log(63)) ** 2
        - 0.01 * (math.log(params["learning_rate"]) - math.log(0.05)) ** 2
        - (0.001 if params["boosting"] == "goss" else 0.0)
    )


def _run(config: ExperimentConfig, results: list[TrialResult] | None = None, cpu: float = 10.0):
    """The search loop: plan a round, 'train' its trials, until the plan says done."""
    results = list(results or [])
    rounds = []
    while True:
        step = plan(config, results)
        if step.done:
            return results, rounds, step.reason
        rounds.append([t.number for t in step.trials])
        results += [TrialResult(t, _objective(t.params), cpu) for t in step.trials]


def test_a_search_runs_in_rounds_until_its_count_budget() -> None:
    results, rounds, reason = _run(_config())
    assert rounds == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [r.trial.name for r in results][:2] == [
        "flight-delay-2013-quick.trial-000",
        "flight-delay-2013-quick.trial-001",
    ]
    assert reason == "count budget reached: 8 of 8 trials"
    for r in results:  # every param inside its range
        assert 15 <= r.trial.params["num_leaves"] <= 127
        assert 0.02 <= r.trial.params["learning_rate"] <= 0.2
        assert r.trial.params["boosting"] in {"gbdt", "goss"}
    assert len({tuple(sorted(r.trial.params.items())) for r in results}) == 8


def test_the_same_search_asks_the_same_trials_and_again_asks_nothing() -> None:
    first, _, _ = _run(_config())
    second, _, _ = _run(_config())
    assert [r.trial for r in first] == [r.trial for r in second]
    # Run again over what the lake holds: nothing left to ask, a hit end to end.
    again, rounds, reason = _run(_config(), first)
    assert rounds == [] and again == first and "count budget reached" in reason


def test_a_resumed_search_asks_what_the_uninterrupted_one_asked() -> None:
    whole, _, _ = _run(_config())
    resumed, rounds, _ = _run(_config(), whole[:4])  # stopped after two rounds
    assert rounds == [[4, 5], [6, 7]]
    assert [r.trial for r in resumed] == [r.trial for r in whole]


def test_the_seed_decides_the_trials() -> None:
    config = _config()
    other = config.model_copy(update={"seed": config.seed + 1})
    assert [r.trial.params for r in _run(config)[0]] != [r.trial.params for r in _run(other)[0]]


def test_a_wider_space_keeps_the_trials_run_and_adds_only_new_ones() -> None:
    narrow, _, _ = _run(_config())
    wider = {**SPACE, "num_leaves": {"type": "int", "low": 7, "high": 255, "log": True}}
    widened, rounds, _ = _run(_config(space=wider, trials=12), narrow)
    assert rounds == [[8, 9], [10, 11]]
    assert [r.trial for r in widened[:8]] == [r.trial for r in narrow]


def test_the_cpu_budget_stops_asking_and_says_so() -> None:
    _, rounds, reason = _run(_config(cpu_seconds=25), cpu=10.0)
    # A round's trials finish; the budget is checked before the next round is asked.
    assert rounds == [[0, 1], [2, 3]]
    assert reason == "CPU budget spent: 40.0 of 25.0 CPU-seconds after 4 of 8 trials"


def test_the_best_trial_is_chosen_by_the_validation_metric_and_becomes_the_candidate() -> None:
    config = _config()
    results, _, _ = _run(config)
    top = best(results)
    assert top.value == max(r.value for r in results)
    candidate = candidate_config(config, top.trial)
    assert candidate.name == config.name and candidate.search is None
    assert candidate.model.params == {**config.model.params, **top.trial.params}
    assert candidate.registered_model_name == config.registered_model_name
    tie = [TrialResult(results[1].trial, 0.7), TrialResult(results[0].trial, 0.7)]
    assert best(tie).trial.number == 0  # a tie goes to the earlier trial


def test_a_trial_is_an_experiment_of_its_own() -> None:
    config = _config()
    trial, other = plan(config, []).trials
    one, two = trial_config(config, trial), trial_config(config, other)
    assert one.name == "flight-delay-2013-quick.trial-000"
    assert trial_number(config.name, one.name) == 0
    assert trial_number(config.name, config.name) is None
    assert one.search is None and one.config_hash != two.config_hash
    assert one.windows == config.windows and one.features == config.features


@pytest.mark.parametrize(
    "parameter,problem",
    [
        ({"type": "choice", "choices": []}, "a choice parameter takes `choices`"),
        ({"type": "int", "low": 10}, "takes `low` and `high`"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "must start above 0"),
        ({"type": "int", "low": 5, "high": 1}, "is above high"),
    ],
)
def test_a_malformed_space_is_refused_naming_the_problem(tmp_path, parameter, problem) -> None:
    raw = yaml.safe_load(QUICK_CONFIG.read_text())
    raw["search"] = {"space": {"num_leaves": parameter}, "trials": 4}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_a_config_without_a_search_keeps_its_hash() -> None:
    """The `search` section is hashed only when set: the configs in use keep the hashes
    their manifests recorded."""
    config = load_config(QUICK_CONFIG)
    assert config.config_hash == _config().model_copy(update={"search": None}).config_hash
    assert config.config_hash != _config().config_hash
