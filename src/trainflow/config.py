"""The experiment config: windows, features, hyperparameters, seeds and gate, in one YAML file.

Its hash is part of every model's lineage, so the hash is taken over a canonical JSON form
(sorted keys, ISO dates) and not over the file's bytes: comments and key order do not matter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ConfigError(ValueError):
    """The experiment config is malformed or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateWindow(_Strict):
    """An inclusive range of days."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DateWindow:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")
        return self

    def days(self) -> list[dt.date]:
        n = (self.end - self.start).days + 1
        return [self.start + dt.timedelta(days=i) for i in range(n)]


class Windows(_Strict):
    """Time-based splits only: train < validation < test, no overlap."""

    train: DateWindow
    validation: DateWindow
    test: DateWindow

    @model_validator(mode="after")
    def _time_ordered(self) -> Windows:
        if not (self.train.end < self.validation.start and self.validation.end < self.test.start):
            raise ValueError(
                "windows must be time-ordered without overlap: "
                f"train {self.train.start}..{self.train.end}, "
                f"validation {self.validation.start}..{self.validation.end}, "
                f"test {self.test.start}..{self.test.end}"
            )
        return self

    @property
    def span(self) -> DateWindow:
        return DateWindow(start=self.train.start, end=self.test.end)


class RollingWindows(_Strict):
    """Window lengths in days that end at a run's as-of day: the test window ends on it, the
    validation window before it and the train window before that, `gap_days` apart. The
    as-of day is resolved once per run from the data (`trainflow.as_of`), never the clock,
    and the resolved dates are what every output, cache key and manifest records."""

    train_days: int = Field(ge=1)
    validation_days: int = Field(ge=1)
    test_days: int = Field(ge=1)
    gap_days: int = Field(default=0, ge=0)

    def at(self, as_of: dt.date) -> Windows:
        """The dated windows of a run whose as-of day is `as_of`."""

        def ending(end: dt.date, days: int) -> DateWindow:
            return DateWindow(start=end - dt.timedelta(days=days - 1), end=end)

        gap = dt.timedelta(days=self.gap_days + 1)
        test = ending(as_of, self.test_days)
        validation = ending(test.start - gap, self.validation_days)
        train = ending(validation.start - gap, self.train_days)
        return Windows(train=train, validation=validation, test=test)


MODEL_FAMILIES = ("lightgbm", "mlp")


class MlpParams(_Strict):
    """The MLP family's `model.params` (docs/model-families.md). Checked when the config is
    read, so a typo fails before any data is touched and without torch installed."""

    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    embedding_dim: int = Field(default=8, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=1024, ge=1)
    max_epochs: int = Field(default=30, ge=1)
    # Epochs without a lower validation loss before training stops (best epoch kept).
    patience: int = Field(default=3, ge=1)


class ModelConfig(_Strict):
    # The model family the `model` asset trains: LightGBM by default, or the PyTorch
    # Lightning MLP (the `torch` extra). Anything else is a config error.
    family: Literal["lightgbm", "mlp"] = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    # Fixed thread count: LightGBM's histogram sums depend on how rows are split across
    # threads, so a different count can change the model bytes.
    num_threads: int = 2

    @model_validator(mode="after")
    def _params_fit_family(self) -> ModelConfig:
        if self.family == "mlp":
            MlpParams.model_validate(self.params)
        return self

    def mlp_params(self) -> MlpParams:
        return MlpParams.model_validate(self.params)


class EvaluationConfig(_Strict):
    """How the test window is scored (docs/evaluation.md)."""

    decision_threshold: float = 0.5
    # Bootstrap resamples for every confidence interval, all seeded from the config's seed.
    bootstrap_resamples: int = Field(default=200, ge=20)
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    # Test rows sampled (seeded) for permutation importance.
    importance_rows: int = Field(default=5000, ge=100)


class GateConfig(_Strict):
    """What a model version must show to be registered as more than `rejected`, and when
    a challenger also becomes champion (docs/evaluation.md, "The gate")."""

    # Absolute floors on the candidate's test-window point estimates.
    min_test_roc_auc: float
    min_uplift_over_baseline: float = 0.0
    # Champion rule: the candidate stays challenger when the paired bootstrap interval of
    # (candidate - champion) ROC AUC on the same rows lies wholly below -this value, i.e.
    # it is worse by more than this with the configured confidence. Without an interval
    # (no bootstrap recorded), the point difference decides.
    max_auc_drop_vs_champion: float = Field(default=0.0, ge=0.0)
    # Slice floor (None: off), applied only to slices with at least `min_slice_rows` rows.
    min_slice_roc_auc: float | None = None
    min_slice_rows: int = Field(default=500, ge=1)
    # Drift ceiling (None: off): the largest PSI a feature may show between the training and
    # test windows, except the features named in `drift_exempt_features` (reported only).
    max_feature_psi: float | None = Field(default=None, gt=0.0)
    drift_exempt_features: list[str] = Field(default_factory=list)


class MonitoringConfig(_Strict):
    """How the champion is watched on real outcomes (`champion_live_performance`,
    docs/continuous-training.md): its realised ROC AUC on a day, and pooled over the
    trailing days, against the test ROC AUC its evaluation recorded. A drop beyond either
    limit raises the alert and requests a retrain. The defaults sit above every real 2013
    day of `trainflow replay --from 2013-03-01` with configs/rolling.yaml (215 days judged:
    a day's drop up to 0.293, the trailing window's up to 0.182; a single day's AUC runs
    below the evaluation's pooled 14-day AUC by 0.09 at the median, since it cannot rank
    one day against another)."""

    max_auc_drop: float = Field(default=0.20, gt=0.0, lt=1.0)  # trailing window
    min_rows: int = Field(default=2000, ge=1)  # fewer labelled rows: reported, not judged
    max_day_auc_drop: float = Field(default=0.30, gt=0.0, lt=1.0)  # one day
    min_day_rows: int = Field(default=500, ge=1)


class SearchParameter(_Strict):
    """One hyperparameter's range: integers or floats between `low` and `high` (inclusive,
    optionally on a log scale), or one of `choices`."""

    type: Literal["int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParameter:
        if self.type == "choice":
            if not self.choices or self.low is not None or self.high is not None or self.log:
                raise ValueError("a choice parameter takes `choices` (a non-empty list) only")
        else:
            if self.low is None or self.high is None or self.choices is not None:
                raise ValueError(f"an {self.type} parameter takes `low` and `high`")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is above high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale range must start above 0")
        return self


class SearchConfig(_Strict):
    """A hyperparameter search over `model.params`: each trial is an experiment of its own
    (the config with the trial's params, named `<name>.trial-NNN`), trained and scored on
    the validation window; the best trial becomes the search's candidate for the gate."""

    space: dict[str, SearchParameter] = Field(min_length=1)
    # Optuna's seeded TPE (random trials first), or plain random sampling.
    sampler: Literal["tpe", "random"] = "tpe"
    trials: int = Field(ge=1)  # the count budget: the search holds this many trials at most
    cpu_seconds: float | None = Field(default=None, gt=0)  # the CPU budget of its training
    # Trials asked per round, which then run side by side. Part of what decides each trial's
    # params (a round's trials are asked from the results of the rounds before it).
    parallel: int = Field(default=2, ge=1)
    # Chosen on the validation window only: the test window decides the gate, never a trial.
    metric: Literal["validation_roc_auc"] = "validation_roc_auc"
    direction: Literal["maximize"] = "maximize"


# Sections added after configs were in use: left out of the config hash while unset, so a
# config that does not use one keeps the hash (and the manifests) it always had.
SECTIONS_HASHED_WHEN_SET = ("monitoring", "search")


class ExperimentConfig(_Strict):
    name: str
    registered_model_name: str
    seed: int
    # Dates, or lengths that move with the data (resolved per run by `at`).
    windows: Windows | RollingWindows
    features: list[str]
    model: ModelConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig
    # Refuse to train when the newest landed day is more than this many days after the
    # newest day the model learns or is tested on (None: no freshness rule).
    max_input_lag_days: int | None = None
    # A feature day whose 28-day window misses more validated days than this (not landed,
    # or failed validation) is refused; days before the data starts never count.
    max_missing_history_days: int = Field(default=0, ge=0)
    # The champion's live watch; unset: MonitoringConfig's defaults.
    monitoring: MonitoringConfig | None = None
    # A hyperparameter search around this config (trainflow/search.py); unset: none.
    search: SearchConfig | None = None

    @model_validator(mode="after")
    def _exempt_features_are_features(self) -> ExperimentConfig:
        unknown = sorted(set(self.gate.drift_exempt_features) - set(self.features))
        if unknown:
            raise ValueError(f"gate.drift_exempt_features names no feature: {', '.join(unknown)}")
        return self

    @property
    def is_rolling(self) -> bool:
        return isinstance(self.windows, RollingWindows)

    @property
    def dated_windows(self) -> Windows:
        """The windows as dates; a rolling config must be resolved with `at` first."""
        if isinstance(self.windows, RollingWindows):
            raise ConfigError(
                f"experiment {self.name}: rolling windows have no dates until a run's as-of "
                "day resolves them (ExperimentConfig.at)"
            )
        return self.windows

    def at(self, as_of: dt.date) -> ExperimentConfig:
        """This config as a run with as-of day `as_of` trains it: a rolling config's windows
        become dates; a dated config is returned unchanged (its as-of day plays no part)."""
        if isinstance(self.windows, RollingWindows):
            return self.model_copy(update={"windows": self.windows.at(as_of)})
        return self

    @property
    def config_hash(self) -> str:
        return config_hash(self)

    @property
    def live_monitoring(self) -> MonitoringConfig:
        return self.monitoring or MonitoringConfig()

    def hash_of(self, *fields: str) -> str:
        """Hash of only the named top-level fields: the part of the config an asset uses,
        so that changing a hyperparameter does not invalidate the dataset's cache."""
        dumped = self.model_dump(mode="json")
        canonical = json.dumps(
            {f: dumped[f] for f in fields}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def config_hash(config: ExperimentConfig) -> str:
    dumped = config.model_dump(mode="json")
    for section in SECTIONS_HASHED_WHEN_SET:
        if dumped.get(section) is None:
            dumped.pop(section, None)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_config(path: Path) -> ExperimentConfig:
    """Read and validate a YAML config; errors name the file and the offending field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"experiment config not found: {path}") from exc
    try:
        return ExperimentConfig.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"experiment config {path.name} is invalid: {exc}") from exc
