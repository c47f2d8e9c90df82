"""Bad models and stale training runs are stopped where they start: a model that fails the
gate is registered as `rejected` (reason tagged, no alias, Dagster run tagged) and paged
once, with the gate's reasons, to a real webhook on loopback; training on inputs far older
than the landed data is refused, measured against landed days."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.conftest import QUICK_CONFIG
from tests.helpers.graph import run_graph, settings_for
from tests.helpers.http_receiver import WebhookReceiver
from trainflow.defs.alerts import alert_on_gate_rejection
from trainflow.defs.caching import FORCE_TAG
from trainflow.defs.evaluation import REJECTED_RUN_TAG
from trainflow.warehouse import landing

MODEL = "trainflow-flight-delay-quick"


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "config.yaml"
    text = QUICK_CONFIG.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_model_failing_the_gate_is_rejected_never_aliased(warehouse_copy, tmp_path) -> None:
    strict = config_with(tmp_path, "min_test_roc_auc: 0.6", "min_test_roc_auc: 0.99")
    settings = settings_for(tmp_path / "home", warehouse_copy, strict)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_graph(settings, instance=instance)
        assert result.success
        run_tags = instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
    assert run_tags[REJECTED_RUN_TAG].startswith("v1: rejected: test ROC AUC")
    # The report shows the decision the registry applied, and what the UI reads.
    (report,) = result.asset_materializations_for_node("evaluation_report")
    shown = report.metadata
    assert shown["gate"].value.startswith("rejected: test ROC AUC")  # type: ignore[attr-defined]
    assert "## Gate decision\n\n**rejected**" in shown["report"].value  # type: ignore[attr-defined]
    for key in ("metrics", "slices", "drift"):
        assert isinstance(shown[key], dg.TableMetadataValue), key
    for key in ("report_html", "model_card"):  # a local lake: shown as paths
        assert isinstance(shown[key], dg.PathMetadataValue), key
        assert Path(str(shown[key].value)).is_file()
    test_auc = shown["test_roc_auc"].value  # type: ignore[attr-defined]
    assert test_auc == round(test_auc, 4)
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    version = client.get_model_version(MODEL, "1")
    assert version.tags["rejected"] == "true"
    assert "< gate 0.9900" in version.tags["rejected_reason"]
    assert version.tags["gate.verdict"] == "rejected"
    assert version.tags["gate.reason.01"].endswith("< gate 0.9900")
    card = Path(version.tags["model_card"]).read_text()
    assert card.startswith(f"# Model card: {MODEL} (lightgbm)")
    assert "Cancelled and diverted flights are excluded" in card
    assert version.aliases == []
    for alias in ("challenger", "champion"):
        with pytest.raises(MlflowException):
            client.get_model_version_by_alias(MODEL, alias)


def gate_alert_tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[str, str]:
    """One tick of the gate-rejection alert sensor: (its new cursor, what it says it did)."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    data = alert_on_gate_rejection.evaluate_tick(context)
    return str(data.cursor), str(data.skip_message)


def test_a_rejected_candidate_is_paged_once_per_version_with_the_reasons(
    warehouse_copy, tmp_path, webhook_receiver: WebhookReceiver
) -> None:
    strict = config_with(tmp_path, "min_test_roc_auc: 0.6", "min_test_roc_auc: 0.99")
    settings = settings_for(tmp_path / "home", warehouse_copy, strict)
    with dg.DagsterInstance.ephemeral() as instance:
        cursor, said = gate_alert_tick(instance, None)
        assert said == "started after registry_entry record -1"
        first = run_graph(settings, instance=instance)
        cursor, said = gate_alert_tick(instance, cursor)
        assert said == f"posted gate:{MODEL}:v1"
        (payload,) = webhook_receiver.posts
        alert = payload["trainflow"]
        assert alert["key"] == f"gate:{MODEL}:v1"
        assert alert["asset"] == "registry_entry"
        assert alert["error"].startswith("rejected: test ROC AUC")
        assert "< gate 0.9900" in alert["error"]
        assert alert["runbook"] == "docs/runbook.md#alert-a-candidate-failed-the-gate"
        assert f"run {first.run_id[:8]}" in payload["text"] + payload["blocks"][0]["text"]["text"]

        # Registering again finds the same version (forced: not a cache hit) and says the
        # same rejection: no second page. A run with nothing new decides nothing: none either.
        forced = run_graph(
            settings,
            tags={FORCE_TAG: "true"},
            instance=instance,
            selection=[dg.AssetKey("registry_entry")],
        )
        (entry,) = forced.asset_materializations_for_node("registry_entry")
        assert (entry.metadata["verdict"].value, entry.metadata["version"].value) == ("rejected", 1)
        run_graph(settings, instance=instance)
        cursor, said = gate_alert_tick(instance, cursor)
        assert said == "posted nothing new"
        assert len(webhook_receiver.posts) == 1
        assert gate_alert_tick(instance, cursor)[1] == "no registration since last tick"


def test_training_on_stale_inputs_is_refused(warehouse_copy, tmp_path) -> None:
    landing.land(warehouse_copy, [dt.date(2013, 3, d) for d in range(1, 15)])
    fresh_only = config_with(tmp_path, "seed: 2013", "seed: 2013\nmax_input_lag_days: 7")
    settings = settings_for(tmp_path / "home", warehouse_copy, fresh_only)
    result = run_graph(settings, raise_on_error=False)
    assert not result.success
    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["model"]
    error = failures[0].step_failure_data.error
    assert error is not None
    assert (
        "training refused as stale: newest input partition 2013-02-28 lags the newest landed "
        "partition 2013-03-14 by 14 days" in error.message
    )
    # A deterministic refusal is not retried.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
