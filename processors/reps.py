"""Intervals (reps) of one athlete from its stance and coach records, batch and streaming.

A rep is coach-driven when the athlete has coach records with ``action == "rep"`` (``on`` true
opens a rep, false closes it; an ``on`` while a rep is open closes it and opens the next): its
stances are those emitted between the two commands. Without any coach rep command the reps are
automatic: a rep is a run of running stances, and the athlete rests when

- no stance arrives for longer than the **gap**: 3 of the athlete's own recent step periods (the
  median interval between consecutive stances of the last :data:`PERIOD_STEPS` in-rep steps), so two
  stances lost by a sensor do not split a rep, clamped to [:data:`GAP_FLOOR_S`, :data:`GAP_CEILING_S`]:
  the floor is 3 step periods at 240 steps/min (0.25 s, the top of sprint cadences), the ceiling is 3
  step periods at the walking boundary (60/140 s), since any longer pause means cadence fell below it;
  before any period is known the gap is the ceiling;
- or the cadence drops to walking: the median ``cadence_spm`` of the last :data:`CADENCE_STEPS`
  stances is below :data:`WALK_SPM` (140 steps/min: walking cadences are about 100-130 steps/min,
  running rarely goes below 150, so 140 separates the two gaits without fitting any data).

A run of fewer than :data:`MIN_STANCES` stances (one stride and a half) is a few steps, not a rep.
Times are the service's wall clock (``emitted_ns``). Batch :func:`segment_reps` merges both lists
by ``emitted_ns`` (coach first on ties) and gives what a :class:`RepTracker` fed that order gives;
the tracker drops its automatic reps as soon as the first coach rep command arrives.
"""

from __future__ import annotations

from statistics import median
from typing import Any, Literal, TypedDict

Record = dict[str, Any]

GAP_PERIODS = 3.0
GAP_FLOOR_S = GAP_PERIODS * 60.0 / 240.0
WALK_SPM = 140.0
GAP_CEILING_S = GAP_PERIODS * 60.0 / WALK_SPM
PERIOD_STEPS = 8
CADENCE_STEPS = 4
MIN_STANCES = 3
#: the fields of a stance a rep's figures read (:func:`rep_summary`): all a tracker keeps of it
KEPT = ("emitted_ns", "cadence_spm", "support_time_s", "forced_landing", "pose_score")


class Rep(TypedDict):
    rep: int
    start_ns: int
    end_ns: int
    source: Literal["coach", "auto"]
    stances: int
    cadence_spm: float | None
    support_time_s: float | None
    forced_share: float | None
    pose_score: float | None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def _median(stances: list[Record], key: str) -> float | None:
    values = [v for v in (_num(s.get(key)) for s in stances) if v is not None]
    return float(median(values)) if values else None


def rep_summary(n: int, start_ns: int, end_ns: int, source: Literal["coach", "auto"],
                stances: list[Record]) -> Rep:
    """One rep's figures: medians of its stances, the share of its judged landings that were forced."""
    judged = [s["forced_landing"] for s in stances if isinstance(s.get("forced_landing"), bool)]
    return Rep(rep=n, start_ns=start_ns, end_ns=end_ns, source=source, stances=len(stances),
               cadence_spm=_median(stances, "cadence_spm"), support_time_s=_median(stances, "support_time_s"),
               forced_share=sum(judged) / len(judged) if judged else None,
               pose_score=_median(stances, "pose_score"))


def gap_ns(intervals_ns: list[int]) -> int:
    """The longest pause that still belongs to a rep, from the last in-rep step intervals."""
    if not intervals_ns:
        return int(GAP_CEILING_S * 1e9)
    gap = GAP_PERIODS * float(median(intervals_ns[-PERIOD_STEPS:])) / 1e9
    return int(min(GAP_CEILING_S, max(GAP_FLOOR_S, gap)) * 1e9)


def _walking(cadences: list[float]) -> bool:
    recent = cadences[-CADENCE_STEPS:]
    return bool(recent) and median(recent) < WALK_SPM


def command_ns(r: Record) -> int | None:
    """When a coach record happened: the service's ``emitted_ns``, else the click's ``t_ns``."""
    for key in ("emitted_ns", "t_ns"):
        v = r.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _is_rep_command(r: Record) -> bool:
    return (r.get("type") == "coach" and r.get("action") == "rep" and isinstance(r.get("on"), bool)
            and command_ns(r) is not None)


