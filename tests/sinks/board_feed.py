"""A team's records for the team board at scale, and the board served from a thread of its own.

The tests of the board at 100 athletes (``test_dashboard_scale.py``) and ``bench/board.py`` use it.
The records have every key of the processor's records (``processors/records.py``: a stance record
with its pressure map, pose at IC and symmetry, a landing record per contact), the service's
``session``, ``emitted_ns`` and ``id``, and come at a runner's rate: per athlete a contact every
1/3 s or so (cadence 170-190 steps/min), its landing record at the initial contact and its stance
record at toe-off, some landings forced. They go to the sink through a :class:`SinkRunner`, as the
fusion service hands them over.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from poserun.processors.records import KEYS, record_id
from poserun.sinks.base import SinkRunner
from poserun.sinks.dashboard import DashboardSink

NAMES = ("Abebe", "Bekele", "Chebet", "Dibaba", "Edris", "Farah", "Gebrselassie", "Hassan", "Ingebrigtsen",
         "Jepchirchir", "Kipchoge", "Lagat")
SOURCES = ["imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints"]
JOINTS = ("left_hip", "left_knee", "left_ankle", "left_shoulder", "right_hip", "right_knee", "right_ankle",
          "right_shoulder")


def athlete_ids(n: int) -> list[str]:
    return [f"a{i + 1:03d}" for i in range(n)]


@dataclass
class _Runner:
    who: str
    cadence: float  # steps/min
    support: float  # s
    forced: float  # share of forced landings
    next_ic: float  # monotonic s
    foot: str = "left"
    step: int = 0
    to_due: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


class TeamFeed:
    """Records of ``athletes`` runners at about ``stances_per_s`` contacts a second each."""

    def __init__(self, athletes: int = 100, stances_per_s: float = 3.0, session: str = "board", seed: int = 7,
                 forced_share: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.session = session
        now = time.monotonic()
        self.runners = [_Runner(who, cadence=60.0 * stances_per_s * self.rng.uniform(0.94, 1.06),
                                support=self.rng.uniform(0.19, 0.26), forced=forced_share * self.rng.uniform(0, 2),
                                next_ic=now + self.rng.uniform(0, 1.0 / stances_per_s))
                        for who in athlete_ids(athletes)]
        self.records = 0
        self.cpu_s = 0.0  # CPU seconds spent making records (the bench takes them out of the board's)
        self.paused = threading.Event()  # set: no records (the athletes stopped)

    def _landing(self, r: _Runner, ic_ns: int) -> dict[str, Any]:
        forced = self.rng.random() < r.forced
        rec = {"type": "landing", "athlete": r.who, "foot": r.foot, "ic_ns": ic_ns, "step": r.step,
               "source": "insole_" + r.foot, "foot_landing_velocity_mps": round(self.rng.uniform(0.2, 1.4), 3),
               "foot_velocity_source": "imu_foot_" + r.foot,
               "body_fall_velocity_mps": round(self.rng.uniform(0.3, 0.9), 3),
               "body_fall_source": "keypoints", "forced_landing": forced,
               "forced_landing_severity": round(self.rng.uniform(1.1, 2.0), 3) if forced else None}
        return rec

    def _stance(self, r: _Runner, ic_ns: int, landing: dict[str, Any]) -> dict[str, Any]:
        u = self.rng.uniform
        support = r.support * u(0.95, 1.05)
        step_time = 60.0 / r.cadence * u(0.97, 1.03)
        rec: dict[str, Any] = {
            "type": "stance", "athlete": r.who, "foot": r.foot, "ic_ns": ic_ns, "to_ns": ic_ns + int(support * 1e9),
            "support_time_s": support, "flight_time_s": step_time - support, "step_time_s": step_time,
            "stride_time_s": 2 * step_time, "duty_factor": support / (2 * step_time), "cadence_spm": 60.0 / step_time,
            "strike_zone": self.rng.choice(("ball", "ball", "midfoot", "heel")), "cop_ic_fraction": u(0.3, 0.9),
            "heel_contact": self.rng.random() < 0.3, "heel_peak_fraction": u(0, 0.4), "ball_load_fraction": u(0.4, 0.9),
            "release_time_s": u(0.01, 0.05), "release_ratio": u(0.5, 1.0), "toe_pushoff_fraction": u(0.1, 0.4),
            "loading_rate_bw_per_s": u(40, 120), "peak_force_bw": u(2.0, 3.0),
            "pressure_map": {"peak_bw": [round(u(0, 0.8), 3) for _ in range(16)],
                             "along": [(i // 4) / 3 for i in range(16)],
                             "across": [(i % 4) / 3 - 0.5 for i in range(16)]},
            "impact_peak_g": u(3, 9), "overstride_m": u(0.0, 0.15), "overstride_ratio": u(0, 0.2),
            "knee_flexion_ic_deg": u(10, 25), "knee_flexion_min_deg": u(30, 45), "fall_angle_deg": u(2, 8),
            "waist_bend_deg": u(0, 10), "pull_height_m": u(0.2, 0.4), "pull_under_hip_m": u(-0.05, 0.05),
            "vertical_oscillation_m": u(0.05, 0.1),
            "pose_ic": {j: [round(u(-0.3, 0.3), 3), round(u(-0.9, 0.6), 3)] for j in JOINTS},
            "foot_landing_velocity_mps": landing["foot_landing_velocity_mps"],
            "body_fall_velocity_mps": landing["body_fall_velocity_mps"], "body_fall_source": "keypoints",
            "forced_landing": landing["forced_landing"], "forced_landing_severity": landing["forced_landing_severity"],
            "support_symmetry_pct": u(-5, 5),
            "symmetry_pct": {k: round(u(-8, 8), 2) for k in ("support_time_s", "flight_time_s", "ball_load_fraction",
                                                               "overstride_m", "knee_flexion_ic_deg")},
            "pose_score": u(45, 95), "pose_score_breakdown": {"landing": u(0, 1), "posture": u(0, 1), "pull": u(0, 1)},
            "event_source": "insole", "sources": SOURCES}
        return rec

    def due(self) -> list[dict[str, Any]]:
        """The records whose time has come (landings at IC, stances at toe-off), ``emitted_ns`` now."""
        if self.paused.is_set():
            for r in self.runners:  # the athletes stand: their next contact comes after they start again
                r.next_ic, r.to_due = time.monotonic() + 0.1, []
            return []
        now, out = time.monotonic(), []
        for r in self.runners:
            while r.to_due and r.to_due[0][0] <= now:
                out.append(r.to_due.pop(0)[1])
            while r.next_ic <= now:
                ic_ns = int(r.next_ic * 1e9)
                landing = self._landing(r, ic_ns)
                stance = self._stance(r, ic_ns, landing)
                out.append(landing)
                r.to_due.append((r.next_ic + stance["support_time_s"], stance))
                r.step += 1
                r.foot = "right" if r.foot == "left" else "left"
                r.next_ic += 60.0 / r.cadence
        emitted = time.time_ns()
        for rec in out:
            assert set(rec) <= KEYS[rec["type"]]
            rec.update(session=self.session, emitted_ns=emitted,
                       id=record_id(self.session, rec["athlete"], rec["type"], rec["foot"], rec["ic_ns"]))
        self.records += len(out)
        return out

    async def run(self, runner: SinkRunner, every_s: float = 0.01) -> None:
        """Offer the due records every ``every_s`` (the service emits as frames of 10 ms come in)."""
        while True:
            t0 = time.thread_time()
            records = self.due()
            self.cpu_s += time.thread_time() - t0
            for rec in records:
                runner.offer(rec)
            await asyncio.sleep(every_s)


@dataclass
class Served:
    sink: DashboardSink
    feed: TeamFeed
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sink.port}/"

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the board's loop and return its result (the sink is not thread-safe)."""
        async def go() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(30)


@contextmanager
def served_board(athletes: int = 100, stances_per_s: float = 3.0, **options: Any) -> Iterator[Served]:
    """The real :class:`DashboardSink` on port 0, fed ``athletes`` runners from its own loop in a thread."""
    sink = DashboardSink(port=0, context={"athlete_names": dict(zip(athlete_ids(len(NAMES)), NAMES, strict=True))},
                         **options)
    feed = TeamFeed(athletes, stances_per_s)
    loop = asyncio.new_event_loop()
    runner = SinkRunner(sink)
    thread = threading.Thread(target=loop.run_forever, name="board", daemon=True)
    thread.start()  # (the loop runs in its thread from the start: the caller may have a loop of its own)

    async def start() -> asyncio.Task[None]:
        await runner.start()
        return asyncio.create_task(feed.run(runner))
    task = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield Served(sink, feed, loop, thread)
    finally:
        async def stop() -> None:
            task.cancel()
            await runner.close()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
