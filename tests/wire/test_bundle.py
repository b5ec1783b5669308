"""The bundle codec: several sources' frames in one message, and every way it can fail to add up."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from poserun.wire import bundle
from poserun.wire import frame as wf
from poserun.wire.errors import FrameError, Reason
from poserun.wire.streams import SOURCES, StreamKind

IMU = wf.pack(StreamKind.IMU, 7, 1_000_000, np.ones((4, 6), np.float32), period_ns=2_500_000)
INSOLE = wf.pack(StreamKind.INSOLE, 3, 1_000_000, np.ones((1, 16), np.float32), period_ns=10_000_000)


def test_pack_and_unpack() -> None:
    entries = [("imu_foot_left", IMU), ("insole_left", INSOLE), ("imu_foot_left", IMU)]
    payload = bundle.pack(entries)
    assert payload[:4] == b"PB\x01\x03" and bundle.is_bundle(payload) and not bundle.is_bundle(IMU)
    assert len(payload) == 4 + 3 * 5 + 2 * len(IMU) + len(INSOLE)
    assert bundle.unpack(payload) == entries
    assert bundle.unpack(bytearray(payload)) == entries and bundle.unpack(memoryview(payload)) == entries


def test_every_source_has_an_id_and_ids_are_the_protocols() -> None:
    assert set(bundle.SOURCE_ID) == set(SOURCES)
    # the numbering is part of the wire protocol (docs/protocol.md): never renumbered
    assert bundle.SOURCE_ID["imu_foot_left"] == 1 and bundle.SOURCE_ID["keypoints"] == 8
    assert bundle.SOURCE_ID["force_right"] == 10


def test_pack_refuses_what_no_bundle_holds() -> None:
    for entries in ([], [("imu_foot_left", IMU)] * 65, [("sonar", IMU)], [("bundle", IMU)]):
        with pytest.raises(ValueError):
            bundle.pack(entries)


def _entry(sid: int, body: bytes) -> bytes:
    return struct.pack("<BI", sid, len(body)) + body


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", Reason.BAD_BUNDLE),
    (b"PB\x01", Reason.BAD_BUNDLE),
    (b"PR\x01\x01" + _entry(1, IMU), Reason.BAD_BUNDLE),  # a frame, not a bundle
    (b"PB\x02\x01" + _entry(1, IMU), Reason.UNKNOWN_VERSION),
    (b"PB\x01\x00", Reason.BAD_BUNDLE),  # no entries
    (b"PB\x01\x41" + _entry(1, IMU) * 65, Reason.BAD_BUNDLE),  # 65 entries
    (b"PB\x01\x02" + _entry(1, IMU), Reason.BAD_BUNDLE),  # says 2, holds 1
    (b"PB\x01\x01" + _entry(0, IMU), Reason.BAD_BUNDLE),  # source id 0
    (b"PB\x01\x01" + _entry(11, IMU), Reason.BAD_BUNDLE),  # no such source
    (b"PB\x01\x01" + struct.pack("<BI", 1, 0), Reason.BAD_BUNDLE),  # an empty frame
    (b"PB\x01\x01" + struct.pack("<BI", 1, len(IMU) + 1) + IMU, Reason.BAD_BUNDLE),  # longer than what is left
    (b"PB\x01\x01" + _entry(1, IMU) + b"x", Reason.BAD_BUNDLE),  # bytes after the last entry
    (b"PB\x01\x01" + struct.pack("<BI", 1, 2**32 - 1), Reason.BAD_BUNDLE),
])
def test_a_bundle_that_does_not_add_up_is_refused_with_a_reason(payload: bytes, reason: Reason) -> None:
    with pytest.raises(FrameError) as exc:
        bundle.unpack(payload)
    assert exc.value.reason is reason


@given(st.binary(max_size=200))
def test_any_bytes_unpack_or_raise_frame_error(junk: bytes) -> None:
    for payload in (junk, b"PB\x01" + junk):
        try:
            entries = bundle.unpack(payload)
        except FrameError:
            continue
        assert 1 <= len(entries) <= bundle.MAX_ENTRIES
        assert bundle.pack(entries) == payload  # what unpacks packs back to the same bytes
