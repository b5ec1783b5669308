"""Delimited motion-capture text exports: the Davis QTM markers written in other layouts import to the
same keypoint messages as the QTM import; malformed files are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poserun.cli import main
from poserun.recording import athletes_metadata, read_messages
from poserun.services.import_qtm import import_qtm, read_qtm_markers
from poserun.services.import_text import import_text, read_text_markers
from poserun.services.importer import ImportError_
from poserun.wire import decode
from poserun.wire import meta as wm
from tests.conftest import SHARED, require

DAVIS = SHARED / "data" / "real" / "davis_treadmill" / "JDX_S999_run_0021.tsv"


@pytest.fixture(scope="module")
def davis() -> tuple[np.ndarray, np.ndarray, list[str], float]:
    require(DAVIS.exists(), "shared/data/real/davis_treadmill is absent")
    t, xyz, names, rate = read_qtm_markers(DAVIS)
    return t[:720], xyz[:720], names, rate  # 3 s: enough to compare, quick to write and read


def write_layout(path: Path, t_ns: np.ndarray, xyz_m: np.ndarray, names: list[str], rate: float, layout: str) -> None:
    """The markers as another system would export them."""
    mm = xyz_m * 1000.0
    if layout == "tab-space":  # Time in s, "NAME X", tab, mm in the column names
        head = ["Time"] + [f"{n} {a} (mm)" for n in names for a in "XYZ"]
        rows = [[f"{t / 1e9:.6f}", *(f"{v:.3f}" for v in mm[k].ravel())] for k, t in enumerate(t_ns)]
        text = "\n".join("\t".join(r) for r in [head, *rows])
    elif layout == "csv-underscore-ms":  # time in ms (stated), NAME_x, comma, a units preamble
        head = ["time_ms"] + [f"{n}_{a}" for n in names for a in "xyz"]
        rows = [[f"{t / 1e6:.4f}", *(f"{v:.3f}" for v in mm[k].ravel())] for k, t in enumerate(t_ns)]
        text = "Units,mm\nSubject,S999\n" + "\n".join(",".join(r) for r in [head, *rows])
    elif layout == "semicolon-frame":  # Frame (needs --rate), NAME.X, decimal commas, metres
        head = ["Frame"] + [f"{n}.{a}" for n in names for a in "XYZ"]
        rows = [[str(k + 1), *(f"{v:.6f}".replace(".", ",") for v in xyz_m[k].ravel())] for k in range(len(t_ns))]
        text = "\n".join(";".join(r) for r in [head, *rows])
    elif layout == "vicon":  # two-line header, Frame + Sub Frame, a units row
        above = ["", ""] + [c for n in names for c in (f"S999:{n}", "", "")]
        head = ["Frame", "Sub Frame"] + ["X", "Y", "Z"] * len(names)
        units = ["", ""] + ["mm"] * (3 * len(names))
        rows = [[str(k + 1), "0", *(f"{v:.3f}" for v in mm[k].ravel())] for k in range(len(t_ns))]
        text = "Trajectories\n240\n" + "\n".join(",".join(r) for r in [above, head, units, *rows])
    else:
        raise AssertionError(layout)
    path.write_text(text + "\n")


@pytest.mark.parametrize(("layout", "options"), [
    ("tab-space", {}),
    ("csv-underscore-ms", {}),
    ("semicolon-frame", {"rate": 240.0, "unit": "m"}),
    ("vicon", {"rate": 240.0}),
])
def test_layouts_give_the_qtm_imports_keypoints(tmp_path: Path, davis: tuple, layout: str, options: dict) -> None:
    t, xyz, names, rate = davis
    qtm = tmp_path / "davis.tsv"  # the QTM import of the same 3 s, as QTM writes them
    lines = DAVIS.read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("Frame\t"))
    qtm.write_text("\n".join(lines[: head + 1 + len(t)]) + "\n")
    want, _ = import_qtm(qtm, [], session="s", athlete="a")
    f = tmp_path / f"davis.{layout}.txt"
    write_layout(f, t, xyz, names, rate, layout)
    got, info = import_text(f, session="s", athlete="a", **options)
    assert info["markers"] == 47 and info["rate_hz"] == pytest.approx(240.0, rel=1e-4)
    assert info["warning"] is None
    assert [m.topic for m in got] == [m.topic for m in want]
    meta_got, meta_want = wm.parse_meta(got[0].payload), wm.parse_meta(want[0].payload)
    assert meta_got.model_copy(update={"device": None, "rate_hz": 240.0}) == \
        meta_want.model_copy(update={"device": None})
    if "rate" not in options:  # a Time column: the same frames, byte for byte
        assert [m.log_time_ns for m in got[1:]] == [m.log_time_ns for m in want[1:]]
        assert [m.payload for m in got[1:]] == [m.payload for m in want[1:]]
    else:  # frame k at (k - 1) / 240 s exactly, where QTM's Time column is rounded to 10 us
        g, w = [decode(m.payload) for m in got[1:]], [decode(m.payload) for m in want[1:]]
        assert np.abs(np.concatenate([f.times_ns() for f in g]) - np.concatenate([f.times_ns() for f in w])).max() \
            <= 5_000
        np.testing.assert_allclose(np.concatenate([f.data for f in g]), np.concatenate([f.data for f in w]),
                                   atol=1e-6)


def test_cli_text_import_reports_roles_and_stores_them(tmp_path: Path, davis: tuple,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    t, xyz, names, rate = davis
    f = tmp_path / "davis.txt"
    write_layout(f, t, xyz, names, rate, "tab-space")
    out = tmp_path / "davis.mcap"
    assert main(["import", "text", str(f), "-o", str(out), "--athlete", "s999", "--body-mass", "71"]) == 0
    err = capsys.readouterr().err
    assert "heel=R_heel_B" in err and "hip=R_asis+R_psis" in err and "R_thigh_TA" in err
    [athlete] = athletes_metadata(out)
    assert athlete["id"] == "s999" and athlete["body_mass_kg"] == 71
    assert athlete["markers"]["right"]["knee"] == "R_kneejoint_LA" and "R_tibtub" in athlete["markers"]["unused"]
    meta = wm.parse_meta(next(read_messages(out)).payload)
    assert isinstance(meta, wm.KeypointMeta) and "right_heel" in meta.names and "left_hip" in meta.names


def small(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "m.csv"
    f.write_text(text)
    return f


GOOD = "Time,LHEE X,LHEE Y,LHEE Z\n0.00,1,2,30\n0.01,1,2,31\n0.02,1,2,30\n"


def test_small_files_and_units(tmp_path: Path) -> None:
    m = read_text_markers(small(tmp_path, GOOD))
    assert m.names == ["LHEE"] and m.rate_hz == pytest.approx(100.0) and m.unit == "mm"
    assert m.xyz[1, 0, 2] == pytest.approx(0.031) and "no unit stated" in m.notes[0]
    m = read_text_markers(small(tmp_path, "Time (ms),LHEE X,LHEE Y,LHEE Z\n0,1,2,30\n10,,,\n20,0,0,0\n"
                                          "30,NaN,2,3\n40,1,2,3\n"))
    assert m.rate_hz == pytest.approx(100.0) and not np.isnan(m.xyz[[0, 4]]).any()
    assert np.isnan(m.xyz[1:4, 0, 0]).all() and m.times_ns[-1] == 40_000_000  # empty, 0 0 0 and NaN: gaps


@pytest.mark.parametrize(("text", "needle"), [
    ("", "the file is empty"),
    ("\n  \n", "the file is empty"),
    ("a,b,c,d\n1,2,3,4\n", "no header line"),
    ("Time,LHEE X,LHEE Y,Camera\n0,1,2,3\n", "'LHEE' has no Z column"),
    ("Time,LHEE_x,RHEE,Camera\n0,1,2,3\n", "'LHEE' has no Y, Z column"),
    ("Time,Camera,Sub,Other\n0,1,2,3\n", "no marker columns"),
    ("Time,LHEE X,LHEE Y,LHEE Z\n", "no data rows"),
    ("Time,LHEE X,LHEE Y,LHEE Z\n0,1,2,3\n0.01,1,2\n", r"m.csv:3: 3 cells, the header has 4"),
    ("Time,LHEE X,LHEE Y,LHEE Z\n0,1,2,3\n0.01,1,2,3,4\n", r"m.csv:3: 5 cells"),
    ("Time,LHEE X,LHEE Y,LHEE Z\n0,1,abc,3\n", r"m.csv:2: column 'LHEE Y': 'abc' is not a number"),
    ("Time,LHEE X,LHEE Y,LHEE Z\nzero,1,2,3\n", r"m.csv:2: Time 'zero' is not a number"),
    ("Frame,LHEE X,LHEE Y,LHEE Z\n1,1,2,3\n2,1,2,3\n", "needs --rate"),
    ("Units,m\nTime,LHEE X (mm),LHEE Y (mm),LHEE Z (mm)\n0,1,2,3\n", "several units"),
    ("Time,LHEE X,LHEE Y,LHEE Z,LHEE X\n0,1,2,3,4\n", "appears twice"),
])
def test_malformed_files_are_one_line_errors(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ImportError_, match=needle) as exc:
        read_text_markers(small(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_cli_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = small(tmp_path, "Time,LHEE X,LHEE Y,LHEE Z\n0,1,2,3\n0.01,1,2\n")
    assert main(["import", "text", str(f), "-o", str(tmp_path / "x.mcap")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("poserun: ") and "3 cells" in err[0]
    assert not (tmp_path / "x.mcap").exists()
    f = small(tmp_path, GOOD)
    assert main(["import", "text", str(f), "-o", str(tmp_path / "x.mcap"), "--unit", "m"]) == 0
    f = small(tmp_path, "Units,m\n" + GOOD)
    assert main(["import", "text", str(f), "-o", str(tmp_path / "x.mcap"), "--unit", "mm"]) == 2
    assert "the file says m, --unit says mm" in capsys.readouterr().err


def test_implausible_heights_are_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A runner in mm read as m spans hundreds of metres; in m read as mm, a millimetre."""
    rows = ["Time,LANK X,LANK Y,LANK Z,LSHO X,LSHO Y,LSHO Z"]
    rows += [f"{k / 100:.2f},100,0,{80 + 40 * np.sin(k / 5):.1f},100,0,1450" for k in range(100)]
    f = small(tmp_path, "\n".join(rows) + "\n")
    assert import_text(f, session="s", athlete="a")[1]["warning"] is None  # mm: a 1.4 m span
    warning = import_text(f, session="s", athlete="a", unit="m")[1]["warning"]
    assert warning and "is the file in mm" in warning
    rows = rows[:1] + [f"{k / 100:.2f},0.1,0,{0.08 + 0.04 * np.sin(k / 5):.4f},0.1,0,1.45" for k in range(100)]
    f = small(tmp_path, "\n".join(rows) + "\n")
    assert import_text(f, session="s", athlete="a", unit="m")[1]["warning"] is None
    assert "is the file in m" in import_text(f, session="s", athlete="a", unit="mm")[1]["warning"]
    assert main(["import", "text", str(f), "-o", str(tmp_path / "x.mcap"), "--unit", "mm"]) == 0
    assert "warning:" in capsys.readouterr().err
