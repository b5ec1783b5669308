from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poserun.wire import frame as wf
from poserun.wire.errors import FrameError, Reason
from poserun.wire.streams import StreamKind

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def frames(draw: st.DrawFn) -> wf.Frame:
    kind = draw(st.sampled_from(list(StreamKind)))
    n = draw(st.integers(1, 12))
    c = draw(st.integers(1, 40))
    data = draw(hnp.arrays(np.float32, (n, c), elements=finite32))
    seq = draw(st.integers(0, 2**32 - 1))
    t0 = draw(st.integers(0, 2**62))
    if draw(st.booleans()):
        steps = draw(st.lists(st.integers(1, 10**9), min_size=n - 1, max_size=n - 1))
        ts = np.cumsum([t0, *steps]).astype(np.int64)
        return wf.make_frame(kind, seq, t0, data, timestamps_ns=ts)
    return wf.make_frame(kind, seq, t0, data, period_ns=draw(st.integers(1, 10**9)))


def same(a: wf.Frame, b: wf.Frame) -> None:
    assert (a.kind, a.seq, a.t0_ns, a.period_ns) == (b.kind, b.seq, b.t0_ns, b.period_ns)
    assert a.data.dtype == np.float32 and b.data.dtype == np.float32
    np.testing.assert_array_equal(a.data, b.data)
    if a.timestamps_ns is None:
        assert b.timestamps_ns is None
    else:
        assert b.timestamps_ns is not None
        np.testing.assert_array_equal(a.timestamps_ns, b.timestamps_ns)


@given(frames())
def test_binary_round_trip(fr: wf.Frame) -> None:
    payload = wf.encode(fr)
    same(fr, wf.decode(payload))
    assert payload == wf.pack(fr.kind, fr.seq, fr.t0_ns, fr.data, period_ns=fr.period_ns,
                              timestamps_ns=fr.timestamps_ns)


@given(frames())
def test_json_round_trip(fr: wf.Frame) -> None:
    same(fr, wf.decode(wf.encode_json(fr)))


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_frame_error(payload: bytes) -> None:
    try:
        wf.decode(payload)
    except FrameError as exc:
        assert isinstance(exc.reason, Reason)


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=200))
def test_arbitrary_bytes_after_a_valid_header(tail: bytes) -> None:
    head = wf.HEADER.pack(wf.MAGIC, 1, 1, 0, 0, 6, 0, 4, 0, 2_500_000)
    try:
        wf.decode(head + tail)
    except FrameError:
        pass


@settings(max_examples=300)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "kind", "seq", "t0_ns", "period_ns", "samples", "channels", "data",
                         "t_ns", "x"]), kids, max_size=8),
    max_leaves=20,
))
def test_arbitrary_json_only_raises_frame_error(obj: object) -> None:
    try:
        payload = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        wf.decode(payload)
    except FrameError:
        pass


def imu_frame(**kw: object) -> bytes:
    data = np.ones((4, 6), np.float32)
    return wf.encode(wf.make_frame(StreamKind.IMU, 1, 1000, data, period_ns=2_500_000, **kw))


