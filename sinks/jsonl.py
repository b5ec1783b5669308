"""JSON lines to stdout or a file; ``format: text`` prints one readable line per record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from poserun.sinks.base import Record


def _num(value: object, spec: str, width: int) -> str:
    """A number in ``spec``, or a dash of the same width where the record has none (a metric no
    source supports is null: a stance without an insole has no peak force)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return "-".center(width)


def describe(rec: Record, names: dict[str, str] | None = None) -> str:
    """One human line for a record (the ``text`` format)."""
    who = str(rec.get("athlete", "?"))
    if names and who in names:
        who = f"{who} {names[who]}"
    if rec.get("type") == "coach":  # the board's action (poserun/wire/coach.py)
        detail = {k: rec[k] for k in ("label", "on", "cadence_spm", "pattern", "rep", "targets") if k in rec}
        return f"{who:<24}   coach    {rec.get('action')} {json.dumps(detail, separators=(',', ':'))}"
    foot = "L" if rec.get("foot") == "left" else "R"
    if rec.get("type") == "landing":
        forced = "  FORCED" if rec.get("forced_landing") else ""
        return f"{who:<24} {foot} landing  step {rec.get('step')}{forced}"
    return (
        f"{who:<24} {foot} stance   support {_num(rec.get('support_time_s'), '.3f', 5)} s"
        f"  flight {_num(rec.get('flight_time_s'), '.3f', 5)} s"
        f"  cadence {_num(rec.get('cadence_spm'), '.0f', 3)} spm"
        f"  peak {_num(rec.get('peak_force_bw'), '.2f', 4)} BW"
    )


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, path: str = "-", format: str = "json", types: list[str] | None = None,
                 context: dict[str, Any] | None = None) -> None:
        if format not in ("json", "text"):
            raise ValueError("format must be 'json' or 'text'")
        self.path = path
        self.format = format
        self.types = set(types) if types else None
        self.names: dict[str, str] = (context or {}).get("athlete_names", {})
        self._fh: TextIO | None = None

    async def start(self) -> None:
        if self.path == "-":
            self._fh = sys.stdout
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    async def write_batch(self, records: list[Record]) -> None:
        assert self._fh is not None
        lines = []
        for rec in records:
            if self.types is not None and rec.get("type") not in self.types:
                continue
            if self.format == "json":
                lines.append(json.dumps(rec, separators=(",", ":")))
            else:
                lines.append(describe(rec, self.names))
        if lines:
            self._fh.write("\n".join(lines) + "\n")
            self._fh.flush()

    async def close(self) -> None:
        if self._fh is not None and self._fh is not sys.stdout:
            self._fh.close()
        self._fh = None
