"""The camera pipeline without pixels: a scripted pose model, so each rule is checked on its own."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

import numpy as np
import pytest

from poserun.services.camera_pose import BlazePose, Pose, Roi
from poserun.services.camera_tracks import ANKLE_OF_LEG, CALIBRATION_FRAMES, Region
from poserun.services.gateway_camera import CameraOptions, CameraStats, KeypointPipeline, frames
from poserun.wire import frame as wf
from poserun.wire import meta as wm

W, H = 1280, 720
IMAGE = np.zeros((H, W, 3), np.uint8)


def standing(x: float, facing: float = -1.0, visible: float = 0.9) -> Pose:
    """A person at hip x: thigh and shank 100 px each, toes ``facing`` (-1: to -x)."""
    xy = np.zeros((33, 2))
    xy[:, 0], xy[:, 1] = x, 300.0
    for side in (0, 1):
        xy[23 + side] = (x, 400)
        xy[25 + side] = (x, 500)
        xy[27 + side] = (x, 600)
        xy[29 + side] = (x - 10 * facing, 610)
        xy[31 + side] = (x + 30 * facing, 615)
    return Pose(xy, np.full(33, visible), 0.99, Roi(x, 400, 400, 0.0))


class Model:
    """People at the given hips; the landmark model raises on its ``broken`` calls (a corrupt image)."""

    def __init__(self, people: list[float], facing: float = -1.0, broken: tuple[int, ...] = ()) -> None:
        self.people, self.facing, self.broken, self.calls = people, facing, broken, 0

    def detect(self, rgb: np.ndarray) -> list[Roi]:
        return [Roi(x, 400, 400, 0.0) for x in self.people]

    def landmarks(self, rgb: np.ndarray, roi: Roi) -> Pose | None:
        self.calls += 1
        if self.calls in self.broken:
            raise ValueError("a corrupt image")
        near = [x for x in self.people if abs(x - roi.cx) < roi.size / 2]
        return standing(near[0], self.facing) if near else None


def pipeline(model: Model, **kw: Any) -> KeypointPipeline:
    options = CameraOptions(kw.pop("regions", {"ada": Region()}), {"ada": 0.9}, **kw)
    return KeypointPipeline("s1", options, 50.0, 0, 0, model=cast(BlazePose, model))


def feed(p: KeypointPipeline, n: int, start: int = 0) -> list[tuple[str, bytes, bool]]:
    out = []
    for k in range(start, start + n):
        out += p.feed(k * 20_000_000, IMAGE)
    return out


def test_the_leg_scale_and_the_view_come_before_any_frame() -> None:
    p = pipeline(Model([600.0]))
    assert feed(p, CALIBRATION_FRAMES - 1) == []  # held: no meta yet
    out = feed(p, 1, CALIBRATION_FRAMES - 1)
    topics_ = [t for t, _, _ in out]
    assert topics_[0] == "poserun/v1/s1/ada/meta/keypoints" and out[0][2]  # retained, first
    assert topics_[1:] == ["poserun/v1/s1/ada/data/keypoints"] * CALIBRATION_FRAMES
    meta = wm.parse_meta(out[0][1])
    assert isinstance(meta, wm.KeypointMeta)
    assert meta.camera.scale_m_per_px == pytest.approx(0.9 * (1 - ANKLE_OF_LEG) / 200)
    assert meta.camera.view == "sagittal_left" and meta.camera.image_px == (W, H)  # from the first image
    frames_ = [wf.decode(payload) for _, payload, _ in out[1:]]
    assert [f.seq for f in frames_] == list(range(CALIBRATION_FRAMES))
    assert [f.t0_ns for f in frames_] == [k * 20_000_000 for k in range(CALIBRATION_FRAMES)]


def test_marks_give_the_scale_but_auto_still_waits_for_the_feet() -> None:
    p = pipeline(Model([600.0], facing=-1.0), scale_m_per_px=0.004)
    assert feed(p, CALIBRATION_FRAMES - 1) == []
    meta = wm.parse_meta(feed(p, 1, CALIBRATION_FRAMES - 1)[0][1])
    assert isinstance(meta, wm.KeypointMeta)
    assert meta.camera.scale_m_per_px == 0.004 and meta.camera.view == "sagittal_left"
    # a view given: the marks' meta comes with the first image
    q = pipeline(Model([600.0]), scale_m_per_px=0.004, view="sagittal_right")
    assert [t for t, _, _ in feed(q, 1)] == ["poserun/v1/s1/ada/meta/keypoints", "poserun/v1/s1/ada/data/keypoints"]


def test_frames_never_calibrated_are_counted_when_the_source_ends() -> None:
    p = pipeline(Model([]))  # no one is ever seen: no scale
    assert feed(p, 30) == []
    p.finish()
    assert p.stats.never_calibrated == 30 and p.stats.frames == 0
    # frames older than HOLD_S (5 s) are dropped while waiting
    q = pipeline(Model([]))
    for k in range(400):  # 8 s at 50 fps
        q.feed(k * 20_000_000, IMAGE)
    q.finish()
    assert q.stats.dropped_uncalibrated + q.stats.never_calibrated == 400
    assert q.stats.never_calibrated == 251  # the last 5 s (and the frame at its edge)


def test_an_image_the_model_fails_on_costs_only_itself() -> None:
    model = Model([300.0, 900.0], broken=(39,))  # the landmark model on the 20th image's first person
    p = pipeline(model, regions={"ada": Region(0, 0, 0.5, 1), "bo": Region(0.5, 0, 1, 1)},
                 scale_m_per_px=0.004, view="sagittal_left")
    out = feed(p, 30)
    assert p.stats.bad_images == 1
    data = [wf.decode(payload) for t, payload, _ in out if "/data/" in t]
    assert len(data) == 60  # both athletes, every image
    # the broken image's frames carry confidence 0 (its tracks are gone: the detector finds them again)
    seen = [(round(f.t0_ns / 20e6), float(f.data[0, 2::3].max()) > 0) for f in data]
    assert {k for k, s in seen if not s} == {19}
    assert p.stats.seen == {"ada": 29, "bo": 29}
    assert p.stats.assign == {"bound": 2}  # who is who survived the bad image


class FakeCapture:
    """A live source whose reads fail at the given read numbers (then it is opened again)."""

    def __init__(self, fails: set[int]) -> None:
        self.fails, self.reads, self.released = fails, 0, 0

    def get(self, prop: int) -> float:
        return 30.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        return (False, None) if self.reads in self.fails else (True, np.zeros((4, 4, 3), np.uint8))

    def release(self) -> None:
        self.released += 1


def test_a_live_source_that_fails_is_opened_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import poserun.services.gateway_camera as gc

    monkeypatch.setattr(gc, "REOPEN_S", (0.0, 0.0))
    cap = FakeCapture({3, 4})
    opened: list[int] = []

    def reopen() -> FakeCapture:
        opened.append(1)
        return cap

    stats = CameraStats()
    got = []
    for t, _rgb in frames(cap, True, stats, reopen=reopen):
        got.append(t)
        if len(got) == 5:
            break
    assert len(got) == 5 and stats.read_failures == 2 and len(opened) == 2
    assert got == sorted(got)  # the capture clock
    # a file ends at its first failed read
    assert list(frames(FakeCapture({2}), False, CameraStats())) != [] and stats.bad_timestamps == 0


def test_the_command_refuses_a_negative_speed_and_names_a_missing_broker(tmp_path: Any) -> None:
    video = tmp_path / "clip.mp4"
    import cv2

    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 64))
    for _ in range(3):
        out.write(np.zeros((64, 64, 3), np.uint8))
    out.release()
    base = [sys.executable, "-m", "poserun", "gateway", "camera", str(video), "--athlete", "a1"]
    neg = subprocess.run([*base, "--speed", "-1", "--broker", "mqtt://127.0.0.1:1883"], capture_output=True,
                         text=True, timeout=120)
    assert neg.returncode == 2 and "speed" in neg.stderr
    gone = subprocess.run([*base, "--broker", "mqtt://127.0.0.1:1"], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 3, gone.stderr
