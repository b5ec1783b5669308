"""CoachActions: the board's act messages validated, counted when bad, published per athlete
on the real broker when good."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.coach_actions import MAX_ATHLETES, CoachActions
from poserun.wire import topics
from poserun.wire.coach import parse_coach
from tests.conftest import until

SESSIONS = {f"a{i}": "s1" for i in range(1, 121)}


def _act(**kw: Any) -> dict[str, Any]:
    return {"type": "act", **kw}


@pytest.mark.parametrize(("msg", "text"), [
    ("buzz", "JSON object"),
    ({"type": "hello", "action": "buzz", "athletes": ["a1"]}, "not an act"),
    (_act(action="explode", athletes=["a1"]), "unknown action"),
    (_act(action="buzz"), "non-empty list"),
    (_act(action="buzz", athletes=[]), "non-empty list"),
    (_act(action="buzz", athletes="a1"), "non-empty list"),
    (_act(action="buzz", athletes=[f"a{i}" for i in range(1, MAX_ATHLETES + 2)]), "at most 100"),
    (_act(action="buzz", athletes=["a1", "a/b"]), "invalid athlete id"),
    (_act(action="buzz", athletes=[7]), "invalid athlete id"),
    (_act(action="buzz", athletes=["zz9"]), "no session known for zz9"),
    (_act(action="buzz", athletes=["a1"], pattern="thunder"), "unknown pattern"),
    (_act(action="buzz", athletes=["a1"], label="x"), "unexpected field"),
    (_act(action="metronome", athletes=["a1"], on=True), "needs cadence_spm"),
    (_act(action="metronome", athletes=["a1"], on=True, cadence_spm=30), "outside 60-300"),
    (_act(action="metronome", athletes=["a1"], on=True, cadence_spm=1e9), "outside 60-300"),
    (_act(action="metronome", athletes=["a1"], on="on", cadence_spm=180), "on must be"),
    (_act(action="tag", athletes=["a1"], label="x" * 121), "at most 120"),
    (_act(action="tag", athletes=["a1"], label=""), "empty"),
    (_act(action="tag", athletes=["a1"], label=["x"]), "string"),
    (_act(action="rep", athletes=["a1"]), "on must be"),
    (_act(action="targets", athletes=["a1"], targets={"cadence_spm": [190, 170]}), "below"),
    (_act(action="targets", athletes=["a1"], targets={"forced_share": -0.1}), "outside 0-1"),
    (_act(action="buzz", athletes=["a1"], ref={"x": 1}), "ref must be"),
])
def test_bad_act_messages_are_refused_and_counted(msg: Any, text: str) -> None:
    actions = CoachActions(BrokerSettings())  # never started: nothing may be sent anyway
    reply = actions.handle(msg, SESSIONS)
    assert reply["type"] == "acted" and reply["ok"] is False and reply["sent"] == 0
    assert text in reply["error"], reply["error"]
    assert actions.bad == 1 and actions.sent == 0 and actions.conn.outbox == 0


def test_a_good_message_before_start_is_refused_not_lost_silently() -> None:
    actions = CoachActions(BrokerSettings())
    reply = actions.handle(_act(action="buzz", athletes=["a1"], ref=3), SESSIONS)
    assert reply == {"type": "acted", "ok": False, "error": reply["error"], "sent": 0, "ref": 3}
    assert "start" in reply["error"] and actions.bad == 1


def test_good_actions_reach_each_athletes_coach_topic(broker: BrokerSettings, session_id: str) -> None:
    got: list[tuple[str, bytes]] = []

    async def main() -> None:
        listener = MqttConnection(broker, "test-coach", subscriptions=[(topics.subscription(session_id, "coach"), 1)],
                                  on_message=lambda m, _ns: got.append((str(m.topic), m.payload)))
        await listener.start()
        actions = CoachActions(broker)
        await actions.start()
        sessions = {"a1": session_id, "a2": session_id, "a3": session_id}
        try:
            r = actions.handle(_act(action="buzz", athletes=["a1"], ref="click-1"), sessions)
            assert r["ok"] and r["sent"] == 1 and r["ref"] == "click-1" and r["athletes"] == ["a1"]
            r = actions.handle(_act(action="metronome", athletes=["a2", "a3", "a2"], on=True, cadence_spm=180),
                               sessions)
            assert r["ok"] and r["sent"] == 2  # a repeated id once
            r = actions.handle(_act(action="tag", athletes=["a3"], label="hill start"), sessions)
            assert r["ok"] and actions.handle(_act(action="tag", athletes=["a3"], label="x" * 200), sessions)["ok"] \
                is False
            await until(lambda: len(got) >= 4, "four coach messages")
            await asyncio.sleep(0.2)  # and no fifth
        finally:
            await actions.close()
            await listener.close()
        assert actions.sent == 4 and actions.bad == 1 and dict(actions.by_action) == {"buzz": 1, "metronome": 1,
                                                                                        "tag": 1}

    asyncio.run(main())
    by_topic = [(topics.parse(t).athlete, parse_coach(p)) for t, p in got]
    assert len(by_topic) == 4
    assert [(a, c.action) for a, c in by_topic] == [("a1", "buzz"), ("a2", "metronome"), ("a3", "metronome"),
                                                    ("a3", "tag")]
    assert all(c.by == "board" and c.t_ns > 0 for _a, c in by_topic)
    assert by_topic[1][1].cadence_spm == 180.0 and by_topic[1][1].on is True
    assert by_topic[3][1].label == "hill start"
