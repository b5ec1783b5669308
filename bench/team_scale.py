"""Team scale: the largest team this machine follows in real time, and mosquitto's raw fan-in beside it.

    .venv/bin/python bench/team_scale.py [--sizes 30,60,100] [--search] [--seconds 40] [--workers 2]
                                         [--no-bundle] [--no-burst]

Per team size, the whole live chain on this machine, each part a process of its own as on a track: a
private mosquitto, ``poserun process --workers N`` with the haptic sink and the team's roster in its
config, ``poserun gateway sim --pregenerate`` (the stand-in for the athletes' own gateways: full sensor
sets, bundles unless ``--no-bundle``) and a virtual band that puts each cue's IC on the wall clock
(services/haptic_sim.py). A size is *sustained* when IC to band is p99 <= 50 ms and p50 <= 15 ms, the
last third of the run is no worse than that (no growing lag), and the gateway kept its schedule (lag
under 50 ms); p99 per tenth of the run and the service's memory over it (RSS of its processes) are
printed too. ``--search`` then adds 20 athletes at a time until a size is not sustained.

Then, in the same run (unless ``--no-burst``), the ratio to beat: the biggest sustained team's message
stream (10 s of it, recorded) replayed as fast as possible into mosquitto, read once by
``mosquitto_sub`` (C: the broker's raw fan-in) and once by ``poserun process`` (messages and frames per
second), against what the team needs in real time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from poserun.recording import RecordingWriter
from poserun.services.broker import mosquitto_broker
from poserun.services.haptic_sim import run_band
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, load_settings

P99_MS, P50_MS, LAG_S = 50.0, 15.0, 0.05


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _tree(pid: int) -> list[int]:
    """A process and its children (``poserun process --workers N``: the parent and its workers)."""
    out = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _usage(pids: list[int]) -> tuple[float, float]:
    """(RSS MiB, CPU s) summed over processes (those gone count nothing)."""
    rss = cpu = 0.0
    for pid in pids:
        try:
            rss += _rss_mib(pid)
            cpu += _cpu_seconds(pid)
        except OSError:
            pass
    return rss, cpu


def live(athletes: int, seconds: float, bundle: bool, workers: int = 1) -> dict[str, Any]:
    """One live run of ``athletes`` at real time: latency, lag, CPU, memory (``poserun process --workers``)."""
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker() as url:
        conf = Path(tmp) / "scale.yaml"
        # the team's roster, as a club's config has it (a partitioned worker then subscribes to its own athletes)
        roster = ", ".join(f"{{id: a{i + 1:02d}}}" for i in range(athletes))
        conf.write_text(f"broker: {{url: '{url}'}}\nsession: {{id: scale}}\nsim: {{bundle: {str(bundle).lower()}}}\n"
                        f"athletes: [{roster}]\nprocessor: {{accept_unknown_athletes: false}}\n"
                        "sinks:\n  - type: haptic\n    options:\n      max_cues_per_10s: 100\n"
                        "      forced_landing: {cooldown_s: 0}\n")
        ready_file = Path(tmp) / "ready"
        proc = subprocess.Popen([sys.executable, "-m", "poserun", "process", "-c", str(conf), "--session", "scale",
                                 "--stats-interval", "0", "--workers", str(workers), "--ready-file", str(ready_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, stop = threading.Event(), threading.Event()
        out: list[Any] = []
        band = threading.Thread(target=lambda: out.append(
            run_band(BrokerSettings(url=url), session="scale", stop=stop, quiet=True, ready=ready)))
        band.start()
        gw: subprocess.Popen[str] | None = None
        try:
            ready.wait(10)
            deadline = time.monotonic() + 120
            while not ready_file.exists():  # subscribed, kernels loaded (every worker)
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"poserun process did not start (rc {proc.poll()})")
                time.sleep(0.1)
            pids = _tree(proc.pid)
            gw_log = (Path(tmp) / "gw.out").open("w+")  # (a file: a pipe unread while it runs could fill and block it)
            gw = subprocess.Popen([sys.executable, "-m", "poserun", "gateway", "sim", "-c", str(conf), "--session",
                                   "scale", "--athletes", str(athletes), "--duration", str(seconds), "--speed", "1",
                                   "--pregenerate"], stdout=gw_log, stderr=subprocess.STDOUT, text=True)
            samples: list[tuple[float, float, float]] = []  # (monotonic, the service's RSS MiB, its CPU s)
            while gw.poll() is None:
                samples.append((time.monotonic(), *_usage(pids)))
                time.sleep(1.0)
            ended = time.monotonic()
            gw_log.seek(0)
            gw_out = gw_log.read()
            gw_log.close()
            if gw.returncode:
                raise SystemExit(f"the sim gateway failed (rc {gw.returncode}): {gw_out[-2000:]}")
            time.sleep(1.0)
            # the publication is the gateway's last ``seconds`` (before them it simulated the session)
            window = [x for x in samples if x[0] >= ended - seconds] or samples[-1:]
            cpu = (_usage(pids)[1] - window[0][2]) / max(1e-9, time.monotonic() - window[0][0])
        finally:  # (a failed gateway must not leave the service running)
            if gw is not None and gw.poll() is None:
                gw.kill()
            stop.set()
            band.join(10)
            proc.terminate()
            proc.communicate(timeout=60)
    published = json.loads([line for line in gw_out.splitlines() if line.startswith("{")][-1])
    lats = out[0].latencies_ms
    third = lats[2 * len(lats) // 3:]
    row = {"athletes": athletes, "workers": workers, "cues": len(lats), "p50": _pct(lats, 0.5),
           "p99": _pct(lats, 0.99), "max": max(lats) if lats else None, "last_third_p50": _pct(third, 0.5),
           "last_third_p99": _pct(third, 0.99), "gateway_lag_s": published.get("max_lag_s"),
           "messages_per_s": published["messages"] / seconds, "frames_per_s": published.get("frames", 0) / seconds,
           "poserun_cpu": cpu,
           # no growing lag, flat memory: IC to band p99 per tenth of the run (cues come evenly), RSS over it
           "p99_by_tenth": [_pct(lats[k * len(lats) // 10:(k + 1) * len(lats) // 10], 0.99) for k in range(10)],
           "rss_mib": [round(x[1], 1) for x in window[:: max(1, len(window) // 10)]]}
    row["sustained"] = bool(lats) and all(
        v is not None and v <= lim for v, lim in ((row["p99"], P99_MS), (row["p50"], P50_MS),
                                                  (row["last_third_p99"], P99_MS), (row["last_third_p50"], P50_MS))
    ) and (row["gateway_lag_s"] or 0.0) <= LAG_S
    return row


def burst(athletes: int, seconds: float, bundle: bool, workers: int = 1) -> dict[str, Any]:
    """The team's stream, ``seconds`` of it, as fast as it can go: mosquitto_sub, then poserun process."""
    settings = load_settings(overrides={"sim": {"athletes": athletes, "bundle": bundle}, "session": {"id": "burst"}})
    team = SimTeam("burst", settings.sim)
    out: dict[str, Any] = {"athletes": athletes}
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker() as url:
        path = Path(tmp) / "burst.mcap"
        w = RecordingWriter(path)
        for m in team.meta_messages():
            w.write(m.topic, m.payload, 1, retain=True, qos=1)
        messages = frames = 0
        for _ in range(int(seconds * 2)):
            msgs, _ = team.step(50)
            for m in sorted(msgs, key=lambda m: m.at_ns):
                w.write(m.topic, m.payload, 2 + m.at_ns, qos=0)
                messages += 1
                frames += m.frames
        w.close()
        out.update(messages=messages, frames=frames, realtime_messages_per_s=messages / seconds)
        exe = shutil.which("mosquitto_sub")
        port = url.rsplit(":", 1)[1]
        if exe is not None:
            sub = subprocess.Popen([exe, "-p", port, "-t", "poserun/v1/burst/+/data/+", "-C", str(messages),
                                    "-W", "120", "-F", "%U"], stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            pub = subprocess.Popen([sys.executable, "-m", "poserun", "gateway", "replay", str(path), "--broker", url,
                                    "--speed", "0"], stdout=subprocess.DEVNULL)
            got, _ = sub.communicate(timeout=600)
            pub.wait(600)
            stamps = [float(x) for x in got.split()]
            out["raw_received"] = len(stamps)
            if len(stamps) > 1 and stamps[-1] > stamps[0]:
                out["raw_messages_per_s"] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        stats = Path(tmp) / "stats.json"
        ready = Path(tmp) / "ready"
        proc = subprocess.Popen([sys.executable, "-m", "poserun", "process", "--broker", url, "--session", "burst",
                                 "--stats-interval", "0.2", "--stats-file", str(stats), "--ready-file", str(ready),
                                 "--workers", str(workers)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"poserun process did not start (rc {proc.poll()})")
            time.sleep(0.05)
        pub = subprocess.Popen([sys.executable, "-m", "poserun", "gateway", "replay", str(path), "--broker", url,
                                "--speed", "0"], stdout=subprocess.DEVNULL)
        first = None
        taken, moved = 0, time.perf_counter()
        end = (moved, 0)
        snap: dict[str, Any] = {}
        while taken < frames and time.perf_counter() - moved < 5.0:  # (the broker may drop what a slow reader
            time.sleep(0.05)                                           # cannot take: then it ends short)
            try:
                snap = json.loads(stats.read_text())
            except (OSError, ValueError):
                continue
            now = snap["totals"].get("frames", 0)
            if now != taken:
                taken, moved = now, time.perf_counter()
                end = (moved, taken)
            if taken and first is None:
                first = (time.perf_counter(), taken)
        pub.wait(600)
        proc.terminate()
        proc.wait(30)
        out["poserun_frames_taken"] = taken
        if first is None or end[0] <= first[0]:
            raise SystemExit("poserun process took too few frames to time")
        out["poserun_frames_per_s"] = (end[1] - first[1]) / (end[0] - first[0])
        # (its counters are per frame: messages/s is derived, frames/s x messages per frame of the stream)
        out["poserun_messages_per_s"] = out["poserun_frames_per_s"] * messages / frames
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="30,60,100")
    ap.add_argument("--search", action="store_true", help="then add 20 athletes until a size is not sustained")
    ap.add_argument("--max", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--no-bundle", dest="bundle", action="store_false")
    ap.add_argument("--workers", type=int, default=1, help="poserun process --workers N (fusion processes)")
    ap.add_argument("--no-burst", dest="burst", action="store_false", help="skip the as-fast-as-it-goes part")
    args = ap.parse_args()
    rows = [live(n, args.seconds, args.bundle, args.workers) for n in (int(s) for s in args.sizes.split(","))]
    if args.search:
        n = max(r["athletes"] for r in rows)
        while rows[-1]["sustained"] and n + 20 <= args.max:
            n += 20
            rows.append(live(n, args.seconds, args.bundle, args.workers))
    print(f"{args.seconds:g} s per size at real time, {'bundles' if args.bundle else 'a message per sensor'}, "
          f"{args.workers} poserun process{'es' if args.workers > 1 else ''}\n")
    print("| athletes | messages/s | frames/s | IC to band p50 / p99 / max (ms) | last third p50 / p99 (ms) | "
          "gateway lag (s) | poserun CPU (core) | sustained |")
    print("|---:|---:|---:|---|---|---:|---:|---|")
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    for r in rows:
        print(f"| {r['athletes']} | {r['messages_per_s']:,.0f} | {r['frames_per_s']:,.0f} | "
              f"{ms(r['p50'])} / {ms(r['p99'])} / {ms(r['max'])} | {ms(r['last_third_p50'])} / "
              f"{ms(r['last_third_p99'])} | {r['gateway_lag_s'] or 0:.3f} | {r['poserun_cpu']:.2f} | "
              f"{'yes' if r['sustained'] else 'no'} |")
    for r in rows:
        rss = r["rss_mib"] or ["-"]
        print(f"- {r['athletes']} athletes: p99 per tenth of the run (ms) "
              f"{', '.join(ms(v) for v in r['p99_by_tenth'])}; poserun RSS (MiB) {rss[0]} -> {rss[-1]} "
              f"({', '.join(str(v) for v in rss)})")
    best = max((r["athletes"] for r in rows if r["sustained"]), default=rows[0]["athletes"])
    b: dict[str, Any] = {}
    if args.burst:
        b = burst(best, 10.0, args.bundle, args.workers)
        raw = b.get("raw_messages_per_s")
        print(f"\nthe stream of {best} athletes as fast as it goes (10 s of it: {b['messages']:,} messages, "
              f"{b['frames']:,} frames; {b['realtime_messages_per_s']:,.0f} messages/s in real time):")
        print(f"- mosquitto_sub (raw fan-in): {raw:,.0f} messages/s ({b['raw_received']:,} received)" if raw
              else "- mosquitto_sub: not installed")
        print(f"- poserun process: {b['poserun_frames_per_s']:,.0f} frames/s, so {b['poserun_messages_per_s']:,.0f} "
              f"messages/s of this stream ({b['poserun_frames_taken']:,} frames taken)" +
              (f", {b['poserun_messages_per_s'] / raw:.2f} of the raw fan-in" if raw else "") +
              f", {b['poserun_messages_per_s'] / b['realtime_messages_per_s']:.1f} x real time")
    print("\n" + json.dumps({"live": rows, "burst": b}))


if __name__ == "__main__":
    main()
