"""The team board at scale: the real dashboard sink fed N runners, Debian's Chromium on the page.

The sink (``DashboardSink`` on port 0, 10 updates a second, ``--update-hz``) gets ``--athletes`` runners' records at
about 3 contacts a second each (a landing and a stance record per contact, every key of the
processor's records; ``tests/sinks/board_feed.py``) from its own event loop. Chromium, driven by
Playwright at 1366x768, opens the board in the view it picks by itself (a roster from 20 athletes,
tiles below; ``--view`` forces one). After a warm-up, for ``--seconds``, the page's own counters
(``window.poserunBoard``) give the DOM renders a second and, at each render, the age of the oldest
athlete's data on the screen (from that athlete's newest record's ``emitted_ns``: it includes the
time between the athlete's records, up to 1/3 s at this cadence) and the age of the oldest record
that render drew (record to screen); the sink's counters give the updates and bytes it sent; /proc
gives the CPU of the board's event-loop thread (the sink, its runner and the socket; the feed's own
time taken out) and of the browser (Chromium and Playwright's driver).

    python bench/board.py [--athletes 100] [--seconds 30] [--sizes 12,30,100] [--view auto|tiles|roster] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sinks.board_feed import Served, served_board

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _descendants(root: int) -> list[int]:
    """The processes under ``root`` (Playwright's driver, Chromium and its helpers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class BrowserCpu:
    """CPU seconds of every process under this one, processes that ended included (as last seen)."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}

    def __call__(self) -> float:
        for pid in _descendants(os.getpid()):
            self.seen[pid] = max(self.seen.get(pid, 0.0), _proc_cpu(pid))
        return sum(self.seen.values())


def _thread_cpu(served: Served) -> float:
    """CPU seconds of the board's event-loop thread."""
    assert served.thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(served.thread.ident))


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run(athletes: int, seconds: float, warm: float, browser: Any, view: str = "auto",
        update_hz: float = 10.0) -> dict[str, Any]:
    with served_board(athletes, update_hz=update_hz) as served:
        sink = served.sink
        deadline = time.monotonic() + 60
        while served.call(lambda: len(sink.tiles)) < athletes and time.monotonic() < deadline:
            time.sleep(0.1)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        if view != "auto":  # as if the coach had pressed the view button once
            context.add_init_script(f"localStorage.setItem('poserun.board.view', '{view}')")
        page = context.new_page()
        page.goto(served.url)
        page.wait_for_function(f"document.querySelectorAll('[data-athlete]').length >= {athletes}", timeout=60_000)
        page.wait_for_timeout(warm * 1000)
        browser_cpu = BrowserCpu()
        page.evaluate("poserunBoard.take()")
        p0 = page.evaluate("({r: poserunBoard.renders, u: poserunBoard.updates})")
        s0 = served.call(lambda: (sink.bytes_sent, sink.updates_sent, sink.version, sink.coalesced,
                                  served.feed.cpu_s, served.feed.records))
        c0, b0, t0 = _thread_cpu(served), browser_cpu(), time.monotonic()
        load0 = os.getloadavg()[0]
        ages: list[float] = []
        latencies: list[float] = []
        while time.monotonic() - t0 < seconds:
            page.wait_for_timeout(1000)
            got = page.evaluate("poserunBoard.take()")
            ages += [a for a in got["ages"] if a is not None]
            latencies += [a for a in got["latencies"] if a is not None]
        got = page.evaluate("poserunBoard.take()")
        ages += [a for a in got["ages"] if a is not None]
        latencies += [a for a in got["latencies"] if a is not None]
        p1 = page.evaluate("({r: poserunBoard.renders, u: poserunBoard.updates, view: poserunBoard.view()})")
        s1 = served.call(lambda: (sink.bytes_sent, sink.updates_sent, sink.version, sink.coalesced,
                                  served.feed.cpu_s, served.feed.records))
        c1, b1, t1 = _thread_cpu(served), browser_cpu(), time.monotonic()
        load1 = os.getloadavg()[0]
        page.context.close()
    wall = t1 - t0
    feed_cpu = s1[4] - s0[4]
    return {
        "athletes": athletes, "view": p1["view"], "seconds": wall,
        "renders_per_s": (p1["r"] - p0["r"]) / wall, "updates_received_per_s": (p1["u"] - p0["u"]) / wall,
        "updates_sent_per_s": (s1[1] - s0[1]) / wall, "ticks_per_s": (s1[2] - s0[2]) / wall,
        "coalesced": s1[3] - s0[3], "records_per_s": (s1[5] - s0[5]) / wall,
        "age_p50": statistics.median(ages), "age_p99": _pct(ages, 0.99), "age_max": max(ages),
        "latency_p50": statistics.median(latencies), "latency_p99": _pct(latencies, 0.99),
        "latency_max": max(latencies),
        "kb_per_s": (s1[0] - s0[0]) / wall / 1000, "bytes_per_update": (s1[0] - s0[0]) / max(1, s1[1] - s0[1]),
        "server_cpu": (c1 - c0 - feed_cpu) / wall, "feed_cpu": feed_cpu / wall, "browser_cpu": (b1 - b0) / wall,
        "load": (load0, load1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--athletes", type=int, default=100)
    ap.add_argument("--sizes", help="several team sizes, one run each (e.g. 12,30,100); overrides --athletes")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured time per run")
    ap.add_argument("--warm", type=float, default=3.0, help="seconds before measuring")
    ap.add_argument("--view", choices=("auto", "tiles", "roster"), default="auto",
                    help="the board's view (auto: tiles below 20 athletes, a roster from 20)")
    ap.add_argument("--update-hz", type=float, default=10.0, help="the sink's update_hz (10 by default)")
    ap.add_argument("--markdown", action="store_true", help="also print the table rows for docs/benchmarks.md")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("bench/board.py needs Debian's chromium (apt-get install chromium)")
    import playwright.sync_api as playwright

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.athletes]
    results = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        for n in sizes:
            r = run(n, args.seconds, args.warm, browser, args.view, args.update_hz)
            results.append(r)
            print(f"{n} athletes ({r['view']}), {r['seconds']:.0f} s: {r['renders_per_s']:.2f} renders/s "
                  f"({r['updates_received_per_s']:.2f} updates/s received, {r['updates_sent_per_s']:.2f} sent, "
                  f"{r['ticks_per_s']:.2f} ticks/s, {r['coalesced']} coalesced); "
                  f"on-screen data age p50 {r['age_p50']:.3f} / p99 {r['age_p99']:.3f} / max {r['age_max']:.3f} s; "
                  f"record to screen p50 {r['latency_p50']:.3f} / p99 {r['latency_p99']:.3f} / "
                  f"max {r['latency_max']:.3f} s; {r['kb_per_s']:.1f} kB/s sent ({r['bytes_per_update']:.0f} B an "
                  f"update, {r['records_per_s']:.0f} records/s in); board CPU {r['server_cpu']:.3f} core "
                  f"(feed {r['feed_cpu']:.3f}), browser CPU {r['browser_cpu']:.2f} core; "
                  f"load {r['load'][0]:.2f} -> {r['load'][1]:.2f}", flush=True)
        browser.close()
    if args.markdown:
        print("\n| athletes | view | renders/s | on-screen data age p50 / p99 / max (s) | record to screen p50 / p99 / "
              "max (s) | sent (kB/s) | board CPU (core) | browser CPU (core) |")
        print("|---:|---|---:|---|---|---:|---:|---:|")
        for r in results:
            print(f"| {r['athletes']} | {r['view']} | {r['renders_per_s']:.2f} | {r['age_p50']:.2f} / "
                  f"{r['age_p99']:.2f} / {r['age_max']:.2f} | {r['latency_p50']:.3f} / {r['latency_p99']:.3f} / "
                  f"{r['latency_max']:.3f} | {r['kb_per_s']:.0f} | {r['server_cpu']:.3f} | {r['browser_cpu']:.2f} |")


if __name__ == "__main__":
    main()
