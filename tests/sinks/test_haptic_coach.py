"""The haptic sink acts on the board's coach records: a buzz per click (its own cap), and
metronomes per athlete, each at its own cadence."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.haptic import HapticConfig, HapticRules, HapticSink
from poserun.wire import topics
from tests.conftest import until


def _coach(athlete: str, action: str, **kw: Any) -> dict[str, Any]:
    return {"type": "coach", "athlete": athlete, "session": "s", "action": action, "t_ns": 7, "by": "board",
            "emitted_ns": 8, "id": "x", **kw}


def test_a_coach_buzz_ignores_the_rules_cooldowns_but_has_a_cap() -> None:
    rules = HapticRules(HapticConfig.model_validate({"max_cues_per_10s": 1, "coach": {"max_per_10s": 3}}))
    cmds = [c for i in range(5) for c in rules.decide(_coach("a1", "buzz", pattern="long"), 0.01 * i)]
    assert len(cmds) == 3 and rules.suppressed == 2
    assert all(c["reason"] == "coach" and c["pattern"] == "long" and c["t_ns"] == 7 for c in cmds)
    assert rules.decide(_coach("a2", "buzz"), 0.1)[0]["pattern"] == "double"  # the config's, per athlete cap
    assert len(rules.decide(_coach("a1", "buzz"), 10.5)) == 1  # the window moved on
    assert rules.decide(_coach("a1", "tag", label="x"), 11.0) == []


def test_metronomes_per_athlete_from_the_board(broker: BrokerSettings, session_id: str) -> None:
    got: list[dict[str, Any]] = []

    async def main() -> tuple[dict, dict]:
        listener = MqttConnection(broker, "test-band", subscriptions=[(topics.subscription(session_id, "haptic"), 1)],
                                  on_message=lambda m, _ns: got.append(json.loads(m.payload)))
        await listener.start()
        sink = HapticSink(context={"broker": broker})
        await sink.start()
        rec = {"session": session_id}
        await sink.write_batch([{**_coach("m1", "metronome", on=True, cadence_spm=240.0), **rec},
                                {**_coach("m2", "metronome", on=True, cadence_spm=120.0), **rec}])
        await until(lambda: sum(1 for g in got if g["athlete"] == "m1") >= 8, "8 beats for m1")
        running = sink.metronomes()
        await sink.write_batch([{**_coach("m1", "metronome", on=False), **rec}])
        after = sink.metronomes()
        m1_stop = sum(1 for g in got if g["athlete"] == "m1")
        await until(lambda: sum(1 for g in got if g["athlete"] == "m2") >= m1_stop // 2 + 4, "m2 going on")
        await sink.close()
        await listener.close()
        return running, after | {"m1_stop": m1_stop}

    running, after = asyncio.run(main())
    assert set(running) == {"m1", "m2"} and running["m1"]["source"] == "coach"
    assert set(after) == {"m2", "m1_stop"}
    m1 = [g for g in got if g["athlete"] == "m1"]
    m2 = [g for g in got if g["athlete"] == "m2"]
    assert all(g["reason"] == "metronome" and g["pattern"] == "tick" for g in got)
    assert {g["cadence_spm"] for g in m1} == {240.0} and {g["cadence_spm"] for g in m2} == {120.0}
    assert len(m1) <= after["m1_stop"] + 1  # stopped (one beat may have been on its way)
    assert [g["beat"] for g in m1] == list(range(1, len(m1) + 1))
    # the rates: m2 at half m1's cadence, by the beats' numbers while both ran (generous bounds)
    last_m1 = max(i for i, g in enumerate(got) if g["athlete"] == "m1")
    m2_then = max(g["beat"] for g in got[:last_m1] if g["athlete"] == "m2")
    assert 0.3 * len(m1) <= m2_then <= 0.7 * len(m1) + 2
