from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poserun.cli import main
from poserun.recording import athletes_metadata, read_messages
from poserun.services import importer
from poserun.services.fusion import FusionService
from poserun.settings import Settings
from poserun.wire import decode, topics
from poserun.wire import meta as wm
from tests.conftest import BACH, require


def test_csv_import_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "shank.csv"
    t = np.arange(0, 2, 0.005)
    rows = ["time_s,ax,ay,az"] + [f"{x:.3f},{np.sin(x):.6f},0.5,-1" for x in t]
    f.write_text("\n".join(rows) + "\n")
    meta = wm.ImuMeta(source="imu_shank_left", rate_hz=200, placement="shank", side="left",
                      channels=["ax", "ay", "az"], accel_unit="g")
    msgs = importer.import_csv(f, session="lab", athlete="p1", meta=meta)
    frames = [decode(m.payload) for m in msgs[1:]]
    assert sum(fr.samples for fr in frames) == len(t)
    np.testing.assert_allclose(np.concatenate([fr.data[:, 0] for fr in frames]),
                               np.sin(t).round(6), atol=1e-6)
    assert np.concatenate([fr.times_ns() for fr in frames]).tolist() == [round(x * 1e9) for x in t.round(3)]
    out = tmp_path / "lab.mcap"
    assert main(["import", "csv", str(f), "-o", str(out), "--source", "imu_shank_left",
                 "--athlete", "p1", "--channels", "ax,ay,az", "--accel-unit", "g"]) == 0
    got = list(read_messages(out))
    assert got[0].retain and topics.parse(got[0].topic).channel == "meta"
    assert [m.payload for m in got[1:]] == [m.payload for m in msgs[1:]]


