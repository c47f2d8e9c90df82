"""Stage 9, live performance: the champion judged on real outcomes, day by day
(docs/continuous-training.md).

For each day whose outcomes have landed (the label in that day's features), the model that
scored the day is measured on its own predictions: ROC AUC, log loss, Brier score and
calibration error with the rows counted, for the day and pooled over the trailing
`TRAILING_DAYS` days scored by the same version. The trailing AUC is compared with the test
ROC AUC the version's evaluation recorded (its registry tag); a drop beyond the config's
limits (`monitoring`: the day's, on enough labelled rows, or the trailing window's) marks
the day `breached`, which the `champion_live_watch` sensor turns into an alert and a
retrain request.

This is what a held-out window only estimates: the quality gap and drift measured on the
days the model actually served.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from trainflow.cache import cache_key, stable_hash, stamp_days, window_versions
from trainflow.config import ExperimentConfig
from trainflow.features.flights import LABEL
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.predictions import TABLE as PREDICTIONS
from trainflow.stages.step import Step, plan_days, report_computed_days

if TYPE_CHECKING:
    from mlflow import MlflowClient

TABLE = "champion_live_performance"
# The pooled window a day is judged on (the day and the 6 before it): one day's ~900
# flights give an AUC too noisy to page on.
TRAILING_DAYS = 7
METRICS = ("roc_auc", "log_loss", "brier", "calibration_error", "positive_rate")
# One row per day, the same columns whether or not the day was scored.
ROW_SCHEMA: dict[str, Any] = {
    "day": pl.Date,
    "model_name": pl.String,
    "model_version": pl.Int32,
    **{f"{span}_{k}": pl.Int64 if k == "rows" else pl.Float64
       for span in ("day", "trailing") for k in ("rows", *METRICS)},
    "trailing_days": pl.Int32,
    "evaluation_roc_auc": pl.Float64,
    "day_auc_drop": pl.Float64,
    "auc_drop": pl.Float64,
    "max_day_auc_drop": pl.Float64,
    "max_auc_drop": pl.Float64,
    "judged": pl.Boolean,
    "breached": pl.Boolean,
    "reason": pl.String,
}  # fmt: skip


def trailing(day: dt.date) -> list[dt.date]:
    return [day - dt.timedelta(days=n) for n in range(TRAILING_DAYS - 1, -1, -1)]


def realised_metrics(labelled: pl.DataFrame) -> dict[str, float | int]:
    """The metrics of predictions against outcomes (`delay_probability`, the label)."""
    from trainflow.evaluation.calibration import expected_calibration_error
    from trainflow.evaluation.metrics import binary_metrics

    rows = labelled.height
    if rows == 0:
        return {"rows": 0, **{m: float("nan") for m in METRICS}}
    y_true = labelled[LABEL].cast(pl.Int8).to_numpy()
    y_score = labelled["delay_probability"].to_numpy()
    found = binary_metrics(y_true, y_score, threshold=0.5)
    return {
        "rows": rows,
        "roc_auc": found["roc_auc"],
        "log_loss": found["log_loss"],
        "brier": found["brier"],
        "calibration_error": expected_calibration_error(y_true, y_score),
        "positive_rate": found["positive_rate"],
    }


def judge_day(
    day: dt.date,
    predictions: pl.DataFrame,
    outcomes: pl.DataFrame,
    evaluation_auc: dict[tuple[str, int], float],
    limits: Any,
) -> dict[str, Any]:
    """One day's row: the day's and the trailing window's metrics of the version that
    scored the day, the evaluation's figure, and whether the drop breaches the limit."""
    scored = predictions.filter(pl.col("day") == day)
    if scored.is_empty():
        unscored = {k: None for k in ROW_SCHEMA}
        return {**unscored, "day": day, "trailing_days": 0, "max_auc_drop": limits.max_auc_drop,
                "max_day_auc_drop": limits.max_day_auc_drop, "judged": False, "breached": False,
                "reason": "day not scored (no champion then)"}  # fmt: skip
    name, version = scored["model_name"][0], int(scored["model_version"][0])
    same_model = (pl.col("model_name") == name) & (pl.col("model_version") == version)
    window = predictions.filter(same_model & pl.col("day").is_in(trailing(day)))
    labelled = outcomes.filter(pl.col(LABEL).is_not_null())
    on_day = realised_metrics(scored.join(labelled, on="flight_id"))
    pooled = realised_metrics(window.join(labelled, on="flight_id"))
    reference = evaluation_auc[(name, version)]
    drop = reference - float(pooled["roc_auc"])
    day_drop = reference - float(on_day["roc_auc"])
    judged = int(pooled["rows"]) >= limits.min_rows and not np.isnan(drop)
    day_judged = int(on_day["rows"]) >= limits.min_day_rows and not np.isnan(day_drop)
    breaches = []
    if day_judged and day_drop > limits.max_day_auc_drop:
        breaches.append(
            f"the day's ROC AUC {on_day['roc_auc']:.4f} is {day_drop:+.4f} below the "
            f"evaluation's {reference:.4f} (limit {limits.max_day_auc_drop})"
        )
    if judged and drop > limits.max_auc_drop:
        breaches.append(
            f"the trailing {TRAILING_DAYS}-day ROC AUC {pooled['roc_auc']:.4f} is {drop:+.4f} "
            f"below the evaluation's {reference:.4f} (limit {limits.max_auc_drop})"
        )
    within = (
        f"within limits: day {day_drop:+.4f} ({on_day['rows']} rows), trailing "
        f"{drop:+.4f} ({pooled['rows']} rows) against {reference:.4f}"
        if judged or day_judged
        else f"too few labelled rows to judge ({on_day['rows']} on the day, "
        f"{pooled['rows']} trailing)"
    )
    return {
        "day": day,
        "model_name": name,
        "model_version": version,
        **{f"day_{k}": v for k, v in on_day.items()},
        **{f"trailing_{k}": v for k, v in pooled.items()},
        "trailing_days": int(window["day"].n_unique()),
        "evaluation_roc_auc": reference,
        "day_auc_drop": day_drop,
        "auc_drop": drop,
        "max_day_auc_drop": limits.max_day_auc_drop,
        "max_auc_drop": limits.max_auc_drop,
        "judged": judged or day_judged,
        "breached": bool(breaches),
        "reason": "; ".join(breaches) or within,
    }


