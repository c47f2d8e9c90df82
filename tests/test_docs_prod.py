"""The docs' `prod` blocks, run as written against real services the block starts itself:
moto's S3 server, an MLflow tracking server on this machine's PostgreSQL, and `make dev`.

This is the job that already has the prod services (CI's PostgreSQL, tests/test_prod_end_to_end.py
beside it). What the runner changes in a block, each for a property of a shared build
machine rather than of the doc:

- the fixed ports (9000 for S3, 5000 for MLflow, 3000 for the UI) become free ones, and the
  databases get a run suffix: other tests, and a developer's own stack, hold the fixed ones;
- `.trainflow/` (the checkout's home) becomes a fresh directory, so nothing is left in the tree;
- `make dev`, which serves until Ctrl-C, runs in the background until its webserver answers;
- every process the block started is stopped when it ends, and its databases dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import BIN
from tests.doc_blocks import REPO_ROOT, Block, blocks, doc_files
from tests.helpers.servers import free_port
from tests.test_docs_run import as_run, warnings_in

pytestmark = pytest.mark.timeout(1800)

ADMIN_URL = os.environ.get(
    "TRAINFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROD_BLOCKS = [b for path in doc_files() for b in blocks(path) if b.is_shell and b.cls == "prod"]
DATABASE = re.compile(r"\btrainflow_(warehouse|dagster|mlflow)\b")
# A curl-free wait: the block's own Python, asking the webserver until it answers.
WAIT_FOR_UI = (
    '.venv/bin/python -c "import time, urllib.request\n'
    "for _ in range(180):\n"
    "    try: urllib.request.urlopen('http://127.0.0.1:{port}/server_info', timeout=2); break\n"
    "    except OSError: time.sleep(1)\n"
    "else: raise SystemExit('make dev never answered')\"\n"
    "echo ui answered\n"
)


def for_this_machine(block: Block, home: Path, suffix: str) -> str:
    """The block with free ports, suffixed databases and a fresh home (the module docstring)."""
    s3, mlflow, ui = free_port(), free_port(), free_port()
    text = as_run(block)
    text = text.replace("127.0.0.1:9000", f"127.0.0.1:{s3}").replace("-p 9000", f"-p {s3}")
    text = text.replace("--port 5000", f"--port {mlflow}").replace(
        "127.0.0.1:5000", f"127.0.0.1:{mlflow}"
    )
    text = DATABASE.sub(lambda m: f"{m.group(0)}_{suffix}", text)
    text = text.replace("$PWD/.trainflow", str(home)).replace(".trainflow/", f"{home}/")
    text = text.replace("mkdir -p .trainflow", f"mkdir -p {home}")
    serve = f"make dev DEV_PORT={ui} > {home}/dev.log 2>&1 &\n" + WAIT_FOR_UI.format(port=ui)
    return re.sub(r"^make dev\b.*$", lambda _: serve, text, flags=re.M)


def stop_session(pgid: int, seconds: float = 30) -> None:
    """SIGTERM to every process the block left, then SIGKILL to what still runs after
    `seconds` (`dg dev` can outlive a SIGTERM sent while its children shut down)."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            os.killpg(pgid, 0)  # raises once the group is empty
        os.killpg(pgid, signal.SIGKILL)


def drop_databases(suffix: str) -> None:
    conn = psycopg2.connect(ADMIN_URL)
    conn.autocommit = True  # DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cursor:
            for name in ("warehouse", "dagster", "mlflow"):
                cursor.execute(f"drop database if exists trainflow_{name}_{suffix} with (force)")
    finally:
        conn.close()


def test_there_is_a_prod_block() -> None:
    assert PROD_BLOCKS, (
        "docs/profiles.md's recipe for the prod profile on one machine is a prod block"
    )


@pytest.mark.parametrize("block", PROD_BLOCKS, ids=lambda b: b.where)
def test_the_prod_blocks_run_as_written(block: Block, tmp_path: Path) -> None:
    home = tmp_path / "trainflow"
    suffix = uuid.uuid4().hex[:8]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRAINFLOW_", "MLFLOW_", "AWS_", "DAGSTER_", "PG"))
    }
    env.update(TRAINFLOW_HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    script = for_this_machine(block, home, suffix)
    # Its own session, so the servers it leaves in the background are stopped with it.
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=1500)
    finally:
        stop_session(proc.pid)
        drop_databases(suffix)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(home.glob("*.log")))
    said = f"{block.where}:\n{script}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-4000:]}{logs}"
    assert proc.returncode == 0, said
    assert warnings_in(stderr) == [], said
    assert "ui answered" in stdout, said
    for expect in block.expects:
        kind, _, text = expect.partition(" ")
        assert kind == "output", (
            f"{block.where}: a prod block can expect output only, not {expect!r}"
        )
        assert text in stdout + stderr, f"the output has no {text!r}\n{said}"
