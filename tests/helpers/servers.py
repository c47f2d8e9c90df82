"""Server processes the tests start on free loopback ports, and the wait until one answers:
a test that talks to a server still starting would fail for a reason of the server's, so
each start waits for its first answer (and fails with the server's log if none comes)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.environment import BIN


def free_port() -> int:
    """A loopback port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    """Until `url` answers 200; fails the test with the end of `log` if `process` exits or
    `seconds` pass first. Stopping the process is the caller's."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def start_moto_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in a process of its own (deltalake's Rust client deadlocks against
    an in-process threaded server), once it answers; returns it and its endpoint URL."""
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint, server, log, seconds=30)  # GET / lists the buckets
    except BaseException:
        server.kill()
        raise
    return server, endpoint
