"""Qualisys TSV exports: markers, force plates or belts as truth, feet told apart by their markers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poserun.recording import read_messages
from poserun.services.import_qtm import import_qtm, read_qtm_force, read_qtm_markers, vertical_force
from poserun.services.importer import ImportError_, write_recording
from poserun.services.validate import score_recordings
from tests.conftest import SHARED, require

DAVIS = SHARED / "data" / "real" / "davis_treadmill"
NAMES = ["R_heel_B", "R_toe", "L_heel_B", "L_toe"]


def write_markers(path: Path, xyz_mm: np.ndarray, rate: float = 100.0) -> None:
    """A QTM 3-D export as QTM writes it (header lines, a column line with one tab too many)."""
    n = len(xyz_mm)
    head = [f"NO_OF_FRAMES\t{n}", "NO_OF_CAMERAS\t8", f"NO_OF_MARKERS\t{len(NAMES)}", f"FREQUENCY\t{rate:g}",
            "NO_OF_ANALOG\t0", "ANALOG_FREQUENCY\t0", "DESCRIPTION\t--", "TIME_STAMP\t2022-01-29, 15:27:17.748\t1.0",
            "DATA_INCLUDED\t3D", "MARKER_NAMES\t" + "\t".join(NAMES),
            "TRAJECTORY_TYPES\t" + "\t".join(["Measured"] * 4),
            "Frame\tTime\tCamera Time\t" + "\t".join(f"{m} {a}" for m in NAMES for a in "XYZ") + "\t"]
    rows = [f"{k + 1}\t{k / rate:.5f}\t{k / rate:.5f}\t" + "\t".join(f"{v:.3f}" for v in xyz_mm[k].ravel())
            for k in range(n)]
    path.write_text("\n".join(head + rows) + "\n")


def write_force(path: Path, fz: np.ndarray, rate: float, name: str) -> None:
    head = [f"NO_OF_SAMPLES\t{len(fz)}", f"FREQUENCY\t{rate:g}", "TIME_STAMP\t2022-01-29\t1.0", "FIRST_SAMPLE\t1",
            "DESCRIPTION\tForce data in world (lab) coordinates", "DATA_INCLUDED\tForce",
            f"FORCE_PLATE_NAME\t{name}",
            "SAMPLE\tTIME\tForce_X\tForce_Y\tForce_Z\tMoment_X\tMoment_Y\tMoment_Z\tCOP_X\tCOP_Y\tCOP_Z"]
    rows = [f"{k + 1}\t{k / rate:.5f}\t0\t0\t{f:.3f}\t0\t0\t0\t0\t0\t0\t" for k, f in enumerate(fz)]
    path.write_text("\n".join(head + rows) + "\n")


def running(seconds: float = 4.0, rate: float = 100.0, f_rate: float = 1000.0, tc: float = 0.25,
            step: float = 0.35) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]]]:
    """Markers (mm) and one belt's force (on the plate: negative under load) of a runner whose feet
    alternate, right first; the stance foot's markers are on the ground, the other's 150 mm up."""
    contacts = []
    t = 0.1
    foot = "right"
    while t + tc < seconds - 0.1:
        contacts.append((t, t + tc, foot))
        t += step
        foot = "left" if foot == "right" else "right"
    tm = np.arange(int(seconds * rate)) / rate
    xyz = np.zeros((len(tm), 4, 3))
    xyz[..., 0] = 100.0  # x: never 0 0 0, which would read as a gap
    for k, tk in enumerate(tm):
        down = next((f for a, b, f in contacts if a <= tk < b + (step - tc) / 2), None)
        for j, name in enumerate(NAMES):
            on = (name.startswith("R") and down == "right") or (name.startswith("L") and down == "left")
            xyz[k, j, 2] = 40.0 if on else 190.0
    tf = np.arange(int(seconds * f_rate)) / f_rate
    fz = np.zeros(len(tf)) + 6.0  # an unloaded offset
    for a, b, _ in contacts:
        inside = (tf >= a) & (tf < b)
        fz[inside] += 1800.0 * np.sin(np.pi * (tf[inside] - a) / (b - a))
    return xyz, -fz, contacts


def test_markers_forces_and_feet(tmp_path: Path) -> None:
    xyz, fz, contacts = running()
    xyz[10, 1] = 0.0  # a gap, as QTM writes it
    write_markers(tmp_path / "run.tsv", xyz)
    write_force(tmp_path / "run_f_1.tsv", fz, 1000.0, "Belt")
    t, got, names, rate = read_qtm_markers(tmp_path / "run.tsv")
    assert names == NAMES and rate == 100.0 and got.shape == (len(xyz), 4, 3) and t[1] == 10_000_000
    assert np.isnan(got[10, 1]).all() and got[11, 1, 2] == pytest.approx(xyz[11, 1, 2] / 1000)
    messages, info = import_qtm(tmp_path / "run.tsv", [tmp_path / "run_f_1.tsv"], session="s", athlete="a")
    assert info["plates"] == ["Belt"]
    truth = [m for m in messages if m.topic.endswith("/truth")]
    assert len(truth) == len(contacts) and info["contacts"]["unknown"] == 0
    from poserun.wire.meta import TruthEvent

    events = [TruthEvent.model_validate_json(m.payload) for m in truth]
    assert [e.foot for e in events] == [f for _, _, f in contacts]  # told apart by the lower foot's markers
    for e, (a, b, _) in zip(events, contacts, strict=True):
        assert abs(e.ic_ns / 1e9 - a) < 0.02 and abs(e.to_ns / 1e9 - b) < 0.02  # 30 N on a 1800 N half sine
    write_recording(tmp_path / "run.mcap", messages)
    assert sum(1 for m in read_messages(tmp_path / "run.mcap") if "/truth" in m.topic) == len(contacts)


def test_force_sign_and_zero_come_from_the_data() -> None:
    _, fz, _ = running()
    up = vertical_force([fz], 1000.0)
    down = vertical_force([-fz], 1000.0)
    assert np.allclose(up, down) and up.max() > 1700 and abs(float(np.median(np.sort(up)[:300]))) < 2.0


@pytest.mark.parametrize(("names", "expect"), [
    (["R_heel_B", "R_heel_T", "L_heel_B", "R_toe"], {"right": [0, 3], "left": [2]}),  # the bottom heel
    (["LHEE", "RHEE", "LTOE"], {"left": [0, 2], "right": [1]}),
    (["R.Heel.Bottom", "L.Heel.Bottom", "R.MT1"], {"right": [0, 2], "left": [1]}),
    (["LHEEL", "LP5MT", "RHEEL", "RTOE", "RLMAL"], {"left": [0, 1], "right": [2, 3]}),
    (["L_toe", "R_ankle_LA", "L_ankle_LA"], {"left": [0], "right": [1]}),
    (["RASI", "LASI"], {}),
])
def test_foot_markers_by_common_names(names: list[str], expect: dict[str, list[int]]) -> None:
    from poserun.services.import_roles import foot_indices, recognise

    assert foot_indices(names, recognise(names)) == expect


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.tsv"
    bad.write_text("time,ax\n0,1\n")
    with pytest.raises(ImportError_, match="not a QTM 3-D export"):
        read_qtm_markers(bad)
    with pytest.raises(ImportError_, match="not a QTM force export"):
        read_qtm_force(bad)


def test_the_davis_treadmill_run(tmp_path: Path) -> None:
    """The dataset's README: 29 complete contacts, 15 left and 14 right, alternating."""
    require((DAVIS / "JDX_S999_run_0021.tsv").exists(), "shared/data/real/davis_treadmill is absent")
    run = DAVIS / "JDX_S999_run_0021.tsv"
    messages, info = import_qtm(run, [DAVIS / "JDX_S999_run_0021_f_1.tsv", DAVIS / "JDX_S999_run_0021_f_2.tsv"],
                                session="davis", athlete="s999")
    assert info["contacts"] == {"left": 15, "right": 14, "unknown": 0} and info["markers"] == 47
    path = tmp_path / "davis.mcap"
    write_recording(path, messages)
    [(_, s)] = score_recordings([str(path)])
    # the marker layout is recognised (R_kneejoint_LA, R_ankle_LA, R_acr ...): contacts are found
    assert s["matched"] >= 0.9 * s["contacts"] and abs(s["errors"]["ic"]).mean() < 10.0


