"""The replay (`trainflow replay`), short: from a warehouse landed through 2013-02-14, three
weeks landed a week at a time with a rolling config of 28/7/7 days, running what the
sensors and the weekly schedule request. Asserts the exact sequence of gate decisions and
champion moves, the timeline report's three files, and that a second replay in another home
gives the same registry (versions, verdicts, aliases, metrics, model bytes) and the same
report but for its generated-at line. The two replays run at the same time: about 2 minutes
on 2 cores.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers.environment import BIN, REPO_ROOT, rolling_config, user_environment
from trainflow.settings import Settings

MODEL = "trainflow-flight-delay-rolling"


def registry_of(home: Path) -> list[tuple]:
    settings = Settings.from_env({"TRAINFLOW_HOME": str(home)})
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    return [
        (
            int(v.version),
            v.tags.get("gate.verdict"),
            v.tags["model_sha256"],
            v.tags["test_roc_auc"],
            v.tags["baseline_test_roc_auc"],
            sorted(client.get_model_version(MODEL, v.version).aliases),
        )
        for v in versions
    ]


def replays_at_once(homes: list[Path], config: Path) -> list[tuple[str, Path]]:
    """The replay in each home, all started at once: it shows a replay's outcome does not
    depend on what else the machine runs. Output goes to files, not pipes: a replay blocked
    on a full pipe while the other is read would run them one after the other."""
    command = [str(BIN / "trainflow"), "replay", "--from", "2013-02-15", "--every", "7",
               "--through", "2013-03-07"]  # fmt: skip
    procs = []
    try:
        for home in homes:
            # Beside the home, not in it: the replay wants a fresh home.
            with (
                home.with_suffix(".out").open("w") as out,
                home.with_suffix(".err").open("w") as err,
            ):
                env = user_environment(home, config, instance=None)
                procs.append(
                    subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=err)
                )
        for proc in procs:
            proc.wait(timeout=1200)
    finally:
        for proc in procs:
            proc.kill()  # a no-op on one that ended; never leave one running
    done = []
    for home, proc in zip(homes, procs, strict=True):
        stdout = home.with_suffix(".out").read_text()
        stderr = home.with_suffix(".err").read_text()
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        done.append((stdout, home / "lake" / "_reports" / "replay"))
    return done


@pytest.fixture(scope="module")
def two_replays(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("replay")
    config = rolling_config(folder, train=28, validation=7, test=7)
    homes = [folder / "first", folder / "second"]
    return {"homes": tuple(homes), "runs": tuple(replays_at_once(homes, config))}


def test_the_replay_retrains_weekly_and_the_gate_decides_in_a_known_sequence(two_replays) -> None:
    stdout, _ = two_replays["runs"][0]
    weeks = [line for line in stdout.splitlines() if line.startswith("2013-")]
    assert weeks == [
        "2013-01-01..2013-02-14: 4 run(s), candidates: v1 rejected; champion -; "
        "alerts: gate rejected v1",
        "2013-02-15..2013-02-21: 4 run(s), candidates: v2 champion; champion v2",
        "2013-02-22..2013-02-28: 4 run(s), candidates: v3 champion; champion v3",
        "2013-03-01..2013-03-07: 4 run(s), candidates: v4 champion; champion v4",
    ]
    registry = registry_of(two_replays["homes"][0])
    assert [(v[0], v[1], v[5]) for v in registry] == [
        (1, "rejected", []),
        (2, "champion", []),
        (3, "champion", []),
        (4, "champion", ["challenger", "champion"]),
    ]
    assert "replayed 4 week(s): 4 candidates, 3 promoted, 1 rejected" in stdout


def test_the_timeline_report_has_its_three_files(two_replays) -> None:
    _, reports = two_replays["runs"][0]
    text = (reports / "timeline.md").read_text()
    assert text.startswith("# Replay 2013-02-15..2013-03-07, every 7 days")
    assert "| 2013-02-15..2013-02-21 | v2 | v2 (as of 2013-02-21): champion," in text
    assert (
        "## Gate decisions" in text and "- v1 (week of 2013-01-01): rejected: test ROC AUC" in text
    )
    assert "## Live performance per day" in text
    assert (reports / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<img src='timeline.png'" in (reports / "timeline.html").read_text()


def test_a_second_replay_gives_the_same_registry_and_report(two_replays) -> None:
    first, second = two_replays["homes"]
    assert registry_of(first) == registry_of(second)

    def without_timestamp(text: str) -> str:
        return "\n".join(
            line for line in text.splitlines() if not line.startswith("<!-- generated")
        )

    (_, a), (_, b) = two_replays["runs"]
    assert without_timestamp((a / "timeline.md").read_text()) == without_timestamp(
        (b / "timeline.md").read_text()
    )
    assert (a / "timeline.png").read_bytes() == (b / "timeline.png").read_bytes()
