"""Stage 8, predictions: each day's flights scored by the model that was champion when the
day was scored (docs/continuous-training.md).

Every row names the registered model, its version, the model's sha256 and the feature
partition's data version, so a prediction traces to its model (the version's manifest:
code, config, data) and to the features it was computed from. A day's cache key is this
code and its feature day's data version, not the champion: a new champion does not rewrite
days already scored (rescoring is an explicit, forced backfill), while a restated day is
scored again, by the champion of that time.

Nondeterminism, flagged: which model scores is the registry's `champion` alias when the step
runs, read once per step and recorded on every row and as the run's tag; a run may pin a
version with the tag `trainflow/scoring_model_version` (a rescoring backfill, a replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from trainflow.cache import cache_key, stamp_days
from trainflow.config import ExperimentConfig
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.step import Step, plan_days, report_computed_days

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trainflow.models.families import Scorer

TABLE = "flight_delay_predictions"
# A run may name the version that scores (else the champion when the step runs).
SCORING_VERSION_TAG = "trainflow/scoring_model_version"
# Set on the run: the model that scored its days.
SCORED_WITH_TAG = "trainflow/scored_with"
IDENTITY = ("flight_id", "day", "carrier", "origin", "dest")
COLUMN_DESCRIPTIONS = {
    "delay_probability": "The model's probability that the flight arrives late (the label)",
    "model_name": "The registered model that scored the row",
    "model_version": "Its version in the registry (its manifest: code, config, data)",
    "model_sha256": "sha256 of the model's text, as registered and checked when loaded",
    "features_data_version": "The flight_features partition's data version the row was scored from",
}


@dataclass(frozen=True)
class ScoringModel:
    """A registered version loaded for scoring, checked against its recorded sha256."""

    name: str
    version: int
    sha256: str
    scorer: Scorer


class NoScoringModelError(LookupError):
    """The registry holds no champion (and the run pinned no version)."""


def scoring_model(client: MlflowClient, name: str, pinned: str | None) -> ScoringModel:
    """The pinned version, else the champion; its model from the text artifact, checked
    against the version's sha256 tag (the comparison with the champion reads it the same way)."""
    from trainflow.registry.champion import champion_model
    from trainflow.registry.versions import current_champion

    version = pinned or current_champion(client, name)
    if version is None:
        raise NoScoringModelError(f"{name} has no champion yet")
    registered = client.get_model_version(name, version)
    return ScoringModel(
        name=name,
        version=int(registered.version),
        sha256=str(registered.tags["model_sha256"]),
        scorer=champion_model(client, registered),
    )


def predictions_for(
    features: pl.DataFrame, model: ScoringModel, day_versions: dict
) -> pl.DataFrame:
    """One row per flight: its identity, the probability of a late arrival, and what made it."""
    scores = model.scorer.predict(features)
    return features.select(*IDENTITY).with_columns(
        pl.Series("delay_probability", scores, dtype=pl.Float64),
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version, dtype=pl.Int32).alias("model_version"),
        pl.lit(model.sha256).alias("model_sha256"),
        pl.col("day")
        .replace_strict({d: day_versions[d] for d in set(features["day"])}, return_dtype=pl.String)
        .alias("features_data_version"),
    )


def score_days(
    step: Step,
    flight_features: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    window: DayWindow,
    client: MlflowClient,
) -> LakeOutput:
    """The window's days not yet scored on their current features, scored by one model.
    Without a champion nothing is scored (said on the step); the days stay unscored, so the
    first run after a champion exists scores them."""
    versions = flight_features.day_versions
    missing = [day for day in window.days() if day not in versions]
    if missing:
        raise ValueError(
            f"{TABLE}: no flight_features partition for {len(missing)} day(s) of {window} "
            f"(first {missing[0]}): materialize the features first"
        )
    wanted = {
        day: cache_key(
            step.code_version,
            config.hash_of("registered_model_name"),
            {"flight_features": versions[day]},
        )
        for day in window.days()
    }
    plan = plan_days(step, lake, TABLE, window, wanted)
    if not plan.misses:
        return LakeOutput(frame=pl.DataFrame(), days=[])
    name = config.registered_model_name
    try:
        model = scoring_model(client, name, step.run_tags.get(SCORING_VERSION_TAG))
    except NoScoringModelError as exc:
        step.warning(f"{TABLE}: {exc}: {len(plan.misses)} day(s) of {window} left unscored")
        step.add_output_metadata({"scored_days": 0, "scored_with": "none (no champion)"})
        return LakeOutput(frame=pl.DataFrame(), days=[])
    step.tag_run({SCORED_WITH_TAG: f"{name} v{model.version}"})
    predictions = predictions_for(flight_features.days(plan.misses), model, versions)
    stamped = stamp_days(predictions, plan.keys, step.code_version, flight_features.version)
    report_computed_days(step, stamped)
    step.info(
        f"{TABLE}: {stamped.height} flights of {len(plan.misses)} day(s) scored by "
        f"{name} v{model.version} (sha256 {model.sha256[:16]})"
    )
    step.add_output_metadata(
        {
            "scored_days": len(plan.misses),
            "scored_with": f"{name} v{model.version}",
            "model_uri": f"models:/{name}/{model.version}",
            "model_sha256": model.sha256,
        }
    )
    return LakeOutput(frame=stamped, days=plan.misses, column_descriptions=COLUMN_DESCRIPTIONS)