class RepTracker:
    """One athlete's reps, fed records one at a time in emission order."""

    def __init__(self) -> None:
        self._coach_mode = False
        self._coach: list[Rep] = []
        self._open: tuple[int, int, list[Record]] | None = None  # coach rep: number, start, stances
        self._auto: list[Rep] = []
        self._run: list[Record] = []
        self._intervals: list[int] = []
        self._cadences: list[float] = []
        self._last_ns: int | None = None

    @property
    def state(self) -> Literal["running", "resting"]:
        """Running while a coach rep is open or an automatic run of stances goes on."""
        if self._coach_mode:
            return "running" if self._open is not None else "resting"
        return "running" if len(self._run) >= MIN_STANCES else "resting"

    def advance(self, now_ns: int) -> None:
        """Close an automatic run whose gap has passed by ``now_ns`` (a clock tick, no record needed)."""
        if self._run and now_ns - int(self._run[-1]["emitted_ns"]) > gap_ns(self._intervals):
            self._close_run()

    def feed(self, record: Record) -> None:
        if _is_rep_command(record):
            self._command(record)
        elif record.get("type") == "stance" and isinstance(record.get("emitted_ns"), int):
            # only what a rep's figures read: an hour-long run holds a few numbers per step, not the
            # steps' pressure maps and poses
            self._stance({k: record.get(k) for k in KEPT})

    def reps(self) -> list[Rep]:
        """The reps so far, the open one included (ending at its last stance or its start)."""
        if self._coach_mode:
            if self._open is None:
                return list(self._coach)
            n, start, stances = self._open
            end = int(stances[-1]["emitted_ns"]) if stances else start
            return [*self._coach, rep_summary(n, start, end, "coach", stances)]
        if len(self._run) >= MIN_STANCES:
            return [*self._auto, self._run_rep()]
        return list(self._auto)

    def _command(self, record: Record) -> None:
        self._coach_mode = True
        at = int(command_ns(record) or 0)
        if self._open is not None:
            n, start, stances = self._open
            self._coach.append(rep_summary(n, start, at, "coach", stances))
            self._open = None
        if record["on"]:
            n = record.get("rep")
            number = n if isinstance(n, int) and not isinstance(n, bool) else len(self._coach) + 1
            self._open = (number, at, [])

    def _stance(self, record: Record) -> None:
        if self._open is not None:
            self._open[2].append(record)
        at = int(record["emitted_ns"])
        if self._last_ns is not None and self._run:
            interval = at - self._last_ns
            if interval > gap_ns(self._intervals):
                self._close_run()
            else:
                self._intervals = [*self._intervals[-PERIOD_STEPS + 1:], interval]
        self._last_ns = at
        cadence = _num(record.get("cadence_spm"))
        if cadence is not None:
            self._cadences = [*self._cadences[-CADENCE_STEPS + 1:], cadence]
        if _walking(self._cadences):
            self._close_run()
        else:
            self._run.append(record)

    def _run_rep(self) -> Rep:
        return rep_summary(len(self._auto) + 1, int(self._run[0]["emitted_ns"]),
                           int(self._run[-1]["emitted_ns"]), "auto", self._run)

    def _close_run(self) -> None:
        if len(self._run) >= MIN_STANCES:
            self._auto.append(self._run_rep())
        self._run = []


def _coach_reps(stances: list[Record], commands: list[Record]) -> list[Rep]:
    reps: list[Rep] = []
    opened: tuple[int, int] | None = None
    bounds: list[tuple[int, int, int]] = []
    for c in commands:
        at = int(command_ns(c) or 0)
        if opened is not None:
            bounds.append((opened[0], opened[1], at))
            opened = None
        if c["on"]:
            n = c.get("rep")
            opened = (n if isinstance(n, int) and not isinstance(n, bool) else len(bounds) + 1, at)
    for n, start, end in bounds:
        # coach first on ties: a stance emitted at a command's instant follows that command
        reps.append(rep_summary(n, start, end, "coach", [s for s in stances if start <= s["emitted_ns"] < end]))
    if opened is not None:
        inside = [s for s in stances if s["emitted_ns"] >= opened[1]]
        reps.append(rep_summary(opened[0], opened[1], int(inside[-1]["emitted_ns"]) if inside else opened[1],
                                "coach", inside))
    return reps


def _auto_reps(stances: list[Record]) -> list[Rep]:
    runs: list[list[Record]] = []
    run: list[Record] = []
    intervals: list[int] = []
    cadences: list[float] = []
    for prev, s in zip([None, *stances], stances, strict=False):
        if prev is not None and run:
            interval = s["emitted_ns"] - prev["emitted_ns"]
            if interval > gap_ns(intervals):
                runs.append(run)
                run = []
            else:
                intervals = [*intervals, interval][-PERIOD_STEPS:]
        c = _num(s.get("cadence_spm"))
        cadences = ([*cadences, c] if c is not None else cadences)[-CADENCE_STEPS:]
        if _walking(cadences):
            runs.append(run)
            run = []
        else:
            run.append(s)
    runs.append(run)
    kept = [r for r in runs if len(r) >= MIN_STANCES]
    return [rep_summary(i, int(r[0]["emitted_ns"]), int(r[-1]["emitted_ns"]), "auto", r)
            for i, r in enumerate(kept, 1)]


def segment_reps(stances: list[Record], coach: list[Record]) -> list[Rep]:
    """One athlete's reps: coach-driven when it has coach rep commands, else automatic."""
    timed = sorted((s for s in stances if s.get("type", "stance") == "stance"
                    and isinstance(s.get("emitted_ns"), int)), key=lambda s: s["emitted_ns"])
    commands = sorted((c for c in coach if _is_rep_command(c)),
                      key=lambda c: int(command_ns(c) or 0))
    return _coach_reps(timed, commands) if commands else _auto_reps(timed)