@pytest.mark.parametrize(("text", "needle"), [
    ("when,ax\n0,1\n", "must be time"),
    ("time_s\n0\n", "no channel columns"),
    ("time_s,ax\n0,1\n1\n", ":3: 1 columns"),
    ("time_s,ax\n0,x\n", "not a number"),
    ("time_s,ax\n0,nan\n", "NaN"),
    ("time_s,ax\n", "at least one sample"),
])
def test_bad_csv_says_where(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(importer.ImportError_, match=needle):
        importer.read_csv_table(f)


def test_time_must_increase() -> None:
    with pytest.raises(importer.ImportError_, match="does not increase"):
        importer.frames_from_table("s", "a", "force_left", np.array([0, 10, 5]), np.zeros((3, 1)))


TRC = """PathFileType\t4\t(X/Y/Z)\trun.trc
DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames
100.00\t100.00\t3\t2\tmm\t100.00\t1\t3
Frame#\tTime\tRHEE\t\t\tRTOE\t\t
\t\tX1\tY1\tZ1\tX2\tY2\tZ2

1\t0.000\t100.0\t50.0\t10.0\t300.0\t40.0\t12.0
2\t0.010\t110.0\t52.0\t10.0\t\t\t
3\t0.020\t120.0\t55.0\t10.0\t320.0\t41.0\t12.0
"""


def test_trc_markers_become_keypoints(tmp_path: Path) -> None:
    f = tmp_path / "run.trc"
    f.write_text(TRC)
    msgs, info = importer.import_trc(f, session="lab", athlete="p1", up="+y")
    meta = wm.parse_meta(msgs[0].payload)
    assert isinstance(meta, wm.KeypointMeta) and meta.names == ["right_heel", "right_toe"]  # roles, renamed
    assert info["roles"].get("right", "heel") == ["RHEE"] and info["markers"] == 2
    assert meta.dims == "xyzc" and meta.unit == "m" and meta.camera.up_axis == "+y"
    data = np.concatenate([decode(m.payload).data for m in msgs[1:]])
    np.testing.assert_allclose(data[0], [0.1, 0.05, 0.01, 1, 0.3, 0.04, 0.012, 1], atol=1e-6)
    assert data[1, 7] == 0.0 and data[1, 4] == 0.0  # the missing marker has confidence 0
    f.write_text("not a trc\n" * 8)
    with pytest.raises(importer.ImportError_, match="PathFileType"):
        importer.read_trc(f)


def test_bach2022_imports_as_a_session(tmp_path: Path) -> None:
    require((BACH / "walk+run.mat").exists(), "shared/data/real/bach2022 is absent")
    out = tmp_path / "bach.mcap"
    assert main(["import", "bach2022", str(BACH), "-o", str(out), "--running-only"]) == 0
    athletes = athletes_metadata(out)
    assert [a["trial"] for a in athletes] == [1, 2, 7, 8, 9, 13, 15]
    assert sum(a["contacts"] for a in athletes) == 142  # the dataset README's count
    svc = FusionService(Settings(), session="bach2022")
    truth = []
    for m in read_messages(out):
        svc.handle(m.topic, m.payload)
        if topics.parse(m.topic).channel == "truth":
            truth.append(wm.TruthEvent.model_validate_json(m.payload))
    snap = svc.snapshot()
    assert snap["rejected"] == {}
    samples = {k: v["samples"] for k, v in snap["sources"].items()}
    assert samples["bach2022/trial01/imu_shank_right"] == samples["bach2022/trial01/force_right"] > 2000
    contact = [(e.to_ns - e.ic_ns) / 1e9 for e in truth]
    assert len(truth) == 142 and 0.25 < float(np.mean(contact)) < 0.32  # README: 0.270-0.312 s
    meta = json.loads(next(m.payload for m in read_messages(out)
                           if m.topic.endswith("meta/imu_shank_right")))
    assert meta["accel_unit"] == "g" and meta["placement"] == "shank"


def test_motion_capture_markers_drive_the_processor(tmp_path: Path) -> None:
    """A TRC of Plug-in-Gait-like markers (mm, z up) from the simulated runner: contacts and
    sagittal geometry come out of the processor with no camera calibration involved."""
    from poserun.services.sim.profiles import get_profile
    from poserun.services.sim.runner import AthleteSpec, SimRunner

    r = SimRunner(AthleteSpec("p1", "P", get_profile("pose"), seed=2))
    r.advance(12.0)
    rate = 100.0
    t = np.arange(0, 11.0, 1 / rate)
    j = r.joints(t, frame_speed=0.0)  # a fixed lab frame: the runner moves through it
    names = {"LASI": "left_hip", "RASI": "right_hip", "LKNE": "left_knee", "RKNE": "right_knee",
             "LANK": "left_ankle", "RANK": "right_ankle", "LSHO": "left_shoulder", "RSHO": "right_shoulder"}
    lines = ["PathFileType\t4\t(X/Y/Z)\trun.trc",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"{rate:.2f}\t{rate:.2f}\t{len(t)}\t{len(names)}\tmm\t{rate:.2f}\t1\t{len(t)}",
             "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
             "\t\t" + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, len(names) + 1)), ""]
    for i, ti in enumerate(t):
        row = [str(i + 1), f"{ti:.4f}"]
        for side_joint in names.values():
            x, z = j[side_joint][i]
            y = 0.1 if side_joint.startswith("left") else -0.1
            row += [f"{1000 * x:.2f}", f"{1000 * y:.2f}", f"{1000 * z:.2f}"]
        lines.append("\t".join(row))
    f = tmp_path / "run.trc"
    f.write_text("\n".join(lines) + "\n")
    msgs, _ = importer.import_trc(f, session="lab", athlete="p1", up="+z", forward="+x")
    svc = FusionService(Settings(), session="lab")
    recs = []
    for m in sorted(msgs, key=lambda m: (m.log_time_ns, not m.retain)):
        recs += svc.handle(m.topic, m.payload)
    stances = [x for x in recs if x["type"] == "stance"][2:]
    assert svc.snapshot()["rejected"] == {}
    assert len(stances) >= 20
    assert all(x["event_source"] == "camera" for x in stances)
    errors = []
    for x in stances:
        near = [s for s in r.stances if s.foot == x["foot"] and abs(s.ic * 1e9 - x["ic_ns"]) < 60e6]
        assert len(near) == 1
        errors.append(x["support_time_s"] - near[0].tc)
    # s: contact time from marker heights (ankles only), ended early: the ankle rises as the heel lifts
    # and the foot rolls over its toes, before the toes leave (docs/accuracy.md, camera only)
    assert -0.045 < np.median(errors) < 0.0
    over = [x["overstride_m"] for x in stances if x["overstride_m"] is not None]
    # overstride is read at the detected IC, which marker heights place ~20 ms early (docs/accuracy.md)
    assert len(over) >= 15 and 0.0 < np.median(over) < 0.25
