"""The foundation's full acceptance run: 30 athletes x 60 s at --speed 10, recorded, replayed.

    python bench/record_replay.py [--athletes 30] [--seconds 60] [--speed 10]

A private mosquitto; ``poserun record`` and ``poserun gateway sim`` as separate processes;
then the recording replayed under a new session with its original timing (``--speed 1``) and
as fast as possible (``--speed 0``), each recorded again. Prints how fast each step went
against real time and whether the replays gave the same frames, in the same order, byte for
byte. The test suite runs the same check on a smaller team as fast as the machine goes
(tests/integration/test_record_replay.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from poserun.recording import read_messages
from poserun.services.broker import mosquitto_broker
from poserun.services.replay import rewrite_session
from poserun.wire import topics


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "poserun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def recorder(url: str, path: Path, session: str) -> subprocess.Popen[str]:
    ready = path.with_suffix(".ready")
    proc = cli("record", str(path), "--broker", url, "--session", session, "--idle-stop", "3",
               "--ready-file", str(ready))
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read() if proc.stderr else "recorder died")
        time.sleep(0.05)
    return proc


def frames(path: Path, session: str | None = None) -> list[tuple[str, bytes]]:
    return [(rewrite_session(m.topic, session), m.payload) for m in read_messages(path)
            if topics.parse(m.topic).channel == "data"]


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(err)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--athletes", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--speed", type=float, default=10.0)
    args = ap.parse_args()
    sim_s = args.seconds / args.speed
    print(f"{args.athletes} athletes x {args.seconds:g} s at --speed {args.speed:g} "
          f"(real time of that: {sim_s:.1f} s)\n")
    print("| step | wall s | pace | frames | same as the first recording |\n|---|---:|---|---:|---|")
    with mosquitto_broker() as url, tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "first.mcap"
        rec = recorder(url, first, "acc")
        t0 = time.monotonic()
        conf = Path(tmp) / "per-sensor.yaml"  # a message per frame: the figures count frames
        conf.write_text("sim: {bundle: false}\n")
        gw = finish(cli("gateway", "sim", "-c", str(conf), "--broker", url, "--session", "acc", "--athletes",
                        str(args.athletes), "--duration", str(args.seconds), "--speed", str(args.speed)))
        wall = time.monotonic() - t0
        finish(rec)
        a = frames(first)
        times = [m.log_time_ns for m in read_messages(first)]
        span = (max(times) - min(times)) / 1e9
        print(f"| gateway sim -> record | {wall:.1f} | {args.seconds / wall:.2f}x real time ({sim_s / wall:.2f} of "
              f"--speed {args.speed:g}; max lag {gw['max_lag_s']} s) | {len(a):,} | "
              f"(the recording spans {span:.1f} s) |")
        for speed, label in ((1.0, "replay --speed 1 (the recording's timing)"), (0.0, "replay --speed 0")):
            again = Path(tmp) / f"replay{speed:g}.mcap"
            session = f"acc{speed:g}".replace(".", "")
            rec = recorder(url, again, session)
            t0 = time.monotonic()
            finish(cli("gateway", "replay", str(first), "--broker", url, "--speed", str(speed),
                       "--as-session", session))
            wall = time.monotonic() - t0
            finish(rec)
            b = frames(again, "acc")
            pace = f"{span / wall:.2f} of the recording's span" if speed else f"{len(b) / wall:,.0f} frames/s"
            print(f"| {label} | {wall:.1f} | {pace} | {len(b):,} | {'yes' if a == b else 'NO'} |")


if __name__ == "__main__":
    main()
