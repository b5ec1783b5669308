"""Haptic latency: from a step's initial contact to the command arriving at the athlete's band.

A private mosquitto, ``poserun process`` with the haptic sink and ``poserun gateway sim`` as
separate processes (30 athletes at real-time speed), and a virtual band here that puts each
IC on the wall clock through the gateway's status (see services/haptic_sim.py).

    python bench/haptic_latency.py [--athletes 30] [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from poserun.services.broker import mosquitto_broker
from poserun.services.haptic_sim import run_band
from poserun.settings import BrokerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--athletes", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker() as url:
        conf = Path(tmp) / "haptic.yaml"
        conf.write_text(
            f"broker: {{url: '{url}'}}\nsession: {{id: lat}}\n"
            "sinks:\n  - type: haptic\n    options:\n      max_cues_per_10s: 100\n"
            "      forced_landing: {cooldown_s: 0}\n")
        proc = subprocess.Popen([sys.executable, "-m", "poserun", "process", "-c", str(conf), "--session", "lat",
                                 "--stats-interval", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ready, stop = threading.Event(), threading.Event()
        out: list = []
        band = threading.Thread(target=lambda: out.append(
            run_band(BrokerSettings(url=url), session="lat", stop=stop, quiet=True, ready=ready)))
        band.start()
        ready.wait(10)
        time.sleep(3.0)  # the service warms its kernels up
        gw = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "--broker", url, "--session", "lat",
                             "--athletes", str(args.athletes), "--duration", str(args.seconds), "--speed", "1"],
                            capture_output=True, text=True, check=True)
        time.sleep(1.0)
        stop.set()
        band.join(10)
        proc.terminate()
        proc.wait(10)
    summary = out[0].summary()
    print(f"{args.athletes} athletes x {args.seconds:g} s at real time; gateway: {gw.stdout.strip()}\n")
    lat = summary["ic_to_band_ms"]
    print("| cues | IC to band p50 (ms) | p99 (ms) | max (ms) | jitter SD (ms) | poserun to band p50 / p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---|")
    tr = summary["poserun_to_band_ms"]
    print(f"| {summary['with_ic_latency']} | {lat['p50']} | {lat['p99']} | {lat['max']} | {lat['jitter_sd']} | "
          f"{tr['p50']} / {tr['p99']} |")
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
