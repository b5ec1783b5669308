"""Floods through a real mosquitto: expensive frames from one source, junk topics by the 100 000.

The figures asserted are generous bounds for a shared 2-core machine; the measured ones are in
docs/reliability.md with the command that made them.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from poserun.services.fusion import FusionService
from poserun.services.mqtt_publisher import Publisher
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, SimSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.memory import ListSink
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.mqtt import encode_publish
from poserun.wire.streams import StreamKind
from tests.conftest import CEILING, until, wait_until
from tests.faults.tools import good_gateway, mosquitto


def heavy_gateway(broker: BrokerSettings, session: str, stop: threading.Event, frame_kib: int,
                  per_s: float) -> int:
    """A forged source of a configured athlete: valid meta (400 Hz, 6 channels), then JSON frames of
    about ``frame_kib`` KiB, ``per_s`` a second (each a second of samples: 100x real time)."""
    pub = Publisher(broker, "heavy")
    pub.connect()
    meta = wm.ImuMeta(source="imu_foot_left", rate_hz=400, placement="foot", side="left")
    pub.publish(topics.meta_topic(session, "heavy", "imu_foot_left"), wm.dump(meta), qos=1)
    pub.flush()
    rng = np.random.default_rng(1)
    samples = max(1, frame_kib * 1024 // 120)  # about 20 bytes a value, 6 values a sample
    data = rng.normal(0, 5, (samples, 6)).astype(np.float32)
    topic = topics.data_topic(session, "heavy", "imu_foot_left")
    n, start = 0, time.monotonic()
    while not stop.is_set():
        f = wf.make_frame(StreamKind.IMU, n, 1_000_000_000 * n, data, period_ns=1_000_000_000 // samples)
        pub.publish(topic, wf.encode_json(f))
        n += 1
        pub.sleep(max(0.0, start + n / per_s - time.monotonic()), stop)
    pub.close()
    return n


def latencies(svc: FusionService, good: str, sent: dict[tuple[str, int], int],
              order: list[tuple[bool, int, int]] | None = None) -> list[float]:
    """Wrap ``svc.handle``: for each frame of the good athlete that completed records, the seconds
    from its publication to their emission (end to end: broker, socket, queue, decode, processor).
    ``order`` gets, per message handled: (the good athlete's?, arrival at the socket, when handled)."""
    out: list[float] = []
    handle: Callable[..., Any] = svc.handle

    def timed(topic: str, payload: bytes, recv_ns: int | None = None) -> list[Any]:
        recs = handle(topic, payload, recv_ns)
        if order is not None and recv_ns is not None:
            order.append((f"/{good}/" in topic, recv_ns, time.time_ns()))
        if recs and f"/{good}/" in topic:
            t = sent.get((topic, int.from_bytes(payload[8:12], "little")))
            if t is not None:
                out.append((time.time_ns() - t) / 1e9)
        return recs

    svc.handle = timed  # type: ignore[method-assign]
    return out


def waited_behind(order: list[tuple[bool, int, int]]) -> int:
    """The most messages of others handled while one of the good athlete's frames waited (from its
    arrival at the socket to its handling): a count of the queue's order, whatever the machine's speed."""
    worst = 0
    for k, (is_good, arrived, _handled) in enumerate(order):
        if is_good:
            n = 0
            for j in range(k - 1, -1, -1):
                other, _a, handled = order[j]
                if handled < arrived:
                    break
                n += not other
            worst = max(worst, n)
    return worst


def run_flood(frame_kib: int, per_s: float,
              seconds: float = 8.0) -> tuple[list[float], dict[str, Any], int, int]:
    with mosquitto() as m:
        broker = BrokerSettings(url=m.url)
        session = "flood"
        team = SimTeam(session, SimSettings(athletes=1, seed=4, bundle=False))  # (frames keyed by sequence)
        good = team.specs[0].athlete_id
        settings = load_settings(overrides={
            "broker": {"url": m.url}, "athletes": [{"id": good}, {"id": "heavy"}],
            "processor": {"accept_unknown_athletes": False}})
        sink = ListSink()
        svc = FusionService(settings, [SinkRunner(sink)], session=session)
        sent: dict[tuple[str, int], int] = {}
        order: list[tuple[bool, int, int]] = []
        lat = latencies(svc, good, sent, order)
        stop = threading.Event()
        heavy_sent = [0]

        async def main() -> None:
            halt, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(halt, ready))
            await asyncio.wait_for(ready.wait(), CEILING)
            g = asyncio.create_task(asyncio.to_thread(good_gateway, broker, session, stop, sent, team))
            await until(lambda: len(lat) >= 10, "the good athlete's first records")
            if per_s:
                h = asyncio.create_task(asyncio.to_thread(heavy_gateway, broker, session, stop, frame_kib, per_s))
            lat.clear()
            await asyncio.sleep(seconds)  # the flood's length (the figures are measured over it)
            stop.set()
            await g
            if per_s:
                heavy_sent[0] = await h
            halt.set()
            await task

        asyncio.run(main())
        return lat, svc.snapshot(), heavy_sent[0], waited_behind(order)


@pytest.mark.parametrize(("frame_kib", "per_s"), [(0, 0), (256, 20), (60, 100)],
                         ids=["no-flood", "256KiB-frames-20-per-s", "60KiB-frames-100-per-s"])
