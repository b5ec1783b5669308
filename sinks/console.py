"""A team table on the terminal: each athlete's latest stance, refreshed every few seconds."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from poserun.sinks.base import Record


class ConsoleSink:
    name = "console"

    def __init__(self, interval_s: float = 2.0, stream: TextIO | None = None,
                 context: dict[str, Any] | None = None) -> None:
        ctx = context or {}
        self.interval = interval_s
        self.names: dict[str, str] = ctx.get("athlete_names", {})
        self.profiles: dict[str, str] = ctx.get("athlete_profiles", {})
        self.stream = stream or sys.stdout
        self.latest: dict[str, dict[str, Record]] = {}
        self.counts: dict[str, int] = {}
        self._next = 0.0
        self.tables = 0

    async def start(self) -> None:
        self._next = time.monotonic() + self.interval

    async def write_batch(self, records: list[Record]) -> None:
        for rec in records:
            if rec.get("type") != "stance":
                continue
            who = rec["athlete"]
            self.latest.setdefault(who, {})[rec["foot"]] = rec
            self.counts[who] = self.counts.get(who, 0) + 1
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + self.interval
            self.print_table()

    def print_table(self) -> None:
        if not self.latest:
            return
        lines = [f"{'athlete':<22} {'profile':<14} {'stances':>7} {'support L/R (s)':>16} "
                 f"{'flight (s)':>10} {'cadence':>8} {'peak BW':>8}"]
        for who in sorted(self.latest):
            feet = self.latest[who]
            last = max(feet.values(), key=lambda r: r["to_ns"])
            sup = "/".join(f"{feet[f]['support_time_s']:.3f}" if f in feet else "  -  "
                           for f in ("left", "right"))
            flight = last.get("flight_time_s")
            cad = last.get("cadence_spm")
            lines.append(
                f"{(who + ' ' + self.names.get(who, '')).strip():<22.22} "
                f"{self.profiles.get(who, ''):<14.14} {self.counts[who]:>7} {sup:>16} "
                f"{'-' if flight is None else f'{flight:.3f}':>10} "
                f"{'-' if cad is None else f'{cad:.0f}':>8} {last.get('peak_force_bw') or 0:>8.2f}"
            )
        self.stream.write("\n".join(lines) + "\n\n")
        self.stream.flush()
        self.tables += 1

    async def close(self) -> None:
        self.print_table()
