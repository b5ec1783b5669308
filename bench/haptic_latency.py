"""Haptic latency: from a step's initial contact to the command arriving at the athlete's band.

A private mosquitto, ``poserun process`` with the haptic sink and ``poserun gateway sim`` as
separate processes (30 athletes at real-time speed, a message per sensor frame: bench/team_scale.py
measures bundles), and a virtual band here that puts each
IC on the wall clock through the gateway's status (see services/haptic_sim.py).

    python bench/haptic_latency.py [--athletes 30] [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from poserun.services.broker import mosquitto_broker
from poserun.services.haptic_sim import run_band
from poserun.settings import BrokerSettings


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--athletes", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker() as url:
        conf = Path(tmp) / "haptic.yaml"
        conf.write_text(
            f"broker: {{url: '{url}'}}\nsession: {{id: lat}}\nsim: {{bundle: false}}\n"
            "sinks:\n  - type: haptic\n    options:\n      max_cues_per_10s: 100\n"
            "      forced_landing: {cooldown_s: 0}\n")
        proc = subprocess.Popen([sys.executable, "-m", "poserun", "process", "-c", str(conf), "--session", "lat",
                                 "--stats-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        ready, stop = threading.Event(), threading.Event()
        out: list = []
        band = threading.Thread(target=lambda: out.append(
            run_band(BrokerSettings(url=url), session="lat", stop=stop, quiet=True, ready=ready)))
        band.start()
        ready.wait(10)
        time.sleep(3.0)  # the service warms its kernels up
        cpu0 = _cpu_seconds(proc.pid)
        machine0 = _cpu_times()
        gw = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "-c", str(conf), "--session", "lat",
                             "--athletes", str(args.athletes), "--duration", str(args.seconds), "--speed", "1",
                             "--pregenerate"],
                            capture_output=True, text=True, check=True)
        time.sleep(1.0)
        cpu_s = _cpu_seconds(proc.pid) - cpu0
        machine = [b - a for a, b in zip(machine0, _cpu_times(), strict=True)]
        stop.set()
        band.join(10)
        proc.terminate()
        so, se = proc.communicate(timeout=20)
        lines = [ln for ln in (so + se).splitlines() if ln.startswith('{"stats"')]
        if not lines:
            raise SystemExit(f"poserun process ended without its stats (rc {proc.returncode}):\n{se[-2000:]}")
        stats = json.loads(lines[-1])["stats"]
    summary = out[0].summary()
    print(f"{args.athletes} athletes x {args.seconds:g} s at real time; gateway: {gw.stdout.strip()}")
    print(f"poserun process: {cpu_s:.1f} s of CPU, {cpu_s / (args.seconds + 1) * 100:.0f} % of one core; "
          f"machine: {100 * (1 - machine[3] / sum(machine)):.0f} % busy, "
          f"{100 * machine[7] / sum(machine):.0f} % stolen by the host\n")
    lat = summary["ic_to_band_ms"]
    print("| cues | IC to band p50 (ms) | p99 (ms) | max (ms) | jitter SD (ms) | poserun to band p50 / p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---|")
    tr = summary["poserun_to_band_ms"]
    print(f"| {summary['with_ic_latency']} | {lat['p50']} | {lat['p99']} | {lat['max']} | {lat['jitter_sd']} | "
          f"{tr['p50']} / {tr['p99']} |")
    buckets = stats["latency"]["buckets"]
    total = buckets[-1][1] or 1
    print("\nposerun, frame received to record emitted (share of records within):",
          ", ".join(f"{float(b) * 1000:g} ms {c / total:.1%}" for b, c in buckets[:-1] if float(b) <= 0.1))
    lats = out[0].latencies_ms
    step = max(1, len(lats) // 10)
    print("\nIC to band over the run (max of each tenth of the cues, ms):",
          " ".join(f"{max(lats[k:k + step]):.0f}" for k in range(0, len(lats), step)))
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
