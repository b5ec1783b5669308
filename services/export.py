"""``poserun sessions`` and ``poserun export``: what the session store holds, as tables."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from poserun.sinks.store import Database


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """One flat row per record: nested breakdowns become ``prefix.key`` columns, lists ``a+b``."""
    row: dict[str, Any] = {}
    for key, value in rec.items():
        if isinstance(value, dict):
            name = {"pose_score_breakdown": "score", "symmetry_pct": "symmetry_pct"}.get(key, key)
            for k, v in value.items():
                row[f"{name}.{k}"] = v
        elif isinstance(value, list):
            row[key] = "+".join(str(v) for v in value)
        else:
            row[key] = value
    return row


def export(db: Database, session: str, path: str | Path, fmt: str) -> int:
    """Write the session's records to CSV or Parquet; return how many rows."""
    rows = [flatten(r) for r in db.records(session)]
    if not rows:
        raise ValueError(f"session {session!r} has no records in {db.url}")
    athletes = {a["athlete"]: a for a in db.athletes(session)}
    for row in rows:
        a = athletes.get(row.get("athlete"), {})
        row["athlete_name"] = a.get("name")
        row["body_mass_kg"] = a.get("body_mass_kg")
    return write_rows(rows, path, fmt)


def write_rows(rows: list[dict[str, Any]], path: str | Path, fmt: str) -> int:
    """Flat rows to CSV or Parquet, columns in first-seen order; return how many rows."""
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise ValueError("Parquet needs pyarrow: pip install 'poserun[store]'") from None
        table = pa.table({c: [row.get(c) for row in rows] for c in columns})
        pq.write_table(table, path)
    else:
        raise ValueError(f"unknown format {fmt!r}: csv or parquet")
    return len(rows)
