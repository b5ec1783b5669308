"""Reliability figures for docs/reliability.md, measured on real mosquitto processes.

1. Broker restart: how long after mosquitto is back (listening) the haptic sink's connection is up
   again, and whether a cue made during the outage arrives (``--outage`` seconds down).
2. Half-open link: how long after a link freezes (no bytes, no FIN) the ingest notices and leaves
   it, for a keep-alive of ``--keepalive`` seconds.

    python bench/reliability.py [--trials 3] [--outage 3] [--keepalive 5] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poserun.services.mqtt_conn import MqttConnection
from poserun.services.mqtt_stream import LoopSubscriber
from poserun.settings import BrokerSettings
from poserun.sinks.haptic import HapticSink
from poserun.wire import mqtt as proto
from tests.faults.tools import Proxy, mosquitto


async def wait(pred, ceiling: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > ceiling:
            raise TimeoutError("the condition never came")
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def broker_restart(outage: float) -> tuple[float, bool]:
    with mosquitto() as m:
        got: list[bytes] = []

        def on_message(msg: proto.Message, _r: int) -> None:
            got.append(msg.payload)
        band = MqttConnection(BrokerSettings(url=m.url), "band", subscriptions=[("poserun/v1/s/+/haptic", 1)],
                              on_message=on_message, persistent=True)
        await band.start()
        sink = HapticSink(context={"broker": BrokerSettings(url=m.url)}, forced_landing={"cooldown_s": 0.0},
                          max_cues_per_10s=100, max_cue_age_s=outage + 30)
        await sink.start()
        m.stop(signal.SIGTERM)
        await wait(lambda: not sink.conn.connected)
        await sink.write_batch([{"type": "landing", "athlete": "a1", "session": "s", "foot": "left", "ic_ns": 1,
                                 "forced_landing": True, "forced_landing_severity": 2.0}])
        await asyncio.sleep(outage)
        m.start()  # returns once it listens
        back = await wait(lambda: sink.conn.connected)
        arrived = True
        try:
            await wait(lambda: len(got) == 1, 30.0)
        except TimeoutError:
            arrived = False
        await sink.close()
        await band.close()
        return back, arrived


async def half_open(keepalive: int) -> float:
    with mosquitto() as m:
        proxy = Proxy(m.port)
        await proxy.start()
        sub = LoopSubscriber(BrokerSettings(url=f"mqtt://127.0.0.1:{proxy.port}", keepalive_s=keepalive), ["d/#"],
                             lambda *_a: None)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(sub.run(stop, ready))
        await ready.wait()
        await asyncio.sleep(keepalive * 0.3)  # somewhere in a keep-alive period
        proxy.freeze()
        took = await wait(lambda: sub.conn.stats.timeouts >= 1, keepalive * 10.0)
        stop.set()
        await task
        await proxy.close()
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--outage", type=float, default=3.0)
    ap.add_argument("--keepalive", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    restarts = [asyncio.run(broker_restart(args.outage)) for _ in range(args.trials)]
    opens = [asyncio.run(half_open(args.keepalive)) for _ in range(args.trials)]
    out = {"broker_back_to_sink_up_s": [round(b, 3) for b, _ in restarts],
           "cue_made_during_outage_arrived": [a for _, a in restarts],
           "half_open_noticed_s": [round(x, 2) for x in opens], "keepalive_s": args.keepalive,
           "outage_s": args.outage}
    if args.markdown:
        print(f"| fault | trials | figure |\n|---|---:|---|\n"
              f"| broker down {args.outage:g} s (SIGTERM), back | {args.trials} | sink connected again "
              f"{min(out['broker_back_to_sink_up_s'])}-{max(out['broker_back_to_sink_up_s'])} s after mosquitto "
              f"listens; the cue made meanwhile arrived in {sum(out['cue_made_during_outage_arrived'])} of "
              f"{args.trials} |\n"
              f"| link frozen (no bytes, no FIN), keep-alive {args.keepalive} s | {args.trials} | noticed after "
              f"{min(opens):.1f}-{max(opens):.1f} s (median {statistics.median(opens):.1f}; "
              f"{statistics.median(opens) / args.keepalive:.2f} keep-alive periods) |")
    else:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
