"""Storage layout of the lake: one Delta table per asset at `<lake root>/<asset name>`.

Daily tables are partitioned by a `day` date column, so any Delta reader (polars,
deltalake, Spark, DuckDB) can open them without trainflow (docs/conventions.md). The
training-side tables (one row set per experiment, not per day) are partitioned by an
`experiment` column: each experiment's write replaces its own partition only, so experiments
live side by side in one table and train at the same time (docs/experiments.md).

Why not dagster-deltalake(-polars): its IO manager reads and writes only the first day of a
time window, and trainflow's assets read 28-day windows and write multi-day ranges in one
step. The rules here are few: a write replaces exactly the days of its window in one Delta
commit (atomic: a reader sees the old days or the new ones, never half), and refuses rows
outside that window, so a bug cannot overwrite neighbouring partitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from trainflow.cache import CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN, EXPERIMENT_COLUMN
from trainflow.lake import experiment_partitions as partitions
from trainflow.lake.retention import NEVER_EXPIRE_LOG, VacuumResult
from trainflow.lake.spool import Spool
from trainflow.lake.spool_commit import PARTITION_COLUMN, commit_spool

# (table uri, Delta table id, version) -> that table's history; see DeltaLake._history.
_HISTORY_CACHE: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
_HISTORY_CACHE_SIZE = 64


class LakeError(ValueError):
    """A lake read or write that cannot be done as asked."""


class SchemaChangeError(LakeError):
    """A write would change the type of a column the table already has."""


@dataclass(frozen=True)
class DayWindow:
    """Inclusive range of days, the unit a daily asset reads or writes."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"day window ends ({self.last}) before it starts ({self.first})")

    @property
    def n_days(self) -> int:
        return (self.last - self.first).days + 1

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.n_days)]

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    version: int
    rows: int


