from __future__ import annotations

import asyncio
import sys
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.prometheus import PrometheusSink
from tests.conftest import CEILING, frames_taken, require, until


def scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def stance(athlete: str, support: float = 0.2) -> dict:
    return {"type": "stance", "athlete": athlete, "foot": "left", "support_time_s": support,
            "cadence_spm": 180.0, "pose_score": 77.5}


def test_athletes_who_left_are_removed() -> None:
    async def main() -> tuple[dict, dict, list[str]]:
        sink = PrometheusSink(port=0, stale_s=30.0)
        await sink.start()
        await sink.write_batch([stance("a"), stance("b"), {"type": "landing", "athlete": "a", "forced_landing": True}])
        before = scrape(sink.port)
        sink._seen["b"] -= 100  # b was last seen long ago
        gone = sink.expire()
        after = scrape(sink.port)
        await sink.close()
        return before, after, gone

    before, after, gone = asyncio.run(main())
    assert gone == ["b"]
    who = {s.labels["athlete"] for s in before["poserun_cadence_steps_per_minute"]}
    assert who == {"a", "b"}
    assert {s.labels["athlete"] for s in after["poserun_cadence_steps_per_minute"]} == {"a"}
    assert {s.labels["athlete"] for s in after["poserun_support_time_seconds"]} == {"a"}
    forced = [s for s in before["poserun_forced_landings"] if s.name.endswith("_total")]
    assert [(s.labels["athlete"], s.value) for s in forced] == [("a", 1.0)]


@pytest.mark.broker
def test_metrics_during_a_session(broker: BrokerSettings, session_id: str) -> None:
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id},
                                        "sim": {"athletes": 3, "speed": 3.0}})

    async def main() -> tuple[dict, int]:
        ctx: dict = {}
        sink = PrometheusSink(port=0, context=ctx)
        svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
        ctx["stats"] = svc.snapshot
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        gw = await asyncio.to_thread(run_sim_gateway, settings, duration=6.0)
        await until(frames_taken(svc, gw.frames), "the service to take every frame")
        metrics = await asyncio.to_thread(scrape, sink.port)
        stop.set()
        await task
        return metrics, gw.messages

    m, sent = asyncio.run(main())
    counts = [s for s in m["poserun_support_time_seconds"] if s.name.endswith("_count")]
    assert {s.labels["athlete"] for s in counts} == {"a01", "a02", "a03"}
    assert all(s.value > 5 for s in counts)
    assert {s.labels["kind"] for s in m["poserun_frames"]} == {"imu", "insole", "keypoints"}
    assert all(s.value > 0 for s in m["poserun_frames"] if s.name.endswith("_total"))
    lat = [s for s in m["poserun_processing_latency_seconds"] if s.name.endswith("_count")]
    assert lat and lat[0].value > 0
    assert [s.value for s in m["poserun_athletes"]] == [3.0]
    assert 100 < m["poserun_cadence_steps_per_minute"][0].value < 200
    frames = sum(s.value for s in m["poserun_frames"] if s.name.endswith("_total"))
    assert m["poserun_ingest_messages"][0].value >= sent > 0  # the bundles (meta and status arrive too)
    assert frames > sent  # (a bundle holds several frames)
    assert m["poserun_ingest_shed_messages"][0].value == 0


