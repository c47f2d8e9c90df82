"""Progress of a long step in its log: partitions done / total and rows per second.

A year-long step that works through its days a batch at a time says after each batch how
far it is; one that works in a single pass says it once, with its rate. Dagster has no
progress event; a log line is what the UI's run view and the terminal both show.
"""

from __future__ import annotations

import time

import dagster as dg


class Progress:
    """Logs `<step>: <what> 62/365 partitions, 57,312 rows, 120,410 rows/s` per batch."""

    def __init__(self, log: dg.DagsterLogManager, step: str, what: str, total: int) -> None:
        self.log, self.step, self.what, self.total = log, step, what, total
        self.done = 0
        self.rows = 0
        self.started = time.perf_counter()

    def advance(self, partitions: int, rows: int) -> None:
        self.done += partitions
        self.rows += rows
        self.log.info(
            f"{self.step}: {self.what} {self.done}/{self.total} partitions, "
            f"{self.rows:,} rows, {self.rows_per_second:,.0f} rows/s"
        )

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(time.perf_counter() - self.started, 1e-9)
