"""Which source times each foot, and which of its events become records.

A foot may be timed by several sources; they take turns by priority (insole, foot IMU,
shank IMU, camera, pelvis/sacrum IMU): the first whose data is fresh, within ``STALE_NS``
of the newest sample of any source, times the foot; one that drops out hands over to the
next and takes over again when it returns. Events of the other sources are ignored here
(they serve clock alignment). An IC seen again after a hand-over, and a TO whose IC another
source timed, are counted and dropped, so a contact gives one landing and one stance; a
contact whose toe-off never comes gives its landing, no stance, and a count
(``stance_without_to``), a support longer than ``MAX_SUPPORT_NS`` (standing, or a clock that
jumped) gives no stance and a count (``implausible_support_time``), and a timing source that
streams a minute without a contact is
counted too (``<stream>_no_contacts``: not running, or a unit, axis or placement that
cannot be right).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO

STALE_NS = 300e6  # a timing source with no data for this long hands over to the next
DUPLICATE_NS = 250e6  # two ICs of one foot closer than this are the same contact
TO_MATCH_NS = 30e6  # a TO belongs to the foot's last IC when its IC column is this close
REJUDGE_NS = 20e6  # the active source is judged afresh every this much data time
SILENT_NS = 60e9  # a timing source this long without a contact is worth a warning
MAX_SUPPORT_NS = 5e9  # a "stance" longer than this is standing, or a clock that jumped: no stance record


@dataclass
class Pending:
    """A record to be: a landing at IC, or a stance at TO, waiting for its supporting data."""

    kind: str  # "landing" or "stance"
    foot: str
    ic_ns: float
    to_ns: float = math.nan
    source: str = "insole"  # the kind of source that timed it
    impact: float = math.nan  # a stance timed by a shank: its impact's dynamic acceleration, m/s^2


def source_name(kind: str, foot: str) -> str:
    """The stream (topic source) of a timing source kind for a foot."""
    if kind == "camera":
        return "keypoints"
    if kind == "imu_pelvis":
        return "imu_pelvis"
    return {"insole": "insole_", "imu": "imu_foot_", "imu_shank": "imu_shank_"}[kind] + foot


class Timing:
    """The active source per foot, and the events it accepts (as :class:`Pending` records)."""

    def __init__(self) -> None:
        self.candidates: dict[str, list[tuple[str, str]]] = {}  # foot -> [(kind, stream)] by priority
        self.warnings: Counter[str] = Counter()
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._ic: dict[str, float] = {}  # the last accepted IC per foot
        self._to_of: dict[str, float] = {}  # the IC of the last accepted TO per foot
        self._impact: dict[str, tuple[int, float]] = {}  # the last shank IC per foot and its peak
        self._open: dict[str, bool] = {}  # per foot: an accepted IC whose TO (or short end) is still to come
        self._contact: dict[str, float] = {}  # per stream: its last accepted IC
        self._silent: dict[str, float] = {}  # per stream: when its silence was last counted

    def set_candidates(self, candidates: dict[str, list[tuple[str, str]]]) -> None:
        self.candidates = candidates
        self._cache = {}

    def active(self, foot: str, clocks: dict[str, float], newest: float) -> str | None:
        """The kind of source timing ``foot`` now (``clocks``: each stream's newest sample on the
        athlete's time base; ``newest``: the newest of all)."""
        cached = self._cache.get(foot)
        if cached is not None and newest - cached[0] < REJUDGE_NS:
            return cached[1]
        kind = self._judge(foot, clocks, newest)
        self._cache[foot] = (newest, kind)
        return kind

    def _judge(self, foot: str, clocks: dict[str, float], newest: float) -> str | None:
        cands = self.candidates.get(foot) or []
        for k, stream in cands:
            clock = clocks.get(stream)
            if clock is not None and clock >= newest - STALE_NS:
                return k
        return cands[0][0] if cands else None

    def check_silence(self, newest: float, first: dict[str, float], clocks: dict[str, float]) -> None:
        """Count, once per silent minute, each timing stream (of one foot or both) that is streaming
        and has streamed ``SILENT_NS`` past its first sample and its last accepted IC (``first``: each
        stream's first sample on the athlete's time base). A stream that stopped is not silent: it
        has handed over, or the service sees its gap."""
        streams = set()
        for foot in ("left", "right"):
            kind = self._judge(foot, clocks, newest)
            if kind is not None:
                streams.add(source_name(kind, foot))
        for stream in sorted(streams):
            start, clock = first.get(stream), clocks.get(stream)
            if start is None or clock is None or clock < newest - STALE_NS:
                continue
            since = max(start, self._contact.get(stream, -math.inf), self._silent.get(stream, -math.inf))
            if newest - since >= SILENT_NS:
                self.warnings[f"{stream}_no_contacts"] += 1
                self._silent[stream] = newest

    def accept(self, foot: str, rows: np.ndarray, kind: str) -> list[Pending]:
        """The records-to-be of the active source's event rows for ``foot``."""
        out: list[Pending] = []
        for ev, t_ns, ic_ns, peak in rows:
            if ev == EV_IC:
                last = self._ic.get(foot)
                if last is not None and ic_ns - last < DUPLICATE_NS:
                    self.warnings["duplicate_ic"] += 1  # the same contact seen again after a hand-over
                    continue
                if self._open.get(foot):
                    self.warnings["stance_without_to"] += 1  # the last contact's toe-off was never seen
                self._open[foot] = True
                self._ic[foot] = ic_ns
                self._contact[source_name(kind, foot)] = ic_ns
                out.append(Pending("landing", foot, ic_ns, source=kind))
                if kind == "imu_shank":
                    self._impact[foot] = (int(ic_ns), float(peak))
            elif ev == EV_TO:
                if abs(ic_ns - self._ic.get(foot, -1e30)) > TO_MATCH_NS or self._to_of.get(foot) == ic_ns:
                    self.warnings["unmatched_to"] += 1  # its IC was timed by another source
                    continue
                self._to_of[foot] = ic_ns
                self._open[foot] = False
                if t_ns - ic_ns > MAX_SUPPORT_NS:
                    self.warnings["implausible_support_time"] += 1
                    continue
                impact = self._impact.pop(foot, None)
                shank = impact[1] if impact is not None and impact[0] == int(ic_ns) else math.nan
                out.append(Pending("stance", foot, ic_ns, t_ns, kind, shank))
            elif ev == EV_SHORT:
                self.warnings["short_contact"] += 1
                if abs(ic_ns - self._ic.get(foot, -1e30)) <= TO_MATCH_NS:
                    self._open[foot] = False  # it ended, too short for a stance
        return out