def test_a_real_prometheus_scrapes_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil
    import subprocess
    import time

    from poserun.services.broker import free_port

    exe = shutil.which("prometheus")
    require(exe is not None, "the prometheus binary is missing (Debian package 'prometheus'; .ci/run installs it)")
    assert exe is not None

    async def serve() -> None:
        sink = PrometheusSink(port=0, stale_s=600)
        await sink.start()
        await sink.write_batch([stance("p1", 0.19), stance("p1", 0.21), stance("p2", 0.25)])
        port = free_port()
        conf = tmp_path / "prometheus.yml"
        conf.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: poserun\n"
                        f"    static_configs: [{{targets: ['127.0.0.1:{sink.port}']}}]\n")
        proc = subprocess.Popen([exe, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + CEILING
            result: list = []
            url = f"http://127.0.0.1:{port}/api/v1/query?query=poserun_stances_total"
            while time.monotonic() < deadline and not result:
                await asyncio.sleep(0.5)
                try:
                    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
                    result = json.loads(body)["data"]["result"]
                except OSError:
                    continue
            assert {r["metric"]["athlete"]: float(r["value"][1]) for r in result} == {"p1": 2.0, "p2": 1.0}
        finally:
            proc.terminate()
            proc.wait(CEILING)
            await sink.close()

    asyncio.run(serve())


def test_processor_warnings_are_exported() -> None:
    from poserun.sinks.prometheus import _Pipeline

    fams = {f.name: f for f in _Pipeline(lambda: {"warnings": {"s/a01": {"imu_shank_left_accel_unit_implausible": 1,
                                                                          "pelvis_side_flip": 3}}}).collect()}
    got = {(s.labels["session"], s.labels["athlete"], s.labels["warning"]): s.value
           for s in fams["poserun_processor_warnings"].samples}
    assert got == {("s", "a01", "imu_shank_left_accel_unit_implausible"): 1, ("s", "a01", "pelvis_side_flip"): 3}


def test_what_sinks_keep_and_lose_through_faults_is_exported() -> None:
    from poserun.sinks.prometheus import _Pipeline

    snap = {"sinks": {
        "haptic": {"depth": 0, "dropped": 0, "outbox": 2, "mqtt_connected": False, "mqtt_reconnects": 3,
                   "mqtt_dropped_old": 5, "mqtt_dropped_full": 0, "mqtt_dropped_closed": 1},
        "store": {"depth": 4, "dropped": 0, "backlog": 120, "db_errors": 7, "backlog_dropped": 9},
    }}
    fams = {f.name: f for f in _Pipeline(lambda: snap).collect()}

    def samples(name: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels.values()): s.value for s in fams[name].samples}
    assert samples("poserun_sink_backlog") == {("haptic",): 2, ("store",): 120}
    assert samples("poserun_sink_connected") == {("haptic",): 0.0}
    assert samples("poserun_sink_reconnects") == {("haptic",): 3}
    assert samples("poserun_sink_lost_records") == {("haptic", "too_old"): 5, ("haptic", "outbox_full"): 0,
                                                    ("haptic", "at_close"): 1, ("store", "backlog_full"): 9}
    assert samples("poserun_sink_db_errors") == {("store",): 7}


def test_metrics_are_consistent_while_sources_come_and_go() -> None:
    """Scrapes over HTTP (prometheus-client's thread) while the loop adds athletes and the table
    evicts them: every scrape is HTTP 200 and parses (the counters are read on the loop)."""
    import numpy as np

    from poserun.wire import frame as wf
    from poserun.wire import meta as wm
    from poserun.wire import topics
    from poserun.wire.streams import StreamKind

    meta = wm.dump(wm.ForceMeta(source="force_left", rate_hz=100, side="left"))
    scrapes, codes = 100, []

    def scraper(port: int, stop: threading.Event) -> None:
        while len(codes) < scrapes and not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=CEILING) as resp:
                    families = list(text_string_to_metric_families(resp.read().decode()))
                codes.append(resp.status if any(f.name == "poserun_frames" for f in families) else -1)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)

    async def main() -> FusionService:
        ctx: dict = {}
        sink = PrometheusSink(port=0, context=ctx)
        svc = FusionService(load_settings(overrides={"processor": {"max_athletes": 40}}), [SinkRunner(sink)],
                            session="s", idle_s=1.0)
        ctx["stats"] = svc.snapshot
        for runner in svc.sinks:
            await runner.start()
        stop = threading.Event()
        task = asyncio.create_task(asyncio.to_thread(scraper, sink.port, stop))
        i = 0
        while not task.done():  # a new athlete per 25 ms of arrival time, each idle after 1 s: 40 at a time
            for _ in range(4):
                who, t = f"c{i}", 1_000_000_000 + i * 25_000_000
                svc.handle(topics.meta_topic("s", who, "force_left"), meta, t)
                frame = wf.encode(wf.make_frame(StreamKind.FORCE, 0, t, np.ones((2, 1)), period_ns=10_000_000))
                svc.handle(topics.data_topic("s", who, "force_left"), frame, t)
                i += 1
            await asyncio.sleep(0)
        stop.set()
        await task
        for runner in svc.sinks:
            await runner.close()
        return svc

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns every 10 us, not 5 ms: a race shows at once
    try:
        svc = asyncio.run(main())
    finally:
        sys.setswitchinterval(switch)
    assert codes == [200] * scrapes
    assert svc.table.evicted["unknown"] > 0 and len(svc.table.lanes["unknown"]) <= 40
