"""``poserun haptic-sim``: a virtual haptic band that subscribes like a real one, logs each buzz
and measures latency from the step's initial contact to the command's arrival.

IC times are on the gateway's clock; the gateway's retained status says when
that clock read zero on the wall clock (``wall_ns_at_clock_zero``, and its
rate), which puts each IC on this machine's wall clock. Bands on other
machines need synchronised clocks (NTP) for the same figure.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from poserun.services.mqtt import Incoming
from poserun.services.mqtt_stream import StreamSubscriber
from poserun.settings import BrokerSettings
from poserun.wire import topics
from poserun.wire.meta import GatewayStatus


@dataclass
class Band:
    """What the virtual bands received."""

    buzzes: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # IC to arrival
    transit_ms: list[float] = field(default_factory=list)  # poserun's send to arrival
    clocks: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (session, athlete)
    bad: int = 0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            s = sorted(values)
            return round(s[min(len(s) - 1, int(q * len(s)))], 2)

        lat = self.latencies_ms
        return {
            "buzzes": len(self.buzzes), "with_ic_latency": len(lat), "rejected": self.bad,
            "ic_to_band_ms": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": round(max(lat), 2) if lat else None,
                              "jitter_sd": round(statistics.pstdev(lat), 2) if len(lat) > 1 else None},
            "poserun_to_band_ms": {"p50": pct(self.transit_ms, 0.5), "p99": pct(self.transit_ms, 0.99)},
            "by_reason": {r: sum(1 for b in self.buzzes if b.get("reason") == r)
                          for r in sorted({b.get("reason") for b in self.buzzes if b.get("reason")})},
        }


def cue_line(athlete: str, cmd: dict[str, Any], lat_ms: float | None = None) -> str:
    """One received command as the terminal shows it: a technique cue, the coach's buzz, a metronome beat."""
    reason = str(cmd.get("reason", "?"))
    if reason == "metronome":
        cad = cmd.get("cadence_spm")
        rate = f"{cad:.0f} steps/min" if isinstance(cad, int | float) else ""
        return f"beat {athlete:<10} #{cmd.get('beat', '?'):<5} {rate} ({cmd.get('source', 'config')})"
    if reason == "coach":
        return (f"coach {athlete:<10} buzz from the board: {cmd.get('pattern', '?')}, "
                f"intensity {cmd.get('intensity', 0):.1f} {cmd.get('duration_ms', 0)} ms")
    return (f"buzz {athlete:<10} {reason:<15} {cmd.get('pattern', '?'):<7} "
            f"intensity {cmd.get('intensity', 0):.1f} {cmd.get('duration_ms', 0)} ms"
            + (f"  IC->band {lat_ms:.1f} ms" if lat_ms is not None else ""))


def run_band(broker: BrokerSettings, *, session: str | None = None, duration: float | None = None,
             stop: threading.Event | None = None, out: TextIO | None = None, quiet: bool = False,
             ready: threading.Event | None = None, band: Band | None = None) -> Band:
    """Listen for haptic commands until ``duration`` or ``stop``; fills ``band`` (a new one if
    None) as cues arrive, so a caller may watch it live, and returns it."""
    band = band if band is not None else Band()
    out = out or sys.stdout
    lock = threading.Lock()

    def on_message(m: Incoming) -> None:
        now = time.time_ns()
        try:
            t = topics.parse(m.topic)
            if t.channel == "status":
                st = GatewayStatus.model_validate_json(m.payload)
                if st.wall_ns_at_clock_zero is not None:
                    with lock:
                        for a in st.athletes:
                            band.clocks[(t.session, a)] = (st.wall_ns_at_clock_zero, st.clock_rate)
                return
            cmd = json.loads(m.payload)
            if not isinstance(cmd, dict):
                raise ValueError("not an object")
        except (ValueError, TypeError):
            band.bad += 1
            return
        with lock:
            band.buzzes.append(cmd)
            clock = band.clocks.get((t.session, t.athlete or ""))
            ic = cmd.get("ic_ns")
            lat = None
            if clock is not None and isinstance(ic, int):
                zero, rate = clock
                lat = (now - (zero + ic / rate)) / 1e6
                band.latencies_ms.append(lat)
            if isinstance(cmd.get("sent_ns"), int):
                band.transit_ms.append((now - cmd["sent_ns"]) / 1e6)
        if not quiet:
            out.write(cue_line(t.athlete or "?", cmd, lat) + "\n")
            out.flush()

    sub = StreamSubscriber(broker, [topics.subscription(session, "haptic"), topics.subscription(session, "status")],
                           qos=1, role="band", on_message=on_message)
    sub.start()
    if ready is not None:
        ready.set()
    start = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()):
            if duration is not None and time.monotonic() - start >= duration:
                break
            time.sleep(0.05)
    finally:
        sub.stop()
    return band