DORN = SHARED / "data" / "real" / "dorn2012" / "JA1Gait35.c3d"


def test_a_file_that_is_not_c3d(tmp_path: Path) -> None:
    from poserun.services.import_c3d import read_c3d

    bad = tmp_path / "x.c3d"
    bad.write_bytes(b"\x00" * 600)
    with pytest.raises(ImportError_, match="not a readable C3D file"):
        read_c3d(bad)


def test_the_dorn_sprint_c3d(tmp_path: Path) -> None:
    """The dataset's README: plates 2, 4, 7, 8 loaded; 4 contacts R L R L of about 0.119 s."""
    require(DORN.exists(), "shared/data/real/dorn2012 is absent")
    from poserun.services.import_c3d import import_c3d
    from poserun.wire.meta import TruthEvent

    messages, info = import_c3d(DORN, session="dorn", athlete="ja1")
    assert info["plates"] == [2, 4, 7, 8] and info["markers"] == 53
    truth = [TruthEvent.model_validate_json(m.payload) for m in messages if m.topic.endswith("/truth")]
    assert [e.foot for e in truth] == ["right", "left", "right", "left"]
    assert all(0.110 < (e.to_ns - e.ic_ns) / 1e9 < 0.125 for e in truth)
    assert abs(truth[0].ic_ns / 1e9 - 3.681) < 0.003  # the README's first IC (lab time)
    path = tmp_path / "dorn.mcap"
    write_recording(path, messages)
    [(_, s)] = score_recordings([str(path)])
    assert s["matched"] >= 3 and s["extra"] == 0  # the first right contact starts in flight: given up


def test_c3d_vertical_force_by_plate_type() -> None:
    from poserun.services.import_c3d import _vertical_channel

    analog = np.arange(40, dtype=float).reshape(4, 10)
    assert list(_vertical_channel(analog, np.array([1, 2, 3, 4, 5, 6]), 2, "x")) == list(analog[:, 2])
    kistler = _vertical_channel(analog, np.arange(1, 9), 3, "x")  # Fz1..Fz4 are channels 5-8
    assert list(kistler) == list(analog[:, 4:8].sum(axis=1))
    with pytest.raises(ImportError_, match="type 5"):
        _vertical_channel(analog, np.arange(1, 7), 5, "x")
    with pytest.raises(ImportError_, match="lacks"):
        _vertical_channel(analog, np.array([1, 2, 30]), 2, "x")