def test_an_expensive_frame_flood_does_not_delay_another_athletes_records(frame_kib: int, per_s: float) -> None:
    lat, snap, heavy, behind = run_flood(frame_kib, per_s)
    lat.sort()
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    heavy_src = snap["sources"].get("flood/heavy/imu_foot_left", {})
    print(f"\nflood {frame_kib} KiB x {per_s}/s: good athlete {len(lat)} record batches, p50 {p50 * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms; heavy sent {heavy}, taken "
          f"{heavy_src.get('frames', 0)}, refused {heavy_src.get('rejected', {})}; ingest {snap['ingest']}; "
          f"at most {behind} of the flood's messages handled while a good frame waited")
    assert len(lat) > 20
    # fair whatever the machine's load (CI may be busy: no wall-clock bound here; the latencies
    # above are the figures in docs/reliability.md): a waiting frame of the good athlete lets at
    # most a few of the flood's through, one lane turn each (16 KiB: a 60 KiB frame every 4 turns)
    assert behind <= 3
    refused = sum(heavy_src.get("rejected", {}).values())
    if frame_kib > 70:  # over the largest JSON frame its meta allows (69 KB): refused before decoding
        assert refused == heavy and heavy_src.get("frames", 0) == 0
    elif per_s:  # within it: taken (its own lane), or shed from that lane if the service falls behind; counted
        accounted = heavy_src.get("frames", 0) + refused + snap["ingest"]["overflow"]
        assert accounted >= 0.95 * heavy


#: Junk topics in the flood, and how far the service's memory may grow through it (issue 11).
JUNK_TOPICS = 100_000
RSS_BOUND_MIB = 50.0


def junk_flood(broker: BrokerSettings, session: str, n: int) -> int:
    """``n`` junk topics: made-up athletes with valid-looking ids, each a valid frame on its data
    topic, one in four also valid meta first (not retained); returns the messages sent."""
    pub = Publisher(broker, "junk")
    pub.connect()
    meta = wm.dump(wm.ImuMeta(source="imu_foot_left", rate_hz=400, placement="foot", side="left"))
    frame = wf.encode(wf.make_frame(StreamKind.IMU, 0, 0, np.ones((4, 6)), period_ns=2_500_000))
    sent = 0
    for k in range(0, n, 1000):
        packets = []
        for i in range(k, min(n, k + 1000)):
            who = f"z{i:06d}"
            if i % 4 == 0:
                packets.append(encode_publish(topics.meta_topic(session, who, "imu_foot_left"), meta))
            packets.append(encode_publish(topics.data_topic(session, who, "imu_foot_left"), frame))
        pub.send_packets(packets)
        pub.pump()
        sent += len(packets)
    pub.flush()
    pub.close()
    return sent


def records_in(path: Any) -> int:
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


@pytest.mark.parametrize("accept", [False, True], ids=["unknown-refused", "unknown-accepted"])
def test_a_junk_topic_flood_leaves_memory_bounded_and_the_team_served(tmp_path: Any, accept: bool) -> None:
    """``poserun process`` (a subprocess) with one configured athlete streaming; 10^5 junk topics
    through the broker; its RSS after the flood is within 50 MB of before, and records go on."""
    from tests.faults.tools import Service, rss_mib

    with mosquitto() as m:
        broker = BrokerSettings(url=m.url)
        session = "junk"
        team = SimTeam(session, SimSettings(athletes=1, seed=4, bundle=False))  # (frames keyed by sequence)
        good = team.specs[0].athlete_id
        out = tmp_path / "records.jsonl"
        config = tmp_path / "poserun.yaml"
        config.write_text(
            f"broker: {{url: '{m.url}'}}\nsession: {{id: {session}}}\nathletes: [{{id: {good}}}]\n"
            # (the backlog cap at 8 MiB: with strangers accepted, what the flood may hold is the
            # strangers' state, max_athletes x ~18 KiB, plus that cap; the 50 MB bound is for both)
            f"processor: {{accept_unknown_athletes: {str(accept).lower()}, ingest_backlog_mib: 8}}\n"
            f"sinks: [{{type: jsonl, options: {{path: '{out}'}}}}]\n")
        svc = Service(config, tmp_path)
        svc.start()
        stop = threading.Event()
        sent: dict[tuple[str, int], int] = {}
        gw = threading.Thread(target=good_gateway, args=(broker, session, stop, sent, team), daemon=True)
        gw.start()
        try:
            wait_until(lambda: records_in(out) >= 20, "the configured athlete's first records")
            wait_until(lambda: svc.stats().get("ingest", {}).get("received", 0) > 0, "a stats file")
            before = rss_mib(svc.pid)
            received = svc.stats()["ingest"]["received"]
            t0 = time.monotonic()
            n = junk_flood(broker, session, JUNK_TOPICS)
            wait_until(lambda: svc.stats().get("ingest", {}).get("received", 0) >= received + n,
                       "the service to receive the flood")
            flood_s = time.monotonic() - t0
            after_flood = records_in(out)
            wait_until(lambda: records_in(out) >= after_flood + 20, "the configured athlete's records after it")
            after = rss_mib(svc.pid)
            snap = svc.stats()
        finally:
            stop.set()
            gw.join(CEILING)
            svc.stop()
        print(f"\njunk flood (accept_unknown_athletes {accept}): {n} messages in {flood_s:.1f} s; RSS {before:.0f} -> "
              f"{after:.0f} MiB; tables {snap['tables']}; rejected {snap['rejected']}; ingest {snap['ingest']}")
        assert after - before < RSS_BOUND_MIB
        tables = snap["tables"]
        assert all(tables["size"][lane] <= tables["cap"][lane] for lane in tables["size"])
        if accept:
            assert snap["rejected"].get("too_many_athletes", 0) > 0
        else:
            assert snap["rejected"].get("unknown_athlete", 0) >= JUNK_TOPICS
            assert tables["size"]["unknown"] == tables["size"]["stray"] == 0
