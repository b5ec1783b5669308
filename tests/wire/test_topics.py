from __future__ import annotations

import pytest

from poserun.wire import topics
from poserun.wire.errors import TopicError


def test_build_and_parse() -> None:
    t = topics.parse(topics.data_topic("s1", "a01", "insole_left"))
    assert (t.session, t.athlete, t.channel, t.source) == ("s1", "a01", "data", "insole_left")
    assert str(t) == "poserun/v1/s1/a01/data/insole_left"
    t = topics.parse(topics.status_topic("s1", "gw-1"))
    assert (t.channel, t.gateway, t.athlete) == ("status", "gw-1", None)
    assert str(t) == "poserun/v1/s1/_gateway/gw-1/status"
    for ch in ("truth", "records", "haptic", "coach"):
        t = topics.parse(topics.athlete_topic("s1", "a01", ch))
        assert t.channel == ch and str(t) == topics.athlete_topic("s1", "a01", ch)


@pytest.mark.parametrize("bad", [
    "", "poserun", "other/v1/s/a/data/imu_pelvis", "poserun/v2/s/a/data/imu_pelvis",
    "poserun/v1/s/a/data/sonar", "poserun/v1/s/a/data", "poserun/v1/s/a/data/imu_pelvis/x",
    "poserun/v1/-s/a/data/imu_pelvis", "poserun/v1/s/a b/data/imu_pelvis", "poserun/v1/s/a/weird",
    "poserun/v1/s/_gateway/gw", "poserun/v1/s/_gateway/gw/online", "poserun/v1/s/a/truth/x",
    "poserun/v1/" + "s" * 65 + "/a/truth",
])
def test_invalid_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_ids_are_checked() -> None:
    assert topics.valid_id("a01") and topics.valid_id("Team_A.1-x")
    for bad in ("", "_x", "-x", "a/b", "a+b", "a#", "x" * 65):
        assert not topics.valid_id(bad)
        with pytest.raises(ValueError):
            topics.check_id(bad, "athlete")


def test_subscriptions() -> None:
    assert topics.subscription("s", "data") == "poserun/v1/s/+/data/+"
    assert topics.subscription(None, "status") == "poserun/v1/+/_gateway/+/status"
    assert topics.subscription("s", "records") == "poserun/v1/s/+/records"
    assert topics.session_filter("s") == "poserun/v1/s/#"
    assert topics.subscription("s", "coach") == "poserun/v1/s/+/coach"
    assert topics.athlete_subscription("s", "a1", "coach") == "poserun/v1/s/a1/coach"
    assert topics.athlete_subscription(None, "a1", "coach") == "poserun/v1/+/a1/coach"


def test_coach_topic() -> None:
    assert topics.coach_topic("s1", "a01") == "poserun/v1/s1/a01/coach"
    t = topics.parse("poserun/v1/s1/a01/coach")
    assert (t.session, t.athlete, t.channel, t.source) == ("s1", "a01", "coach", None)
    for bad in ("poserun/v1/s1/a01/coach/x", "poserun/v1/s1/_gateway/coach"):
        with pytest.raises(TopicError):
            topics.parse(bad)
