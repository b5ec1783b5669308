"""Per-athlete fusion state: routes samples to the detectors and emits records.

This is the minimal processor of the foundation: insole contact events
become ``landing`` records (at IC) and ``stance`` records (at TO) with
support time, flight time and rolling cadence. Other streams are accepted
and counted; the full Pose Method processor extends this class.
Records are plain dicts (see ``poserun.records`` for their schema).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO, ContactDetector, G


@dataclass
class AthleteParams:
    body_mass_kg: float = 68.0
    leg_length_m: float = 0.9
    on_bw: float = 0.10
    off_bw: float = 0.05
    min_stance_s: float = 0.08
    min_swing_s: float = 0.10
    cadence_window_steps: int = 8


@dataclass
class AthleteState:
    athlete: str
    params: AthleteParams = field(default_factory=AthleteParams)
    samples: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.params
        bw = p.body_mass_kg * G
        self._contact = {
            side: ContactDetector(bw, p.on_bw, p.off_bw, p.min_stance_s, p.min_swing_s)
            for side in ("left", "right")
        }
        self._ics: deque[tuple[float, str]] = deque(maxlen=max(p.cadence_window_steps + 1, 3))
        self._last_to: dict[str, float] = {}
        self._step_count = 0

    def push_insole(self, side: str, times_ns: np.ndarray, cells: np.ndarray,
                    cell_area_m2: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Cells in N (or kPa with their areas); returns landing/stance records."""
        if cell_area_m2 is None:
            force = cells.sum(axis=1, dtype=np.float64)
        else:
            force = (cells.astype(np.float64) * 1000.0) @ np.asarray(cell_area_m2, dtype=np.float64)
        self._count(f"insole_{side}", len(times_ns))
        events = self._contact[side].update(times_ns, force)
        return self._records(side, events, "insole")

    def push_other(self, source: str, n: int) -> list[dict[str, Any]]:
        """Streams the foundation processor does not analyse yet: counted only."""
        self._count(source, n)
        return []

    def _count(self, source: str, n: int) -> None:
        self.samples[source] = self.samples.get(source, 0) + n

    def _records(self, side: str, events: np.ndarray, source: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        bw = self.params.body_mass_kg * G
        for kind, t_ns, ic_ns, peak in events:
            if kind == EV_IC:
                self._ics.append((ic_ns, side))
                self._step_count += 1
                out.append({"type": "landing", "athlete": self.athlete, "foot": side,
                            "ic_ns": int(ic_ns), "source": source, "step": self._step_count})
            elif kind == EV_TO:
                other = "right" if side == "left" else "left"
                rec: dict[str, Any] = {
                    "type": "stance", "athlete": self.athlete, "foot": side,
                    "ic_ns": int(ic_ns), "to_ns": int(t_ns),
                    "support_time_s": round(float(t_ns - ic_ns) / 1e9, 4),
                    "peak_force_bw": round(float(peak) / bw, 3),
                    "flight_time_s": None, "cadence_spm": self.cadence_spm(),
                    "sources": [source],
                }
                prev_to = self._last_to.get(other)
                if prev_to is not None and 0 < ic_ns - prev_to < 2e9:
                    rec["flight_time_s"] = round(float(ic_ns - prev_to) / 1e9, 4)
                self._last_to[side] = t_ns
                out.append(rec)
            elif kind == EV_SHORT:
                self.warnings["short_contact"] = self.warnings.get("short_contact", 0) + 1
        return out

    def cadence_spm(self) -> float | None:
        """Rolling median cadence over the last N steps (alternating feet only)."""
        ics = list(self._ics)
        steps = [
            (b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(ics)
            if a[1] != b[1] and 0.15 < (b[0] - a[0]) / 1e9 < 1.5
        ]
        if not steps:
            return None
        return round(60.0 / float(np.median(steps)), 1)
