"""Hyperparameter search as rounds of trial experiments (docs/experiments.md).

A search is a config with a `search:` block. Each trial is an experiment of its own: the
config with the trial's params, named `<name>.trial-NNN`, so it is cached, seeded and
reproducible like any experiment, and the lake holds its rows beside the others. The search
runs in rounds of `parallel` trials: a round's trials are asked of Optuna's seeded sampler
from the results of every earlier trial, then run side by side; the next round is asked
when they are done.

Why rounds, and a sampler made afresh for each: Optuna's samplers draw from one RNG that
advances with every `ask`, so the params of trial n would depend on how many asks came
before it in this process (a search resumed after an interruption, or re-run, would ask
different trials). Here trial n's params are a function of the seed, its round and the
trials before that round only. The search's memory is the lake: its runner
(`defs/search_runs.py`) starts from the trials the lake holds, so running the same search
again asks nothing and trains nothing, and a wider space or a larger `trials` keeps the
trials run so far (their params lie in the space) and adds only new ones.

No Dagster here: `defs/` runs the trials; this module plans them and reads their results.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainflow.config import ExperimentConfig, SearchConfig, SearchParameter

if TYPE_CHECKING:
    import optuna

TRIAL_PATTERN = r"\.trial-(\d{3,})$"


@dataclass(frozen=True)
class Trial:
    """One trial as planned: its number in the search, its experiment name, its params."""

    number: int
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class TrialResult:
    """A trial as it ran: the validation metric its model recorded and the CPU-seconds its
    training took (None where the run recorded none: it counts as nothing spent)."""

    trial: Trial
    value: float
    cpu_seconds: float | None = None
    mlflow_run_id: str | None = None  # the run that logged the trial's model


@dataclass(frozen=True)
class Plan:
    """What the search does next: the trials to run now (empty when it is done) and why."""

    trials: list[Trial]
    done: bool
    reason: str


def trial_name(search: str, number: int) -> str:
    return f"{search}.trial-{number:03d}"


def trial_number(search: str, experiment: str) -> int | None:
    """The trial number of `experiment` when it is a trial of `search`, else None."""
    if not experiment.startswith(f"{search}."):
        return None
    found = re.search(TRIAL_PATTERN, experiment)
    return int(found.group(1)) if found else None


def search_name_of(experiment: str) -> str:
    """The search a trial belongs to (its name without `.trial-NNN`); any other
    experiment's own name."""
    return re.sub(TRIAL_PATTERN, "", experiment)


def search_of(config: ExperimentConfig) -> SearchConfig:
    if config.search is None:
        raise ValueError(f"experiment {config.name} has no `search:` block")
    return config.search


def trial_config(config: ExperimentConfig, trial: Trial) -> ExperimentConfig:
    """The experiment a trial trains: the search's config with the trial's params, its own
    name, no search block. The trial keeps the search's registered model name: trials are
    never registered (only the search's candidate is), so the name is only where they
    would go."""
    params = {**config.model.params, **trial.params}
    model = config.model.model_copy(update={"params": params})
    return ExperimentConfig.model_validate(
        {
            **config.model_dump(mode="json"),
            "name": trial.name,
            "model": model.model_dump(mode="json"),
            "search": None,
        }
    )


def candidate_config(config: ExperimentConfig, best: Trial) -> ExperimentConfig:
    """The search's candidate for the gate: the best trial's params under the search's own
    name, so it is evaluated and registered like any experiment of that name."""
    return trial_config(config, best).model_copy(update={"name": config.name})


def best(results: Sequence[TrialResult]) -> TrialResult:
    """The best trial by the validation metric (maximized); ties go to the earlier trial."""
    if not results:
        raise ValueError("no trial has finished: the search has no best trial")
    return max(results, key=lambda r: (r.value, -r.trial.number))


def spent(results: Sequence[TrialResult]) -> float:
    return sum(r.cpu_seconds or 0.0 for r in results)


def plan(config: ExperimentConfig, results: Sequence[TrialResult]) -> Plan:
    """The next round of a search, given every trial of it that has finished.

    Done when the count budget is reached or the CPU budget spent (the trial that crossed
    it finishes: a budget stops asking, it never kills a trial). A finished trial whose
    params no longer lie in the space (a narrowed space) stays a result of the search but
    is not shown to the sampler."""
    search = search_of(config)
    finished = sorted(results, key=lambda r: r.trial.number)
    if len(finished) >= search.trials:
        return Plan([], True, f"count budget reached: {len(finished)} of {search.trials} trials")
    used = spent(finished)
    if search.cpu_seconds is not None and used >= search.cpu_seconds:
        return Plan(
            [],
            True,
            f"CPU budget spent: {used:.1f} of {search.cpu_seconds:.1f} CPU-seconds "
            f"after {len(finished)} of {search.trials} trials",
        )
    first = (finished[-1].trial.number + 1) if finished else 0
    count = min(search.parallel, search.trials - len(finished))
    asked = _ask(config.name, search, finished, first, count, _round_seed(config, first))
    return Plan(asked, False, f"round of {len(asked)} trial(s) from trial {first}")


def _round_seed(config: ExperimentConfig, first: int) -> int:
    """The sampler's seed for the round starting at trial `first`: the config's seed and
    the round, nothing else."""
    digest = hashlib.sha256(f"{config.seed}:{config.name}:{first}".encode()).hexdigest()
    return int(digest[:8], 16)


def _ask(
    name: str,
    search: SearchConfig,
    finished: Sequence[TrialResult],
    first: int,
    count: int,
    seed: int,
) -> list[Trial]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.TPESampler(seed=seed)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(direction=search.direction, sampler=sampler)
    space = distributions(search.space)
    for result in finished:
        if _inside(result.trial.params, search.space):
            study.add_trial(
                optuna.trial.create_trial(
                    params=result.trial.params, distributions=space, value=result.value
                )
            )
    asked = []
    for offset in range(count):
        trial = study.ask(space)
        asked.append(Trial(first + offset, trial_name(name, first + offset), dict(trial.params)))
    return asked


def distributions(
    space: Mapping[str, SearchParameter],
) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in sorted(space.items()):
        if p.type == "choice":
            assert p.choices is not None
            found[name] = CategoricalDistribution(p.choices)
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            found[name] = IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            found[name] = FloatDistribution(p.low, p.high, log=p.log)
    return found


def _inside(params: Mapping[str, Any], space: Mapping[str, SearchParameter]) -> bool:
    """Whether a finished trial's params are a point of the (possibly changed) space."""
    if set(params) != set(space):
        return False
    for name, value in params.items():
        p = space[name]
        if p.type == "choice":
            if value not in (p.choices or []):
                return False
        elif not (p.low is not None and p.high is not None and p.low <= value <= p.high):
            return False
    return True
