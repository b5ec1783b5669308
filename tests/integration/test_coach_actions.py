"""The coach acts from the board, end to end on the real broker: CoachActions -> the coach topic ->
the fusion service (coach records, in order) -> the haptic sink -> the virtual band; and the store.

A simulated team runs (the gateway simulator publishing live); the board's buzz reaches the
athlete's band as a ``coach`` cue, a metronome started for two athletes beats for those two only,
at about their cadence (counted against their own steps, not against time), and stops when
switched off; a tag lands in the session store."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.haptic_sim import Band, run_band
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.coach_actions import CoachActions
from poserun.sinks.haptic import HapticSink
from poserun.sinks.memory import ListSink
from poserun.sinks.store import Database, StoreSink
from tests.conftest import CEILING, until

pytestmark = pytest.mark.broker


def _beats(band: Band, athlete: str) -> list[dict[str, Any]]:
    return [b for b in list(band.buzzes) if b.get("reason") == "metronome" and b.get("athlete") == athlete]


def _coach_cues(band: Band, athlete: str) -> list[dict[str, Any]]:
    return [b for b in list(band.buzzes) if b.get("reason") == "coach" and b.get("athlete") == athlete]


def test_buzz_metronome_and_tag_from_the_board(broker: BrokerSettings, session_id: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = load_settings(overrides={
        "broker": {"url": broker.url}, "session": {"id": session_id},
        "sim": {"athletes": 3, "profiles": ["pose"], "speed": 1.0}})
    ready, stop = threading.Event(), threading.Event()
    band, out = Band(), io.StringIO()
    listener = threading.Thread(target=run_band, args=(broker,),
                                kwargs={"session": session_id, "stop": stop, "out": out, "ready": ready, "band": band})
    listener.start()
    assert ready.wait(CEILING)
    facts: dict[str, Any] = {}

    async def main() -> None:
        seen = ListSink()
        haptic = HapticSink(context={"broker": broker})
        store = StoreSink(url=url, journal=str(tmp_path / "store.journal"), context={"settings": settings})
        svc = FusionService(settings, [SinkRunner(seen), SinkRunner(haptic), SinkRunner(store)], session=session_id)
        done, started = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(done, started))
        await asyncio.wait_for(started.wait(), CEILING)
        gw_stop = threading.Event()
        gw = asyncio.create_task(asyncio.to_thread(run_sim_gateway, settings, stop=gw_stop))
        actions = CoachActions(broker)
        await actions.start()
        try:
            def sessions() -> dict[str, str]:  # what the board knows from the records it shows
                return {r["athlete"]: r["session"] for r in list(seen.records)}

            await until(lambda: {"a01", "a02", "a03"} <= set(sessions()), "records of all three athletes")
            reply = actions.handle({"type": "act", "action": "buzz", "athletes": ["a01"]}, sessions())
            assert reply["ok"] and reply["sent"] == 1, reply
            await until(lambda: _coach_cues(band, "a01"), "the coach's buzz on a01's band")

            def stances(athlete: str) -> int:
                return sum(1 for r in list(seen.records) if r["type"] == "stance" and r["athlete"] == athlete)

            steps0 = {a: stances(a) for a in ("a02", "a03")}
            reply = actions.handle({"type": "act", "action": "metronome", "athletes": ["a02", "a03"], "on": True,
                                    "cadence_spm": 180}, sessions())
            assert reply["ok"] and reply["sent"] == 2, reply
            await until(lambda: min(len(_beats(band, "a02")), len(_beats(band, "a03"))) >= 30,
                        "30 metronome beats on a02's and a03's bands")
            facts["beats_on"] = {a: max(b["beat"] for b in _beats(band, a)) for a in ("a02", "a03")}
            facts["steps_on"] = {a: stances(a) - steps0[a] for a in ("a02", "a03")}
            reply = actions.handle({"type": "act", "action": "metronome", "athletes": ["a02", "a03"], "on": False},
                                   sessions())
            assert reply["ok"], reply
            # a second buzz goes the same way after the off: once it is on the band, the off was acted on
            assert actions.handle({"type": "act", "action": "buzz", "athletes": ["a01"], "pattern": "long"},
                                  sessions())["ok"]
            await until(lambda: len(_coach_cues(band, "a01")) >= 2, "the second buzz on a01's band")
            facts["beats_at_off"] = {a: len(_beats(band, a)) for a in ("a02", "a03")}
            reply = actions.handle({"type": "act", "action": "tag", "athletes": ["a01"], "label": "hill start"},
                                   sessions())
            assert reply["ok"], reply
            await until(lambda: any(r["type"] == "coach" and r["action"] == "tag" for r in list(seen.records)),
                        "the tag as a coach record")
            await asyncio.sleep(1.0)  # four beat periods at 180/min: a beat that was not stopped would show
            facts["beats_later"] = {a: len(_beats(band, a)) for a in ("a02", "a03")}
            bad = actions.handle({"type": "act", "action": "metronome", "athletes": ["a02"], "on": True,
                                  "cadence_spm": 400}, sessions())
            assert not bad["ok"] and actions.bad == 1
        finally:
            await actions.close()
            gw_stop.set()
            await gw
            done.set()
            await task
        facts["coach_records"] = [r for r in seen.records if r["type"] == "coach"]

    asyncio.run(main())
    stop.set()
    listener.join(CEILING)
    assert not _beats(band, "a01")  # only the athletes it was started for
    for a in ("a02", "a03"):
        beats = _beats(band, a)
        assert {b["cadence_spm"] for b in beats} == {180.0} and {b["source"] for b in beats} == {"coach"}
        # about one beat per step at a cadence near 180 (the simulated runners' own): generous bounds
        assert 0.5 <= facts["beats_on"][a] / max(1, facts["steps_on"][a]) <= 2.0, facts
        assert facts["beats_later"][a] <= facts["beats_at_off"][a] + 1, facts  # stopped
    assert [c["pattern"] for c in _coach_cues(band, "a01")] == ["double", "long"]
    assert "coach a01" in out.getvalue() and "beat a02" in out.getvalue()
    per_athlete = {a: [(r["action"], r.get("on")) for r in facts["coach_records"] if r["athlete"] == a]
                   for a in ("a01", "a02", "a03")}  # (in order per athlete; athletes may interleave)
    assert per_athlete == {"a01": [("buzz", None), ("buzz", None), ("tag", None)],
                           "a02": [("metronome", True), ("metronome", False)],
                           "a03": [("metronome", True), ("metronome", False)]}
    db = Database(url)
    try:
        stored = db.records(session_id, types=("coach",))
        assert [(r["athlete"], r["action"]) for r in stored if r["athlete"] == "a01"] == [
            ("a01", "buzz"), ("a01", "buzz"), ("a01", "tag")]
        assert next(r for r in stored if r["action"] == "tag")["label"] == "hill start"
        assert len(stored) == 7
    finally:
        db.close()