@dataclass(frozen=True)
class DeltaLake:
    """A lake root (local folder or `s3://bucket/prefix`) plus object-store options."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    def table_uri(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def _options(self) -> dict[str, str] | None:
        return dict(self.storage_options) or None

    def version(self, table: str) -> int | None:
        """Current Delta version of a table, None when it does not exist yet."""
        try:
            return DeltaTable(self.table_uri(table), storage_options=self._options()).version()
        except TableNotFoundError:
            return None

    def write(
        self,
        table: str,
        frame: pl.DataFrame | Spool,
        window: DayWindow | None,
        *,
        days: list[dt.date] | None = None,
        commit_metadata: Mapping[str, str] | None = None,
        experiment: str | None = None,
    ) -> WriteResult:
        """Replace the window's days (or the whole table when `window` is None) in one commit.

        `frame` is the rows, or a `Spool` of them, added to the commit chunk by chunk.
        `days` narrows a daily write to some days of the window (the others are cache hits
        and keep their stored rows). `commit_metadata` is stored in the Delta commit info.
        `experiment` (a whole table only): replace that experiment's rows, keep the others.
        """
        if experiment is not None:
            if window is not None or isinstance(frame, Spool):
                raise LakeError(f"{table}: only a whole table in memory is written per experiment")
            return self._write_experiment(table, frame, experiment, commit_metadata or {})
        uri = self.table_uri(table)
        replaced: list[dt.date] = []
        if window is not None:
            replaced = window.days() if days is None else sorted(days)
            _check_rows_in_days(table, frame, replaced, window)
        creating = self.version(table) is None
        # deltalake (1.6) does not detect a conflict between two commits that both create a
        # table: the loser's commit is retried as version 1 with all of its files, so two
        # runs writing a new table at the same time left every row twice. A write that
        # creates the table therefore either is version 0 or fails: mode "error" refuses a
        # table that appeared since the check above, and no commit retry means that losing
        # the race for version 0 raises CommitFailedError. IO_RETRY then re-runs the step,
        # which finds the table (and its cache keys) and replaces days by predicate, a
        # commit whose conflicts deltalake does detect.
        properties = CommitProperties(
            custom_metadata=dict(commit_metadata or {}),
            max_commit_retries=0 if creating else None,
        )
        schema = frame.polars_schema if isinstance(frame, Spool) else frame.schema
        if not creating and window is not None:
            self._refuse_type_changes(table, schema)
        if isinstance(frame, Spool) and window is not None and self._same_columns(table, schema):
            commit_spool(
                self.table_uri(table), self._options(), frame, replaced, creating, properties
            )
            return self._written(table, frame)
        data = frame.reader() if isinstance(frame, Spool) else _to_arrow(frame, window)
        # Schema evolution of a daily table: a new column (a feature added) joins the table,
        # null in the days not rewritten; a column no longer written stays, null in the days
        # that are. A changed type is refused above: deltalake would cast the new values
        # silently.
        self._commit(
            uri,
            data,
            properties,
            create=creating,
            partition_by=None if window is None else [PARTITION_COLUMN],
            predicate=None if window is None else _days_predicate(replaced, window),
        )
        return self._written(table, frame)

    def _write_experiment(
        self, table: str, frame: pl.DataFrame, experiment: str, commit_metadata: Mapping[str, str]
    ) -> WriteResult:
        """Replace one experiment's rows of a whole table in one commit, the others kept.

        deltalake detects the conflict of two such commits only where their partitions
        overlap: two experiments commit side by side, two runs of one experiment conflict
        (and IO_RETRY re-runs the loser, which then finds the winner's cache key). A table
        written before experiments had partitions is replaced whole, once (its rows stay in
        Delta history).
        """
        creating = self.version(table) is None
        properties = CommitProperties(
            custom_metadata={**commit_metadata, **partitions.commit_info(experiment, frame)},
            max_commit_retries=0 if creating else None,  # as in `write`: version 0 or fail
        )
        partitioned = creating or DeltaTable(
            self.table_uri(table), storage_options=self._options()
        ).metadata().partition_columns == [EXPERIMENT_COLUMN]
        self._commit(
            self.table_uri(table),
            _to_arrow(partitions.rows_of(experiment, frame), None),
            properties,
            create=creating,
            partition_by=[EXPERIMENT_COLUMN],
            # another experiment's columns stay (null in this one's rows); an unpartitioned
            # table is replaced whole
            predicate=partitions.predicate(experiment) if partitioned else None,
        )
        return self._written(table, frame)

    def _commit(
        self,
        uri: str,
        data: pa.Table | pa.RecordBatchReader,
        properties: CommitProperties,
        *,
        create: bool,
        partition_by: list[str] | None,
        predicate: str | None,
    ) -> None:
        """The lake's three kinds of write: create a table (version 0 or fail), replace the
        rows a partition predicate selects (schema merged), or replace a whole table (schema
        replaced)."""
        options = self._options()
        if create:
            write_deltalake(
                uri,
                data,
                mode="error",
                partition_by=partition_by,
                configuration=NEVER_EXPIRE_LOG,
                storage_options=options,
                commit_properties=properties,
            )
        elif predicate is not None:
            write_deltalake(
                uri,
                data,
                mode="overwrite",
                partition_by=partition_by,
                predicate=predicate,
                schema_mode="merge",
                storage_options=options,
                commit_properties=properties,
            )
        else:
            write_deltalake(
                uri,
                data,
                mode="overwrite",
                partition_by=partition_by,
                schema_mode="overwrite",
                storage_options=options,
                commit_properties=properties,
            )

    def experiment_version(self, table: str, experiment: str, at: int | None = None) -> int | None:
        """The Delta version whose commit last wrote `experiment`'s rows (at or before `at`),
        None when none did: the version a reader of that experiment pins, whose commit holds
        its lineage, whatever other experiments committed since."""
        return partitions.last_commit_of(self._history(table), experiment, at)

    def _written(self, table: str, frame: pl.DataFrame | Spool) -> WriteResult:
        version = self.version(table)
        assert version is not None
        rows = frame.rows if isinstance(frame, Spool) else frame.height
        return WriteResult(table_uri=self.table_uri(table), version=version, rows=rows)

    def _same_columns(self, table: str, schema: pl.Schema) -> bool:
        """Whether a write has exactly the table's columns (or creates it)."""
        if self.version(table) is None:
            return True
        return set(schema) == set(self.scan(table).collect_schema())

    def _refuse_type_changes(self, table: str, schema: pl.Schema) -> None:
        stored = self.scan(table).collect_schema()
        changed = {
            name: (stored[name], dtype)
            for name, dtype in schema.items()
            if name in stored and stored[name] != dtype
        }
        if changed:
            described = ", ".join(f"{n} {old} -> {new}" for n, (old, new) in changed.items())
            raise SchemaChangeError(
                f"{table}: schema mismatch, column type(s) changed ({described}); a partial "
                "write cannot change a column's type: rewrite the whole table (delete it and "
                "materialize every partition) or give the column a new name"
            )

    def vacuum(
        self, table: str, keep_versions: set[int], retention_hours: int, dry_run: bool
    ) -> VacuumResult:
        """Remove the table's files that neither its current version nor `keep_versions`
        reads, once older than `retention_hours` (lake/retention.py says why)."""
        stored = DeltaTable(self.table_uri(table), storage_options=self._options())
        version = stored.version()
        kept = sorted(v for v in keep_versions if v < version)
        configured = stored.metadata().configuration
        if not dry_run and any(configured.get(k) != v for k, v in NEVER_EXPIRE_LOG.items()):
            stored.alter.set_table_properties(NEVER_EXPIRE_LOG)  # a table created before
        removed = stored.vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            # Below the table's deletedFileRetentionDuration (a week) only when asked to.
            enforce_retention_duration=False,
            full=True,  # files no commit names too (killed writes), not only tombstones
            keep_versions=kept,
        )
        return VacuumResult(
            table=table,
            version=version,
            kept_versions=kept,
            removed_files=sorted(removed),
            dry_run=dry_run,
        )

    def stored_versions(
        self, table: str, window: DayWindow | None, experiment: str | None = None
    ) -> dict[dt.date | None, tuple[str, str, int]]:
        """(cache key, content hash, rows) stored for each day of the window; key None for
        the single entry of an unpartitioned table (of one experiment's rows where
        `experiment` names one). Empty when nothing usable is stored."""
        if self.version(table) is None:
            return {}
        if experiment is not None and self.experiment_version(table, experiment) is None:
            return {}
        lazy = self.scan(table, window, experiment=experiment)
        if not {CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN} <= set(lazy.collect_schema().names()):
            return {}
        if window is None:
            single = (
                lazy.group_by(CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN)
                .len()
                .collect(engine="streaming")
            )
            return {None: single.row(0)} if single.height == 1 else {}
        per_day = lazy.group_by(PARTITION_COLUMN, CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN).len()
        rows = per_day.collect(engine="streaming").iter_rows()
        return {day: (key, ver, n) for day, key, ver, n in rows}

    def day_values(self, table: str, window: DayWindow, column: str) -> dict[dt.date, str]:
        """day -> the non-null value of a per-day column over the window (empty if none)."""
        if self.version(table) is None:
            return {}
        lazy = self.scan(table, window)
        if column not in lazy.collect_schema().names():
            return {}
        pairs = lazy.filter(pl.col(column).is_not_null()).select(PARTITION_COLUMN, column)
        return dict(pairs.unique(PARTITION_COLUMN).collect().iter_rows())

    def day_keys(self, table: str) -> dict[dt.date, str]:
        """day -> the cache key stored for it, over a whole daily table (empty if none)."""
        if self.version(table) is None:
            return {}
        pairs = (
            self.scan(table)
            .select(PARTITION_COLUMN, CACHE_KEY_COLUMN)
            .unique()
            .collect(engine="streaming")
        )
        return dict(pairs.iter_rows())

    def _history(self, table: str) -> list[dict[str, Any]]:
        """The table's commit infos, newest first; empty when it does not exist.

        Cached per table id and version (commits are immutable, and the log never expires:
        NEVER_EXPIRE_LOG), because readers of an experiment look its commit up several times
        per step and deltalake re-reads every commit file per `history()` call."""
        try:
            stored = DeltaTable(self.table_uri(table), storage_options=self._options())
        except TableNotFoundError:
            return []
        key = (self.table_uri(table), str(stored.metadata().id), stored.version())
        if key not in _HISTORY_CACHE:
            if len(_HISTORY_CACHE) >= _HISTORY_CACHE_SIZE:
                _HISTORY_CACHE.pop(next(iter(_HISTORY_CACHE)))
            _HISTORY_CACHE[key] = stored.history()
        return _HISTORY_CACHE[key]

    def commit_metadata(self, table: str, version: int) -> dict[str, str]:
        """The custom metadata trainflow stored with one Delta commit."""
        for entry in self._history(table):
            if entry.get("version") == version:
                return {k: v for k, v in entry.items() if k.startswith("trainflow.")}
        return {}

    def scan(
        self,
        table: str,
        window: DayWindow | None = None,
        version: int | None = None,
        experiment: str | None = None,
    ) -> pl.LazyFrame:
        """Lazy read of a table (optionally at a Delta version), filtered to a window, or to
        one experiment's rows and the columns its commit wrote (at the version that commit
        made, unless `version` names one)."""
        uri = self.table_uri(table)
        columns: list[str] | None = None
        if experiment is not None:
            written = self.experiment_version(table, experiment, at=version)
            if written is None:
                raise LakeError(f"lake table {table!r} has no rows of experiment {experiment!r}")
            version = written if version is None else version
            columns = partitions.columns_of(self.commit_metadata(table, written))
        try:
            lazy = pl.scan_delta(uri, version=version, storage_options=self._options())
        except TableNotFoundError as exc:
            raise LakeError(f"lake table {table!r} does not exist at {uri}") from exc
        if window is not None:
            lazy = lazy.filter(pl.col(PARTITION_COLUMN).is_between(window.first, window.last))
        if experiment is not None and columns is not None:
            lazy = lazy.filter(pl.col(EXPERIMENT_COLUMN) == experiment).select(
                [*columns, EXPERIMENT_COLUMN]
            )
        return lazy

    def read(
        self,
        table: str,
        window: DayWindow | None = None,
        version: int | None = None,
        experiment: str | None = None,
    ) -> pl.DataFrame:
        return self.scan(table, window, version, experiment).collect()