def evaluation_aucs(
    client: MlflowClient, models: set[tuple[str, int]]
) -> dict[tuple[str, int], float]:
    """The test ROC AUC each version's evaluation recorded (its registry tag)."""
    return {
        (name, version): float(client.get_model_version(name, str(version)).tags["test_roc_auc"])
        for name, version in models
    }


def measure_live_performance(
    step: Step,
    flight_features: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    window: DayWindow,
    client: MlflowClient,
) -> LakeOutput:
    """A row per day of the window, recomputed when the day's or its trailing window's
    predictions or outcomes changed. Days without predictions are recorded as not scored."""
    limits = config.live_monitoring
    span = DayWindow(trailing(window.first)[0], window.last)
    scored_keys = {d: v[0] for d, v in lake.stored_versions(PREDICTIONS, span).items() if d}
    settings = stable_hash(json.loads(limits.model_dump_json()))
    wanted = {
        day: cache_key(
            step.code_version,
            settings,
            {
                "predictions": window_versions(scored_keys, trailing(day)),
                "outcomes": window_versions(flight_features.day_versions, trailing(day)),
            },
        )
        for day in window.days()
    }
    plan = plan_days(step, lake, TABLE, window, wanted)
    if not plan.misses:
        return LakeOutput(frame=pl.DataFrame(), days=[])
    first = trailing(plan.misses[0])[0]
    predictions = (
        lake.scan(PREDICTIONS, DayWindow(first, plan.misses[-1])).collect()
        if scored_keys
        else pl.DataFrame(schema={"day": pl.Date, "flight_id": pl.Int64, "model_name": pl.String,
                                  "model_version": pl.Int32, "delay_probability": pl.Float64})
    )  # fmt: skip
    outcomes = flight_features.between(first, plan.misses[-1]).select("flight_id", LABEL)
    models = {
        (n, int(v))
        for n, v in predictions.select("model_name", "model_version").unique().iter_rows()
    }
    reference = evaluation_aucs(client, models)
    rows = [judge_day(day, predictions, outcomes, reference, limits) for day in plan.misses]
    judged = pl.DataFrame([{k: row[k] for k in ROW_SCHEMA} for row in rows], schema=ROW_SCHEMA)
    stamped = stamp_days(judged, plan.keys, step.code_version, flight_features.version)
    report_computed_days(step, stamped)
    breached = [r for r in rows if r["breached"]]
    for row in rows:
        step.add_partition_metadata(
            row["day"],
            {
                "breached": row["breached"],
                "judged": row["judged"],
                "reason": row["reason"],
                **(
                    {"model": f"{row['model_name']} v{row['model_version']}"}
                    if row["model_name"]
                    else {}
                ),
                **(
                    {"trailing_roc_auc": round(row["trailing_roc_auc"], 4)} if row["judged"] else {}
                ),
            },
        )
    for row in breached:
        step.warning(
            f"{TABLE} {row['day']}: {row['model_name']} v{row['model_version']}: {row['reason']}"
        )
    step.add_output_metadata(
        {"days_judged": sum(r["judged"] for r in rows), "days_breached": len(breached)}
    )
    return LakeOutput(frame=stamped, days=plan.misses)
