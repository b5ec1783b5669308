"""``poserun analyze VIDEO``'s library: a real video through BlazePose and the processor, and its report."""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from poserun.processors.records import KEYS, SERVICE_KEYS
from poserun.services.camera_tracks import Region
from poserun.settings import AthleteSettings, Settings
from tests.conftest import SHARED, require

DEMO = SHARED / "data" / "video" / "sports2d_demo" / "demo.mp4"
REGIONS = {"walker": Region(0, 0.45, 1, 1), "boxman": Region(0, 0, 1, 0.45)}
LEGS = {"walker": 0.85, "boxman": 0.95}
PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def camera_extra() -> None:
    require(importlib.util.find_spec("cv2") is not None and importlib.util.find_spec("ai_edge_litert") is not None,
            "the camera extra (opencv-python-headless, ai-edge-litert) is not installed")


def settings() -> Settings:
    return Settings(athletes=[AthleteSettings(id="walker", name="Ada Walker", leg_length_m=LEGS["walker"]),
                              AthleteSettings(id="boxman", leg_length_m=LEGS["boxman"])])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # -> (VideoAnalysis, report path)
    camera_extra()
    require(DEMO.is_file(), f"the demo video is missing: {DEMO}")
    from poserun.services.gateway_camera import camera_options
    from poserun.services.video_analysis import analyze_video, write_video_report

    cfg = settings()
    calls: list[tuple[int, int]] = []
    options = camera_options(cfg, regions=[f"{a}={r.x0},{r.y0},{r.x1},{r.y1}" for a, r in REGIONS.items()])
    analysis = analyze_video(DEMO, cfg, options, session="demo",
                             progress=lambda n, total: calls.append((n, total)))
    assert calls and calls[-1][0] == analysis.images
    report = write_video_report(analysis, tmp_path_factory.mktemp("report") / "demo.html")
    return analysis, report


def test_the_demo_video_goes_through_the_service(demo) -> None:
    analysis, _ = demo
    assert analysis.fps == pytest.approx(30.0) and (analysis.width, analysis.height) == (1768, 994)
    assert 220 <= analysis.images <= 240  # 7.7 s at 30 fps
    assert analysis.options.leg_length_m == LEGS  # from the settings
    sent = analysis.camera["frames"]
    assert sent == 2 * analysis.images  # every image, for both athletes (confidence 0 where unseen)
    taken, refused = analysis.keypoint_frames()
    assert taken == sent and refused == 0 and analysis.snapshot["rejected"] == {}
    for key, src in analysis.snapshot["sources"].items():
        assert key.startswith("demo/") and key.endswith("/keypoints") and src["rejected"] == {}, key
    for athlete in REGIONS:
        seen = analysis.camera["seen"][athlete]
        assert seen > 100, athlete
        assert len(analysis.poses[athlete]) == seen
    for r in analysis.records:  # the records are the processor's, held to their schema
        assert r["athlete"] in REGIONS and r["session"] == "demo"
        assert set(r) <= KEYS[r["type"]] | SERVICE_KEYS


def test_the_walker_is_scaled_plausibly(demo) -> None:
    analysis, _ = demo
    meta = analysis.meta["walker"]
    assert meta["leg_length_m"] == LEGS["walker"]
    assert 0.001 < meta["scale_m_per_px"] < 0.01
    # she walks right to left; her height from the keypoints (nose to heels: about 0.9 of the stature)
    assert meta["view"] == "sagittal_left"
    heights = [(r[r[:, 2] >= 0.5, 1].max() - r[r[:, 2] >= 0.5, 1].min()) * meta["scale_m_per_px"]
               for r in analysis.poses["walker"].rows if (r[:, 2] >= 0.5).sum() > 20]
    assert 1.2 < float(np.median(heights)) < 1.9


