"""Processor speed: samples/s per modality and one athlete's full sensor set as a share of
one core (numba start-up is bench/startup.py).

    python bench/kernels.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from poserun.processors.athlete import AthleteParams, AthleteState
from poserun.services.fusion import FusionService, configure
from poserun.services.sim.team import SimTeam, device_meta
from poserun.settings import SimSettings, load_settings
from poserun.wire import decode

SENSORS = ["imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints"]


def blocks(seconds: float) -> tuple[SimTeam, list[tuple[str, np.ndarray, np.ndarray]], list]:
    team = SimTeam("b", SimSettings(athletes=1, seed=1, bundle=False))
    out, msgs = [], []
    for _ in range(int(seconds * 2)):
        m, _ = team.step(50)
        m.sort(key=lambda x: x.at_ns)
        msgs += m
        for x in m:
            fr = decode(x.payload)
            out.append((x.topic.rsplit("/", 1)[1], fr.times_ns(), np.array(fr.data)))
    return team, out, msgs


def state_for(team: SimTeam) -> AthleteState:
    state = AthleteState("a01", AthleteParams())
    for src in team.sources["a01"]:
        configure(state, device_meta(src.name, src.rate))
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    team, data, msgs = blocks(args.seconds)
    feed = state_for(team)  # compile (or load) every kernel a session reaches, records included
    for b in data:
        feed.push(*b)
    # per modality: feed only that source kind into a fresh state
    print(f"one simulated athlete, {args.seconds:g} s at default rates (IMU 400 Hz x2, insole 100 Hz x2, "
          f"camera 60 fps)\n")
    print("| what | samples | time (s) | samples/s per core | share of one core per athlete |")
    print("|---|---:|---:|---:|---:|")
    for label, prefix in (("foot IMU (strapdown, ZUPT, events)", "imu_foot"),
                          ("insole (contact, stance metrics)", "insole"), ("keypoints (geometry)", "keypoints")):
        chosen = [b for b in data if b[0].startswith(prefix)]
        n = sum(len(b[1]) for b in chosen)
        times = []
        for _ in range(3):  # the fastest of three
            state = state_for(team)
            t = time.perf_counter()
            for b in chosen:
                state.push(*b)
            times.append(time.perf_counter() - t)
        dt = min(times)
        print(f"| {label} | {n:,} | {dt:.3f} | {n / dt:,.0f} | {100 * dt / args.seconds:.3f} % |")
    n = sum(len(b[1]) for b in data)
    runs = []
    for _ in range(5):  # the machine is noisy: the median of five runs
        state = state_for(team)
        t = time.perf_counter()
        recs = 0
        for b in data:
            recs += len(state.push(*b))
        runs.append(time.perf_counter() - t)
    dt = alone = float(np.median(runs))
    print(f"| **full sensor set, fused (processor alone), median of 5** | {n:,} | {dt:.3f} | {n / dt:,.0f} | "
          f"**{100 * dt / args.seconds:.3f} %** (runs {min(runs) / args.seconds * 100:.3f}-"
          f"{max(runs) / args.seconds * 100:.3f} %) |")
    svc = FusionService(load_settings(), session="b")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    t = time.perf_counter()
    for m in msgs:
        svc.handle(m.topic, m.payload)
    dt = time.perf_counter() - t
    print(f"| full sensor set incl. decode and routing (FusionService.handle) | {n:,} | {dt:.3f} | "
          f"{n / dt:,.0f} | {100 * dt / args.seconds:.3f} % |")
    print(f"\n{recs} records. Athletes per core at this cost: {args.seconds / alone:.0f} (processor alone), "
          f"{args.seconds / dt:.0f} (with decode and routing).")


if __name__ == "__main__":
    main()
