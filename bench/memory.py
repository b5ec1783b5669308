"""Memory per athlete over a long session: one simulated athlete, full sensor set, through the
fusion service (decode, routing, processor); the process's resident memory (RSS) and the
processor's own structures sampled every 10 simulated minutes.

    python bench/memory.py [--minutes 120]
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import load_settings


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=120.0)
    args = ap.parse_args()
    settings = load_settings(overrides={"sim": {"athletes": 1, "seed": 3}})
    team = SimTeam("mem", settings.sim)
    svc = FusionService(settings, session="mem")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    t0 = time.time()
    print("| simulated minute | RSS (MiB) | sample slots held by the rings | records so far |")
    print("|---:|---:|---:|---:|")
    records = 0
    for minute in range(int(args.minutes) + 1):
        if minute % 10 == 0:
            gc.collect()
            state = next(iter(svc.athletes.values()), None)
            held = 0
            if state is not None:
                rings = [*state._insole_ring.values(), state._kp_ring, *(i.ring for i in state._imu.values())]
                held = sum(r.size for r in rings)
            print(f"| {minute} | {rss_mib():.1f} | {held:,} | {records:,} |", flush=True)
        for _ in range(60):
            msgs, _ = team.step(100)
            msgs.sort(key=lambda m: m.at_ns)
            for m in msgs:
                records += len(svc.handle(m.topic, m.payload))
    print(f"\n{args.minutes:g} simulated minutes in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
