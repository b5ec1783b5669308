from __future__ import annotations

import json

import pytest

from poserun.wire import meta as wm
from poserun.wire.errors import Reason, WireError


def test_defaults_and_channels() -> None:
    imu = wm.parse_meta(b'{"kind":"imu","source":"imu_foot_left","rate_hz":400,"placement":"foot"}')
    assert isinstance(imu, wm.ImuMeta) and len(imu.channels) == 6
    kp = wm.parse_meta(b'{"kind":"keypoints","source":"keypoints","rate_hz":60,"schema":"mediapipe33"}')
    assert isinstance(kp, wm.KeypointMeta) and len(kp.channels) == 33 * 3


def test_dump_round_trip() -> None:
    m = wm.InsoleMeta(source="insole_left", rate_hz=100, side="left", cell_regions=["heel", "ball"],
                      cell_positions=[(0.1, 0.0), (0.7, 0.0)])
    assert wm.parse_meta(wm.dump(m)) == m
    k = wm.KeypointMeta(source="keypoints", rate_hz=60, schema="coco17")
    assert json.loads(wm.dump(k))["schema"] == "coco17"
    assert wm.parse_meta(wm.dump(k)) == k


@pytest.mark.parametrize("obj", [
    {"kind": "imu", "source": "imu_foot_left", "rate_hz": 0, "placement": "foot"},
    {"kind": "imu", "source": "imu_foot_left", "rate_hz": 400, "placement": "wrist"},
    {"kind": "imu", "source": "imu_foot_left", "rate_hz": 400, "placement": "foot",
     "axes": {"x": "up", "y": "down", "z": "left"}},
    {"kind": "imu", "source": "imu_foot_left", "rate_hz": 400, "placement": "foot", "channels": ["a", "b"]},
    {"kind": "insole", "source": "insole_left", "rate_hz": 100, "side": "left",
     "cell_regions": ["heel"], "cell_positions": []},
    {"kind": "insole", "source": "insole_left", "rate_hz": 100, "side": "left", "unit": "kPa",
     "cell_regions": ["heel"], "cell_positions": [[0.1, 0]]},
    {"kind": "keypoints", "source": "keypoints", "rate_hz": 60, "schema": "markers"},
    {"kind": "keypoints", "source": "keypoints", "rate_hz": 60, "schema": "coco17", "names": ["a"]},
    {"kind": "sonar", "source": "x", "rate_hz": 1},
    {"kind": "force", "source": "force_left", "rate_hz": 1000, "extra": 1},
])
def test_invalid_meta(obj: dict[str, object]) -> None:
    with pytest.raises(WireError) as info:
        wm.parse_meta(json.dumps(obj).encode())
    assert info.value.reason is Reason.BAD_META


def test_garbage_meta() -> None:
    for payload in (b"", b"\xff\xfe", b"[1,2]", b"{"):
        with pytest.raises(WireError):
            wm.parse_meta(payload)