def _to_arrow(frame: pl.DataFrame, window: DayWindow | None) -> pa.Table:
    """The frame for `write_deltalake`; a whole (unpartitioned) table's strings as Arrow
    string views, which is how polars holds them, so nothing is copied.

    Why: the default export copies every string into a large_string array, and a whole
    table's two bookkeeping columns (`cache.with_bookkeeping`) are literals polars keeps as
    one value: exported, 64 characters on every row, twice. At scale 10 the training set's
    write took 0.74 GiB above the frame that way, 0.24 GiB as views (measured). The Delta
    schema, the Parquet types and the rows read back are the same. (Not as a stream of
    batches: deltalake's writer reordered the rows of a stream, and row order is data here.)
    """
    if window is None:
        return frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return frame.to_arrow()


def _days_predicate(days: list[dt.date], window: DayWindow) -> str:
    if days == window.days():
        return (
            f"{PARTITION_COLUMN} >= '{window.first.isoformat()}' AND "
            f"{PARTITION_COLUMN} <= '{window.last.isoformat()}'"
        )
    listed = ", ".join(f"'{day.isoformat()}'" for day in days)
    return f"{PARTITION_COLUMN} IN ({listed})"


def _check_rows_in_days(
    table: str, frame: pl.DataFrame | Spool, days: list[dt.date], window: DayWindow
) -> None:
    columns = frame.polars_schema if isinstance(frame, Spool) else frame.schema
    if PARTITION_COLUMN not in columns:
        raise LakeError(f"{table}: a daily table needs a {PARTITION_COLUMN!r} date column")
    if any(not window.first <= day <= window.last for day in days):
        raise LakeError(f"{table}: days to replace must lie in partition window {window}")
    if isinstance(frame, Spool):
        outside_days = sorted(frame.days - set(days))
        rows = "spooled"
    else:
        outside = frame.filter(~pl.col(PARTITION_COLUMN).is_in(days))
        outside_days = sorted(set(outside[PARTITION_COLUMN].to_list()))
        rows = str(outside.height)
    if outside_days:
        raise LakeError(
            f"{table}: refusing to write {rows} rows outside partition window "
            f"{window} (e.g. days {', '.join(map(str, outside_days[:5]))})"
        )