def test_the_pictures_show_the_athletes(demo) -> None:
    analysis, _ = demo
    frame_ns = 1e9 / analysis.fps
    for athlete, region in REGIONS.items():
        pic = analysis.pictures[athlete]
        assert pic.rgb is not None and pic.rgb.shape == (analysis.height, analysis.width, 3)
        if pic.stance is not None:  # the frame at the IC of the stance of median support time
            assert abs(pic.t_ns - int(pic.stance["ic_ns"])) <= frame_ns / 2 + 1
            supports = sorted(r["support_time_s"] for r in analysis.stances(athlete))
            assert pic.stance["support_time_s"] == supports[(len(supports) - 1) // 2]
        hip = (pic.rows[23, :2] + pic.rows[24, :2]) / 2
        assert region.contains(float(hip[0]), float(hip[1]), analysis.width, analysis.height)
        # the skeleton lies on a person, not on the sky: the keypoints' box differs from the image around it
        vis = pic.rows[:, 2] >= 0.5
        assert vis.sum() >= 20


def test_the_report_is_one_html_file(demo) -> None:
    import cv2

    analysis, report = demo
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched
    assert "Ada Walker" in text and "<h2>boxman</h2>" in text
    sections = text.split("<section>")[1:]
    assert len(sections) == 2
    for athlete, section in zip(REGIONS, sections, strict=True):
        assert f"<h2>{athlete}" in section
        images = PNG.findall(section)
        assert len(images) >= 2, athlete
        for b in images:
            img = cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[0] > 50 and img.shape[1] > 50
        n = len(analysis.stances(athlete))
        if n:
            assert f"<th>stances</th><td>{n} (left" in section
        else:
            seen = analysis.camera["seen"][athlete]
            assert (f"No stances: the processor found no running contacts in {seen} frames where the athlete "
                    "was seen") in section
    assert "33.3 ms" in text and "at 60 fps" in text and "19.8" in text and "21.9" in text


def test_the_terminal_summary(demo) -> None:
    from poserun.services.video_analysis import format_video_summary

    analysis, _ = demo
    text = format_video_summary(analysis)
    for athlete in REGIONS:
        assert f"{athlete}: seen in {analysis.camera['seen'][athlete]} of {analysis.images} frames" in text
    assert f"{analysis.camera['frames']} keypoint frames taken, 0 refused" in text
    assert text.splitlines()[0].startswith("session")


# ------------------------------------------------------------------ without the model
def person(cx: float = 150.0, ground: float = 190.0, h: float = 160.0) -> np.ndarray:
    """(33, 3) rows of a standing person facing +x, about ``h`` px tall, all visible."""
    rows = np.zeros((33, 3), dtype=np.float32)
    rows[:, 2] = 0.9
    y = {"head": ground - h, "shoulder": ground - 0.8 * h, "hip": ground - 0.5 * h, "knee": ground - 0.25 * h,
         "ankle": ground - 0.04 * h}
    rows[0:11, :2] = (cx + 0.03 * h, y["head"])
    for side, dx in ((0, -0.05 * h), (1, 0.05 * h)):  # 0 left, 1 right (MediaPipe's odd / even)
        rows[11 + side] = (cx + dx / 4, y["shoulder"], 0.9)
        rows[13 + side] = (cx + dx, y["shoulder"] + 0.15 * h, 0.9)
        for i in (15, 17, 19, 21):
            rows[i + side] = (cx + 2 * dx, y["shoulder"] + 0.28 * h, 0.9)
        rows[23 + side] = (cx + dx / 4, y["hip"], 0.9)
        rows[25 + side] = (cx + 2 * dx, y["knee"], 0.9)
        rows[27 + side] = (cx + 2 * dx, y["ankle"], 0.9)
        rows[29 + side] = (cx + 2 * dx - 0.05 * h, ground, 0.9)
        rows[31 + side] = (cx + 2 * dx + 0.1 * h, ground, 0.9)
    return rows


def test_drawing_the_skeleton_and_the_stick_figure() -> None:
    camera_extra()
    import cv2

    from poserun.services.video_analysis import (
        LEFT_RGB,
        RIGHT_RGB,
        crop_person,
        draw_skeleton,
        png_base64,
        stick_figure,
    )

    image = np.full((220, 300, 3), 40, dtype=np.uint8)
    rows = person()
    rows[0] = (40.0, 20.0, 0.3)  # the nose, hardly visible, away from the body: not drawn
    drawn = draw_skeleton(image, rows, foot="right")
    assert (image == 40).all()  # a copy
    knee_l, knee_r = rows[25, :2].round().astype(int), rows[26, :2].round().astype(int)
    assert tuple(drawn[knee_l[1], knee_l[0]]) == LEFT_RGB and tuple(drawn[knee_r[1], knee_r[0]]) == RIGHT_RGB
    assert (drawn[10:30, 30:50] == 40).all()  # nothing at the invisible nose
    crop = crop_person(drawn, rows, max_height=100)
    assert crop.shape[0] == 100 and crop.shape[1] < drawn.shape[1]

    def red_x(img: np.ndarray) -> float:
        _, xs = np.nonzero((img == RIGHT_RGB).all(axis=2))
        return float(xs.mean())

    fig = stick_figure(rows, scale_m_per_px=0.01)
    mirrored = stick_figure(rows, facing_left=True, scale_m_per_px=0.01)
    h, w = fig.shape[:2]
    assert fig.dtype == np.uint8 and (fig[0, 0] == 255).all() and (fig != 255).any()
    ground = round(0.88 * h)
    assert (fig[ground, 20:w - 20] != 255).any(axis=1).all()  # the ground line
    assert red_x(fig) > w / 2 > red_x(mirrored)  # the right side (+x) mirrored to the left
    rows[:, 2] = 0.1
    assert (stick_figure(rows)[:100] == 255).all()  # no visible keypoints: nothing but a note
    back = cv2.imdecode(np.frombuffer(base64.b64decode(png_base64(drawn)), np.uint8), cv2.IMREAD_COLOR)
    assert (cv2.cvtColor(back, cv2.COLOR_BGR2RGB) == drawn).all()


def test_a_report_without_stances_says_so_and_shows_the_athlete(tmp_path: Path) -> None:
    camera_extra()
    from poserun.services.gateway_camera import CameraOptions
    from poserun.services.video_analysis import (
        AthletePoses,
        Picture,
        VideoAnalysis,
        format_video_summary,
        representative_stance,
        write_video_report,
    )

    poses = AthletePoses()
    for n in range(3):
        poses.add(n * 33_333_333, person(cx=100 + 10 * n))
    middle = poses.middle()
    assert middle is not None and middle[0] == 33_333_333
    nearest = poses.nearest(40_000_000)
    assert nearest is not None and nearest[0] == 33_333_333
    # a made-up stance, only to see the section lay it out (the demo test has the processor's own)
    stance = {"type": "stance", "athlete": "runner", "foot": "left", "ic_ns": 0, "to_ns": 66_666_667,
              "support_time_s": 0.2, "cadence_spm": 180.0, "overstride_m": 0.12, "knee_flexion_ic_deg": 21.0,
              "fall_angle_deg": 4.5, "forced_landing": False}
    analysis = VideoAnalysis("clip.mp4", "s1", 30.0, 300, 220,
                             CameraOptions(regions={"solo": Region(), "ghost": Region(0, 0, 0.5, 0.5),
                                                    "runner": Region(0.5, 0, 1, 1)}),
                             records=[stance, {"type": "landing", "athlete": "runner", "foot": "left", "ic_ns": 0,
                                               "forced_landing": False}],
                             camera={"images": 3, "frames": 9, "seen": {"solo": 3, "ghost": 0, "runner": 3}},
                             poses={"solo": poses, "ghost": AthletePoses(), "runner": poses},
                             meta={"solo": {"scale_m_per_px": 0.01, "view": "sagittal_right", "leg_length_m": 0.9}},
                             pictures={"solo": Picture(middle[0], middle[1], np.full((220, 300, 3), 90, np.uint8)),
                                       "runner": Picture(0, poses.rows[0], None, stance)})
    text = write_video_report(analysis, tmp_path / "r.html").read_text()
    solo, ghost, runner = text.split("<section>")[1:]
    assert ("No stances: the processor found no running contacts in 3 frames where the athlete was seen."
            in solo)
    assert len(PNG.findall(solo)) == 3 and "middle frame" in solo
    assert "never saw" in ghost and not PNG.findall(ghost)
    assert "<td>1 (left 1, right 0)</td>" in runner and "180 steps/min" in runner and "0.120 m" in runner
    assert "0 of the 1 landings" in runner and "Initial contact of the left foot at 0.000 s" in runner
    assert len(PNG.findall(runner)) == 1  # no frame decoded: the stick figure alone
    summary = format_video_summary(analysis)
    assert "solo: seen in 3 of 3 frames" in summary and "ghost: seen in 0 of 3 frames; no scale" in summary
    stances = [{"support_time_s": s, "ic_ns": i} for i, s in enumerate([0.2, 0.1, 0.3, 0.25])]
    assert representative_stance(stances)["support_time_s"] == 0.2


def test_camera_options_take_the_leg_length_from_the_settings() -> None:
    from poserun.services.gateway_camera import camera_options

    cfg = settings()
    opts = camera_options(cfg, regions=["walker=0,0.45,1,1", "guest=0.5,0,1,0.45"], view="sagittal_left")
    assert opts.leg_length_m == {"walker": LEGS["walker"], "guest": 0.9}  # the guest: the default leg
    assert opts.view == "sagittal_left" and opts.regions["walker"] == Region(0, 0.45, 1, 1)
    assert opts.scale_m_per_px is None
    marks = camera_options(cfg, athlete="walker", marks="100,500,400,900", marks_m=2.0)
    assert marks.scale_m_per_px == pytest.approx(2.0 / 500.0)
    for bad in ({"athlete": "walker", "regions": ["walker=0,0,1,1"]}, {"regions": ["walker"]},
                {"regions": ["walker=0,0,1"]}, {"regions": ["a=0,0,1,1", "a=0,0,1,1"]}, {},
                {"athlete": "walker", "marks": "1,2,3,4"}, {"athlete": "walker", "marks": "1,2,3", "marks_m": 1.0},
                {"athlete": "bad/id"}, {"athlete": "w", "origin": "12"}):
        with pytest.raises(ValueError):
            camera_options(cfg, **bad)  # type: ignore[arg-type]


def test_what_is_not_a_video_file_is_refused(tmp_path: Path) -> None:
    camera_extra()
    from poserun.services.gateway_camera import CameraOptions
    from poserun.services.video_analysis import analyze_video

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    options = CameraOptions(regions={"solo": Region()})
    for path in (text, tmp_path / "missing.mp4"):
        with pytest.raises(OSError):
            analyze_video(path, settings(), options)
