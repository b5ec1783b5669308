from __future__ import annotations

import asyncio
import threading

import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.haptic_sim import Band, run_band
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.haptic import HapticConfig, HapticRules, HapticSink
from tests.conftest import CEILING, frames_taken, until, wait_until


def landing(athlete: str = "a", forced: bool = True, severity: float = 1.8) -> dict:
    return {"type": "landing", "athlete": athlete, "session": "s", "foot": "left", "ic_ns": 5,
            "forced_landing": forced, "forced_landing_severity": severity}


def test_rules_cooldown_and_rate_limit() -> None:
    rules = HapticRules(HapticConfig())
    assert rules.decide(landing(forced=False), 0.0) == []
    cmd = rules.decide(landing(), 0.0)
    assert len(cmd) == 1 and cmd[0]["reason"] == "forced_landing" and cmd[0]["ic_ns"] == 5
    assert cmd[0]["pattern"] == "double" and cmd[0]["severity"] == 1.8
    assert rules.decide(landing(), 1.0) == []  # cool-down (2 s)
    assert len(rules.decide(landing(), 2.5)) == 1
    assert len(rules.decide(landing("b"), 2.5)) == 1  # per athlete
    fast = HapticRules(HapticConfig.model_validate({"forced_landing": {"cooldown_s": 0}, "max_cues_per_10s": 3}))
    sent = [fast.decide(landing(), t) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 11.0)]
    assert [len(s) for s in sent] == [1, 1, 1, 0, 0, 1]
    assert fast.suppressed == 2


def test_other_rules_are_off_until_switched_on() -> None:
    stance = {"type": "stance", "athlete": "a", "session": "s", "foot": "right", "ic_ns": 9,
              "heel_contact": True, "overstride_ratio": 0.4, "cadence_spm": 150.0}
    assert HapticRules(HapticConfig()).decide(stance, 0.0) == []
    on = HapticConfig.model_validate({"heel_contact": {"enabled": True}, "overstride": {"enabled": True},
                                      "cadence": {"enabled": True, "low_spm": 170}})
    reasons = {c["reason"] for c in HapticRules(on).decide(stance, 0.0)}
    assert reasons == {"heel_contact", "overstride", "cadence"}
    with pytest.raises(ValueError):
        HapticConfig.model_validate({"forced_landing": {"pattern": "samba"}})


@pytest.mark.broker
def test_band_buzzes_for_forced_landers_only(broker: BrokerSettings, session_id: str) -> None:
    settings = load_settings(overrides={
        "broker": {"url": broker.url}, "session": {"id": session_id},
        "sim": {"athletes": 4, "profiles": ["pose", "forced_lander"], "forced_share": 0.6, "speed": 1.0}})
    ready, stop = threading.Event(), threading.Event()
    live = Band()
    band = threading.Thread(target=run_band, args=(broker,),
                            kwargs={"session": session_id, "stop": stop, "quiet": True, "ready": ready, "band": live})
    band.start()
    assert ready.wait(CEILING)

    async def main() -> HapticSink:
        sink = HapticSink(context={"broker": broker}, forced_landing={"cooldown_s": 0.0}, max_cues_per_10s=20)
        svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
        done, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(done, started))
        await asyncio.wait_for(started.wait(), CEILING)
        gw = await asyncio.to_thread(run_sim_gateway, settings, duration=8.0)
        await until(frames_taken(svc, gw.frames), "the service to take every frame")
        done.set()
        await task
        return sink

    sink = asyncio.run(main())
    wait_until(lambda: len(live.buzzes) >= sink.sent, "the band to receive every cue sent")
    stop.set()
    band.join(CEILING)
    buzzes = live.buzzes
    assert sink.sent == len(buzzes) > 3
    assert {b["athlete"] for b in buzzes} <= {"a02", "a04"}  # the forced landers, never the pose runners
    assert all(b["reason"] == "forced_landing" for b in buzzes)
    lat = live.latencies_ms
    assert len(lat) == len(buzzes) and all(x > 0 for x in lat)  # IC before the buzz; figures: bench/


@pytest.mark.broker
def test_metronome_ticks(broker: BrokerSettings, session_id: str) -> None:
    async def main() -> int:
        sink = HapticSink(context={"broker": broker}, metronome={"enabled": True, "cadence_spm": 600 / 2.5})
        await sink.start()
        await sink.write_batch([{"type": "stance", "athlete": "m1", "session": session_id, "foot": "left"}])
        await asyncio.sleep(1.0)
        await sink.close()
        return sink.sent

    assert 3 <= asyncio.run(main()) <= 5  # 4 beats a second
