"""The OpenGo line parser: a good line, every counted error, the field order option."""

from __future__ import annotations

import pytest

from poserun.services.moticon_parse import DEFAULT_FIELDS, OpenGoParser, parse_fields


def line(t: float, first: float = 0.1, n: int = 51) -> bytes:
    return " ".join([f"{t:.3f}", f"{first}", *["1.5"] * (n - 2)]).encode()


def test_good_line() -> None:
    p = OpenGoParser()
    s = p.feed(line(1.0))
    assert s is not None and s.time_s == 1.0 and set(s.sides) == {"left", "right"}
    assert s.sides["left"].imu[0] == pytest.approx(0.1) and len(s.sides["right"].pressure) == 16
    assert p.stats.samples == 1 and not p.stats.errors


def test_every_error_is_counted() -> None:
    p = OpenGoParser()
    assert p.feed(line(1.0, n=50)) is None
    assert p.feed(b"1.0 x " + b"1 " * 49) is None
    assert p.feed(line(1.0, first=float("nan"))) is None
    assert p.feed(line(1.0)) is not None
    assert p.feed(line(0.99)) is None  # late / out of order
    assert p.feed(b"\xff\xfe") is None
    assert dict(p.stats.errors) == {"wrong_count": 2, "non_numeric": 1, "non_finite": 1, "time_back": 1}


def test_gaps_and_resets() -> None:
    p = OpenGoParser(rate_hz=100)
    p.feed(line(1.00))
    s = p.feed(line(1.04))
    assert s is not None and s.gap == 3 and p.stats.gaps == 3
    s = p.feed(line(0.01))  # the app restarted
    assert s is not None and s.epoch == 1 and p.stats.resets == 1


def test_field_order() -> None:
    names = ["skip", *DEFAULT_FIELDS[1:], "time"]
    p = OpenGoParser(parse_fields(",".join(names)))
    s = p.feed(b"9 " + b"2 " * 50 + b"3.5")
    assert s is not None and s.time_s == 3.5
    with pytest.raises(ValueError):
        parse_fields("time,left.bogus")
    left_only = OpenGoParser(parse_fields(",".join(DEFAULT_FIELDS[:26])))
    s = left_only.feed(line(1.0, n=26))
    assert s is not None and set(s.sides) == {"left"}
