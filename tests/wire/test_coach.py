from __future__ import annotations

import json

import pytest

from poserun.wire.coach import CoachCommand, check_targets, encode_coach, parse_coach
from poserun.wire.errors import CoachError, Reason, WireError

T = 1_764_000_000_000_000_000


def _msg(**kw: object) -> bytes:
    return json.dumps({"v": 1, "t_ns": T, "by": "board", **kw}).encode()


def test_each_action_parses() -> None:
    assert parse_coach(_msg(action="buzz")) == CoachCommand("buzz", T)
    assert parse_coach(_msg(action="buzz", pattern="long")).pattern == "long"
    m = parse_coach(_msg(action="metronome", on=True, cadence_spm=180))
    assert (m.on, m.cadence_spm) == (True, 180.0)
    assert parse_coach(_msg(action="metronome", on=False)).on is False
    assert parse_coach(_msg(action="tag", label="  hill start ")).label == "hill start"
    assert parse_coach(_msg(action="rep", on=True)).on is True
    tg = parse_coach(_msg(action="targets", targets={"cadence_spm": [170, 190], "forced_share": 0.1}))
    assert tg.targets == {"cadence_spm": [170.0, 190.0], "support_time_s": None, "forced_share": 0.1}


@pytest.mark.parametrize("cmd", [
    CoachCommand("buzz", T, pattern="double"), CoachCommand("metronome", T, on=True, cadence_spm=172.5),
    CoachCommand("tag", T, label="ünïcode ok"), CoachCommand("rep", T, on=False),
    CoachCommand("targets", T, targets={"cadence_spm": [175.0, 185.0], "support_time_s": 0.22,
                                        "forced_share": None}),
])
def test_round_trip(cmd: CoachCommand) -> None:
    assert parse_coach(encode_coach(cmd)) == cmd


@pytest.mark.parametrize(("payload", "text"), [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b"\xff\xfe", "not JSON"),
    (_msg(action="buzz", pattern="x" * 5000), "at most 4096"),
    (json.dumps({"v": 2, "action": "buzz", "t_ns": T}).encode(), "version"),
    (_msg(action="explode"), "unknown action"),
    (_msg(action="buzz", label="x"), "unexpected field"),
    (json.dumps({"v": 1, "action": "buzz"}).encode(), "t_ns"),
    (json.dumps({"v": 1, "action": "buzz", "t_ns": True}).encode(), "t_ns"),
    (json.dumps({"v": 1, "action": "buzz", "t_ns": -5}).encode(), "t_ns"),
    (_msg(action="buzz", pattern="thunder"), "unknown pattern"),
    (_msg(action="metronome", on="yes", cadence_spm=180), "on must be"),
    (_msg(action="metronome", on=True), "needs cadence_spm"),
    (_msg(action="metronome", on=True, cadence_spm=59.9), "outside 60-300"),
    (_msg(action="metronome", on=True, cadence_spm=301), "outside 60-300"),
    (b'{"v":1,"action":"metronome","t_ns":1,"on":true,"cadence_spm":NaN}', "finite"),
    (_msg(action="metronome", on=True, cadence_spm="180"), "finite"),
    (_msg(action="tag"), "string"),
    (_msg(action="tag", label="   "), "empty"),
    (_msg(action="tag", label="x" * 121), "at most 120"),
    (_msg(action="tag", label="a\nb"), "control"),
    (_msg(action="rep"), "on must be"),
    (_msg(action="targets", targets=[1]), "object"),
    (_msg(action="targets", targets={"speed": 3}), "unknown target"),
    (_msg(action="targets", targets={"cadence_spm": [190, 170]}), "below"),
    (_msg(action="targets", targets={"cadence_spm": [170]}), "[low, high]"),
    (_msg(action="targets", targets={"forced_share": 1.5}), "outside 0-1"),
    (_msg(action="targets", targets={"support_time_s": 0}), "outside"),
    (_msg(action="buzz", by=""), "by must be"),
])
def test_bad_messages_are_refused_with_a_reason(payload: bytes, text: str) -> None:
    with pytest.raises(CoachError) as exc:
        parse_coach(payload)
    assert isinstance(exc.value, WireError) and exc.value.reason is Reason.BAD_COACH
    assert text in str(exc.value)


def test_encode_refuses_what_would_not_parse() -> None:
    with pytest.raises(CoachError):
        encode_coach(CoachCommand("tag", T, label=""))
    with pytest.raises(CoachError):
        check_targets({"cadence_spm": [100, 400]})
