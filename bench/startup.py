"""Start-up: numba's cold compile (per kernel, serial and in parallel), a warm start, and the demo.

    python bench/startup.py [--demo-seconds 20] [--skip-demo]

Each cold figure compiles into a fresh ``NUMBA_CACHE_DIR`` in a fresh interpreter, so the runs do
not share a cache; the warm figure loads what the parallel run cached. The demo rows run
``poserun demo`` (warm cache) on each broker it can use and time the first full team table, a
run of ``--demo-seconds`` from start to exit (against that many seconds of simulated time), and
Ctrl-C to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from poserun.services.mqtt import broker_answers

PER_KERNEL = r"""
import json, time
from numba.core import event
spent, stack = {}, []
class Outer(event.Listener):  # only the outermost compile of a nest counts towards a kernel
    def on_start(self, ev):
        stack.append((ev.data["dispatcher"], time.perf_counter()))
    def on_end(self, ev):
        d, t0 = stack.pop()
        if not stack and d.py_func.__module__.startswith("poserun."):
            name = d.py_func.__module__.rsplit(".", 1)[-1] + "." + d.py_func.__name__
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
event.register("numba:compile", Outer())
t0 = time.perf_counter()
from poserun.services.warmup import warm_up
report = warm_up(jobs=JOBS)
print(json.dumps({"seconds": time.perf_counter() - t0, "cold": report.cold, "groups": report.groups,
                  "kernels": spent}))
"""


def warm_run(cache: str, jobs: int) -> dict[str, object]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    code = PER_KERNEL.replace("JOBS", str(jobs))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t0  # with the interpreter's own start and imports
    return result


ROW = re.compile(r"^(a\d\d) \S+ \d+\s+\S+\s+\d+ ")


def demo_run(args: list[str], athletes: int, seconds: float) -> dict[str, float | str]:
    """Time one ``poserun demo``: to the first table with every athlete, then to exit."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "poserun", "demo", "--duration", str(seconds), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: set[str] = set()
    first = [float("nan")]
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = ROW.match(line)
            if m:
                seen.add(m.group(1))
                if len(seen) == athletes and first[0] != first[0]:
                    first[0] = time.monotonic() - t0

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.wait(seconds * 10 + 120)
    total = time.monotonic() - t0
    reader.join(5)
    stopped = next((ln for ln in lines if ln.startswith("stopped in")), "")
    # Ctrl-C half-way through a second run
    proc2 = subprocess.Popen([sys.executable, "-m", "poserun", "demo", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc2.stdout is not None
    for line in proc2.stdout:
        if ROW.match(line):
            break
    t1 = time.monotonic()
    proc2.send_signal(signal.SIGINT)
    proc2.wait(60)
    return {"first_table_s": first[0], "run_s": total, "ctrl_c_s": time.monotonic() - t1,
            "summary": stopped.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo-seconds", type=float, default=20.0)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as serial_dir, tempfile.TemporaryDirectory() as parallel_dir:
        serial = warm_run(serial_dir, 1)
        parallel = warm_run(parallel_dir, os.cpu_count() or 1)
        warm = warm_run(parallel_dir, os.cpu_count() or 1)
    print("| kernel (outermost compile, serial cold run) | seconds |\n|---|---:|")
    kernels: dict[str, float] = serial["kernels"]  # type: ignore[assignment]
    for name, sec in sorted(kernels.items(), key=lambda kv: -kv[1]):
        print(f"| `{name}` | {sec:.2f} |")
    print(f"| all | {sum(kernels.values()):.2f} |\n")
    print("| start | warm_up() | with interpreter start and imports | groups (s) |\n|---|---:|---:|---|")
    for label, r in (("cold cache, 1 process", serial), (f"cold cache, {os.cpu_count()} processes", parallel),
                     ("warm cache", warm)):
        print(f"| {label} | {r['seconds']:.2f} s | {r['wall']:.2f} s | {r['groups']} |")
    if args.skip_demo:
        return
    print(f"\n`poserun demo --duration {args.demo_seconds:g}` on a warm cache\n")
    print("| broker | athletes | first full table | whole run | Ctrl-C to exit | demo's summary |\n"
          "|---|---:|---:|---:|---:|---|")
    runs = [("--embedded-broker (amqtt, own process)", ["--embedded-broker"], 4)]
    if broker_answers("127.0.0.1", 1883, timeout=0.5):
        runs.insert(0, ("Mosquitto on 127.0.0.1:1883", ["--broker", "mqtt://127.0.0.1:1883"], 12))
    for label, extra, athletes in runs:
        r = demo_run(extra, athletes, args.demo_seconds)
        print(f"| {label} | {athletes} | {r['first_table_s']:.1f} s | {r['run_s']:.1f} s | {r['ctrl_c_s']:.2f} s | "
              f"{r['summary']} |")


if __name__ == "__main__":
    main()