def reason(payload: bytes, **kw: object) -> Reason:
    with pytest.raises(FrameError) as info:
        wf.decode(payload, **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_rejections_name_their_reason() -> None:
    good = imu_frame()
    assert reason(b"") is Reason.NOT_A_FRAME
    assert reason(b"hello") is Reason.NOT_A_FRAME
    assert reason(good[:20]) is Reason.TRUNCATED
    assert reason(good[:-1]) is Reason.TRUNCATED
    assert reason(good + b"\0\0\0\0") is Reason.COUNT_MISMATCH
    assert reason(good, max_bytes=64) is Reason.OVERSIZED
    assert reason(good[:2] + bytes([2]) + good[3:]) is Reason.UNKNOWN_VERSION
    assert reason(good[:3] + bytes([9]) + good[4:]) is Reason.UNKNOWN_STREAM
    assert reason(good[:4] + bytes([0x80]) + good[5:]) is Reason.BAD_FIELD
    nan = bytearray(good)
    nan[32:36] = struct.pack("<f", float("nan"))
    assert reason(bytes(nan)) is Reason.NON_FINITE
    inf = bytearray(good)
    inf[40:44] = struct.pack("<f", float("inf"))
    assert reason(bytes(inf)) is Reason.NON_FINITE
    zero_period = wf.HEADER.pack(wf.MAGIC, 1, 1, 0, 0, 1, 0, 1, 0, 0) + b"\0" * 4
    assert reason(zero_period) is Reason.BAD_FIELD
    huge = wf.HEADER.pack(wf.MAGIC, 1, 1, 0, 0, 6, 0, 2**32 - 1, 0, 1)
    assert reason(huge) is Reason.TRUNCATED


def test_timestamps_going_backwards_inside_a_frame() -> None:
    data = np.zeros((3, 1), np.float32)
    head = wf.HEADER.pack(wf.MAGIC, 1, 4, wf.FLAG_TIMESTAMPS, 0, 1, 0, 3, 100, 0)
    ts = np.array([100, 300, 200], np.int64).tobytes()
    assert reason(head + ts + data.tobytes()) is Reason.TIME_BACKWARDS
    with pytest.raises(FrameError):
        wf.make_frame(StreamKind.FORCE, 0, 100, data, timestamps_ns=np.array([100, 100, 200]))


def test_body_is_zero_copy_and_read_only() -> None:
    payload = imu_frame()
    fr = wf.decode(payload)
    assert not fr.data.flags.writeable
    assert fr.data.base is not None


def test_json_rejections() -> None:
    base = json.loads(wf.encode_json(wf.decode(imu_frame())))

    def bad(**changes: object) -> Reason:
        obj = {**base, **changes}
        return reason(json.dumps(obj).encode())

    assert bad(v=2) is Reason.UNKNOWN_VERSION
    assert bad(kind="sonar") is Reason.UNKNOWN_STREAM
    assert bad(samples=5) is Reason.COUNT_MISMATCH
    assert bad(channels=5) is Reason.COUNT_MISMATCH
    assert bad(seq="1") is Reason.BAD_FIELD
    assert bad(data=[[1e300] * 6] * 4) is Reason.NON_FINITE
    assert bad(data=[[True] * 6] * 4) is Reason.BAD_FIELD
    assert bad(t_ns=[1000, 2000, 3000, 4000]) is Reason.BAD_FIELD  # with period_ns as well
    assert reason(b'{"v": 1, "data": [[NaN]]') is Reason.BAD_JSON
    assert reason(b"[" * 100_000) is Reason.NOT_A_FRAME
    assert reason(b"{" + b"[" * 100_000) is Reason.BAD_JSON
    assert reason(b'{"v":1,"kind":"imu","seq":0,"t0_ns":0,"period_ns":1,"samples":1,'
                  b'"channels":1,"data":[[NaN]]}') is Reason.NON_FINITE


def test_json_with_per_sample_timestamps() -> None:
    obj = {"v": 1, "kind": "insole", "seq": 3, "t0_ns": 10, "t_ns": [10, 25], "samples": 2,
           "channels": 2, "data": [[1, 2], [3, 4.5]]}
    fr = wf.decode(json.dumps(obj).encode())
    assert fr.timestamps_ns is not None and fr.times_ns().tolist() == [10, 25]
    assert fr.last_ns == 25


@given(frames())
def test_fast_path_agrees_with_the_checked_path(fr: wf.Frame) -> None:
    payload = wf.encode(fr)
    same(wf.decode_binary(payload), wf._decode_binary_checked(payload))
    np.testing.assert_array_equal(wf.decode(payload).times_ns(), fr.times_ns())


@given(frames(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_non_finite_rejected_on_both_paths(fr: wf.Frame, bad: float, data: st.DataObject) -> None:
    arr = fr.data.copy()
    i = data.draw(st.integers(0, arr.shape[0] - 1))
    j = data.draw(st.integers(0, arr.shape[1] - 1))
    arr[i, j] = bad
    payload = wf.pack(fr.kind, fr.seq, fr.t0_ns, arr, period_ns=fr.period_ns, timestamps_ns=fr.timestamps_ns)
    for decoder in (wf.decode_binary, wf._decode_binary_checked):
        with pytest.raises(FrameError) as exc:
            decoder(payload)
        assert exc.value.reason is Reason.NON_FINITE
