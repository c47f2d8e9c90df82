"""Re-execution from failure after an outage, as test_faults (S3) and test_warehouse_outage
(PostgreSQL) make one: a success hook stops a server's process right after one step
(SIGSTOP: connections are still accepted, nothing is answered, like a hung host), the next
step fails after its retries, the server resumes (SIGCONT), and Dagster's re-execution from
failure runs only what failed. The tests assert each stage; this is the machinery."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import TYPE_CHECKING

import dagster as dg
import pytest

if TYPE_CHECKING:  # what dg.reconstructable returns (not exported by dagster itself)
    from dagster._core.definitions.reconstruct import ReconstructableJob

# The process id of the server to stop, set only while `run_with_outage` runs the job.
STOP_PID_VAR = "TRAINFLOW_TEST_STOP_PID"


def stop_server_after(op_name: str) -> dg.HookDefinition:
    """A success hook that stops the process in STOP_PID_VAR once `op_name` succeeded: the
    outage starts exactly between two steps (that one committed, the next not started)."""

    @dg.success_hook(name=f"stop_server_after_{op_name}")
    def stop_server(context: dg.HookContext) -> None:
        pid = os.environ.get(STOP_PID_VAR)
        if context.op.name == op_name and pid:
            os.kill(int(pid), signal.SIGSTOP)

    return stop_server


def run_with_outage(
    job: ReconstructableJob,
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    server: subprocess.Popen,
    monkeypatch: pytest.MonkeyPatch,
) -> dg.JobExecutionResult:
    """One run of `job` whose `stop_server_after` hook stops `server`; the server is resumed
    once the run has ended, however it ended."""
    monkeypatch.setenv(STOP_PID_VAR, str(server.pid))
    try:
        return dg.execute_job(job, instance=instance, tags=tags)
    finally:
        server.send_signal(signal.SIGCONT)  # the server is back
        monkeypatch.delenv(STOP_PID_VAR)


def reexecute_from_failure(
    job: ReconstructableJob,
    instance: dg.DagsterInstance,
    failed: dg.JobExecutionResult,
    tags: dict[str, str],
) -> dg.JobExecutionResult:
    """Dagster's re-execution of `failed` from its failure. The UI's "re-execute from
    failure" copies the run's tags (here the partition range); the Python API leaves them
    to the caller."""
    return dg.execute_job(
        job,
        instance=instance,
        tags=tags,
        reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance),
    )


def step_retries(
    result: dg.JobExecutionResult | dg.ExecuteInProcessResult,
) -> list[dg.DagsterEvent]:
    """The run's STEP_UP_FOR_RETRY events: each attempt a retry policy ran again."""
    return [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def started_steps(result: dg.JobExecutionResult) -> set[str | None]:
    """The steps the run started (a re-execution from failure starts only the failed ones)."""
    return {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}


def error_text(event: dg.DagsterEvent) -> str:
    """The whole error of a step event (retry or failure), its causes included; '' if none."""
    data = event.event_specific_data
    error = getattr(data, "error", None)
    return error.to_string() if error is not None else ""
