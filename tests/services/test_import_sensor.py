"""``poserun import csv`` options for what a lab sensor file leaves open: placement, side, units,
axes, 1- or 2-axis accelerometers, and the subject (used by analyze and validate)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poserun.cli import main
from poserun.recording import athletes_metadata, read_messages
from poserun.services.analyze import settings_for
from poserun.services.fusion import FusionService
from poserun.services.import_sensor import imu_axes, pad_channels, sensor_source
from poserun.services.importer import ImportError_
from poserun.settings import Settings
from poserun.wire import decode, topics
from poserun.wire import meta as wm


def csv_file(tmp_path: Path, columns: list[str], data: np.ndarray, rate: float = 200.0) -> Path:
    f = tmp_path / "s.csv"
    t = np.arange(len(data)) / rate
    f.write_text("\n".join([",".join(["time_s", *columns])] +
                           [",".join([f"{ti:.5f}", *(f"{v:.5f}" for v in row)]) for ti, row in zip(t, data,
                                                                                                  strict=True)]) + "\n")
    return f


def imported(out: Path) -> tuple[wm.ImuMeta, np.ndarray]:
    msgs = list(read_messages(out))
    meta = wm.parse_meta(msgs[0].payload)
    assert isinstance(meta, wm.ImuMeta)
    return meta, np.concatenate([decode(m.payload).data for m in msgs[1:]])


def run(tmp_path: Path, f: Path, *flags: str) -> Path:
    out = tmp_path / "out.mcap"
    assert main(["import", "csv", str(f), "-o", str(out), *flags]) == 0
    return out


@pytest.mark.parametrize(("placement", "side", "source"), [
    ("shank", "left", "imu_shank_left"), ("foot", "right", "imu_foot_right"), ("sacrum", None, "imu_pelvis"),
    ("trunk", "left", "imu_pelvis"), ("pelvis", None, "imu_pelvis"), ("shank", "unknown", "imu_shank_right"),
])
def test_placement_and_side_make_the_source(placement: str, side: str | None, source: str) -> None:
    got, place, s, notes = sensor_source(None, placement, side)
    assert got == source and place == placement
    assert (s is None) == (placement not in ("foot", "shank"))
    assert bool(notes) == (side == "unknown" or (placement == "trunk" and side is not None))


@pytest.mark.parametrize(("args", "needle"), [
    ((None, None, "left"), "needs --source"),
    (("imu_shank_left", "foot", None), "contradicts"),
    (("imu_shank_left", None, "right"), "contradicts"),
    (("imu_knee", None, None), "--source imu_knee"),
])
def test_contradictions_are_errors(args: tuple, needle: str) -> None:
    with pytest.raises(ImportError_, match=needle):
        sensor_source(*args)


def test_unknown_side_is_right_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([0.0, 0.0, 1.0], (50, 1)))
    out = run(tmp_path, f, "--placement", "shank", "--side", "unknown", "--channels", "ax,ay,az",
              "--accel-unit", "g", "--athlete", "p1")
    assert "side of the shank sensor unknown: imported as the right leg" in capsys.readouterr().err
    meta, _ = imported(out)
    assert meta.source == "imu_shank_right" and meta.side == "right" and "side not known" in (meta.device or "")
    [a] = athletes_metadata(out)
    assert a["sensor_side_unknown"] == ["imu_shank_right"] and a["sensors"]["imu_shank_right"]["side"] == "unknown"


def test_sacrum_placement_reaches_the_meta(tmp_path: Path) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([0.0, 0.0, 9.81], (50, 1)))
    meta, _ = imported(run(tmp_path, f, "--source", "imu_pelvis", "--placement", "sacrum", "--channels", "ax,ay,az"))
    assert meta.placement == "sacrum" and meta.side is None


def test_axes_in_both_styles() -> None:
    assert imu_axes("x=forward,y=left,z=up", None, None) == {"x": "forward", "y": "left", "z": "up"}
    assert imu_axes("x=up,z=backward", None, None) == {"x": "up", "y": "left", "z": "backward"}  # right-handed
    assert imu_axes(None, "-x", "+z") == {"x": "down", "y": "left", "z": "forward"}
    assert imu_axes(None, "+y", "-x") == {"x": "backward", "y": "up", "z": "left"}
    assert imu_axes(None, None, None) is None
    for bad in [("x=fwd", None, None), ("x=up,y=down", None, None), ("x=up,q=left", None, None),
                (None, "+x", None), (None, "+x", "-x"), ("x=up,y=left", "+z", "+x")]:
        with pytest.raises(ImportError_):
            imu_axes(*bad)


def test_signed_axes_on_the_command_line(tmp_path: Path) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([-9.81, 0.0, 0.0], (50, 1)))
    meta, _ = imported(run(tmp_path, f, "--source", "imu_shank_left", "--channels", "ax,ay,az",
                           "--up", "-x", "--forward", "+z"))
    assert dict(meta.axes) == {"x": "down", "y": "left", "z": "forward"}


def test_one_and_two_axis_accelerometers_are_padded(tmp_path: Path) -> None:
    data = np.column_stack([np.linspace(0, 1, 40), np.linspace(1, 2, 40)])
    padded, channels, notes = pad_channels(data, ["az", "ax"], "shank")
    assert channels == ["ax", "ay", "az"] and "ay written as zeros" in notes[0]
    np.testing.assert_array_equal(padded, np.column_stack([data[:, 1], np.zeros(40), data[:, 0]]))
    f = csv_file(tmp_path, ["a_vertical"], np.full((40, 1), 1.0))
    meta, frames = imported(run(tmp_path, f, "--source", "imu_shank_left", "--channels", "az", "--accel-unit", "g"))
    assert meta.channels == ["ax", "ay", "az"] and frames.shape == (40, 3)
    assert (frames[:, :2] == 0).all() and (frames[:, 2] == 1).all()
    with pytest.raises(ImportError_, match="a foot IMU needs"):
        pad_channels(data, ["ax", "az"], "foot")
    with pytest.raises(ImportError_, match="gyroscope needs gx, gy and gz"):
        pad_channels(np.zeros((3, 4)), ["ax", "ay", "az", "gx"], "shank")
    _, ch, _ = pad_channels(np.zeros((3, 3)), ["a1", "a2", "a3"], "shank")
    assert ch == ["a1", "a2", "a3"]  # other names: as given


def test_a_vertical_only_shank_accelerometer_times_contacts(tmp_path: Path) -> None:
    """One axis along the shank: gravity and the impacts on it, zeros on the others; the shank
    detector still finds a contact per stride, as it does with the same signal on three axes."""
    rate, stride = 200.0, 0.72
    t = np.arange(int(20 * rate)) / rate
    az = np.ones_like(t)
    for k in np.arange(0.3, t[-1] - 0.5, stride):
        az += 7.0 * np.exp(-((t - k) / 0.012) ** 2) - 0.8 * np.exp(-((t - k - 0.22) / 0.03) ** 2)
    f = csv_file(tmp_path, ["az"], az[:, None], rate)
    out = run(tmp_path, f, "--source", "imu_shank_right", "--channels", "az", "--accel-unit", "g")
    svc = FusionService(settings_for(out, Settings()), session="lab")
    recs = []
    for m in read_messages(out):
        recs += svc.handle(m.topic, m.payload)
    stances = [r for r in recs if r["type"] == "stance"]
    assert len(stances) >= 0.8 * len(np.arange(0.3, t[-1] - 0.5, stride))


def test_mg_becomes_g_and_a_wrong_unit_is_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([0.0, 0.0, 1000.0], (50, 1)))
    meta, frames = imported(run(tmp_path, f, "--source", "imu_shank_left", "--channels", "ax,ay,az",
                                "--accel-unit", "mg"))
    assert meta.accel_unit == "g" and frames[0, 2] == pytest.approx(1.0)
    assert "warning" not in capsys.readouterr().err
    run(tmp_path, f, "--source", "imu_shank_left", "--channels", "ax,ay,az", "--accel-unit", "g")
    assert "is the file in m/s^2" in capsys.readouterr().err


def test_the_subject_is_stored_and_used_by_analyze(tmp_path: Path) -> None:
    f = csv_file(tmp_path, ["fz"], np.full((50, 1), 700.0))
    out = run(tmp_path, f, "--source", "force_left", "--athlete", "p7", "--body-mass", "82.5", "--height", "1.84")
    [a] = athletes_metadata(out)
    assert a == {"id": "p7", "height_m": 1.84, "leg_length_m": 0.975, "leg_length_from": "0.530 x height",
                 "body_mass_kg": 82.5, "sensors": {"force_left": {"side": "left"}}}
    conf = settings_for(out, Settings()).athlete("p7")
    assert conf is not None and conf.body_mass_kg == 82.5 and conf.leg_length_m == 0.975
    svc = FusionService(settings_for(out, Settings()), session="lab")
    for m in read_messages(out):
        svc.handle(m.topic, m.payload)
    state = svc.athletes[("lab", "p7")]
    assert state.bw == pytest.approx(82.5 * 9.81, rel=1e-3)  # the processor's body weight, as analyze runs it
    out = run(tmp_path, f, "--source", "force_left", "--athlete", "p8", "--leg-length", "0.93", "--height", "1.84")
    assert athletes_metadata(out)[0]["leg_length_m"] == 0.93  # given, not estimated


@pytest.mark.parametrize(("flags", "needle"), [
    (["--body-mass", "900"], "--body-mass: Input should be less than 250"),
    (["--leg-length", "93"], "--leg-length"),
    (["--height", "184"], "--height 184: give the stature in metres"),
    (["--placement", "shank", "--side", "left", "--channels", "ax,ay,az", "--axes", "x=up,y=up"], "--axes"),
    (["--source", "imu_shank_left"], "--channels names 6"),
    (["--source", "imu_foot_left", "--channels", "ax,az,gx"], "a gyroscope needs"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                         needle: str) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([0.0, 0.0, 1.0], (20, 1)))
    source = [] if any(x in flags for x in ("--source", "--placement")) else ["--source", "force_left"]
    rc = main(["import", "csv", str(f), "-o", str(tmp_path / "x.mcap"), *source, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err


def test_meta_topic_and_truthless_import(tmp_path: Path) -> None:
    f = csv_file(tmp_path, ["ax", "ay", "az"], np.tile([0.0, 0.0, 1.0], (20, 1)))
    out = run(tmp_path, f, "--placement", "foot", "--side", "left", "--channels", "ax,ay,az")
    first = next(read_messages(out))
    assert topics.parse(first.topic).source == "imu_foot_left" and json.loads(first.payload)["placement"] == "foot"


@pytest.mark.parametrize(("fmt", "flags", "needle"), [
    ("csv", ["--markers", "m.toml"], "--markers is for import text or trc or qtm or c3d, not csv"),
    ("trc", ["--unit", "m"], "--unit is for import text, not trc"),
    ("bach2022", ["--body-mass", "70"], "--body-mass is for import csv"),
])
def test_options_a_format_does_not_take_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str,
                                                    flags: list[str], needle: str) -> None:
    assert main(["import", fmt, str(tmp_path / "in"), "-o", str(tmp_path / "x.mcap"), *flags]) == 2
    assert needle in capsys.readouterr().err
