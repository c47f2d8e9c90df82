"""Fingerprint every Delta table of a lake, column by column, to prove a refactor moved no byte.

    python benchmarks/lake_fingerprint.py LAKE > before.json   # on the old commit's lake
    python benchmarks/lake_fingerprint.py LAKE > after.json    # on the new one's
    python benchmarks/lake_fingerprint.py --compare before.json after.json

Per table: its row count and, per column, a hash of the column's sorted values (row order
and Delta file layout do not count). The comparison lists the columns that differ: after a
pure refactor only bookkeeping that names code or runs may (`_cache_key`, `_code_version`,
run ids, file URIs under another home), never a data column or a `_content_hash`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable


def fingerprint(lake: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for log in sorted(lake.rglob("_delta_log")):
        frame = pl.from_arrow(DeltaTable(str(log.parent)).to_pyarrow_table())
        assert isinstance(frame, pl.DataFrame)
        columns = {
            name: hashlib.sha256(
                "\n".join(sorted(repr(v) for v in frame[name].to_list())).encode()
            ).hexdigest()[:16]
            for name in sorted(frame.columns)
        }
        found[str(log.parent.relative_to(lake))] = {"rows": frame.height, "columns": columns}
    return found


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for table in sorted(set(before) | set(after)):
        if table not in before or table not in after:
            lines.append(f"{table}: only in {'after' if table in after else 'before'}")
            continue
        old, new = before[table]["columns"], after[table]["columns"]
        differ = [c for c in sorted(set(old) | set(new)) if old.get(c) != new.get(c)]
        rows = f"{before[table]['rows']} -> {after[table]['rows']} rows"
        lines.append(f"{table}: {rows}; columns that differ: {', '.join(differ) or 'none'}")
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        old, new = (json.loads(Path(p).read_text()) for p in sys.argv[2:4])
        print("\n".join(compare(old, new)))
    else:
        print(json.dumps(fingerprint(Path(sys.argv[1])), indent=1, sort_keys=True))
