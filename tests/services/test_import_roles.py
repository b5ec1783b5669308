"""Marker roles: recognised from the common naming conventions, set by a mapping file, and what the
processor then reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poserun.cli import main
from poserun.processors.keypoints import KeypointLayout
from poserun.recording import athletes_metadata, read_messages
from poserun.services.import_roles import apply_roles, foot_indices, recognise, resolve
from poserun.services.importer import ImportError_
from poserun.wire import meta as wm

PLUG_IN_GAIT = ["LFHD", "C7", "LSHO", "RSHO", "LASI", "RASI", "LPSI", "RPSI", "LKNE", "RKNE", "LANK", "RANK",
                "LHEE", "RHEE", "LTOE", "RTOE", "LTHI", "RTIB"]
RBDS = ["R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS", "R.Knee", "R.Knee.Medial", "L.Knee", "L.Knee.Medial",
        "R.Ankle.Lat", "R.Ankle.Medial", "L.Ankle.Lat", "L.Ankle.Medial", "R.Heel.Top", "R.Heel.Bottom",
        "R.Heel.Lateral", "L.Heel.Top", "L.Heel.Bottom", "L.Heel.Lateral", "R.MT1", "R.MT5", "L.MT1", "L.MT5",
        "R.Shoulder", "L.Shoulder"]
OPENSIM = ["r_calc", "l_calc", "r_toe", "l_toe", "r_5meta", "l_5meta", "r_1meta", "l_1meta", "r_knee",
           "l_knee", "r_ankle", "l_ankle", "r_hip", "l_hip", "r_shoulder", "l_shoulder", "r_thigh"]


def roles_of(names: list[str]) -> dict[str, dict[str, list[str]]]:
    return recognise(names).roles


def test_plug_in_gait() -> None:
    r = recognise(PLUG_IN_GAIT)
    assert r.roles["left"] == {"heel": ["LHEE"], "toe": ["LTOE"], "ankle": ["LANK"], "knee": ["LKNE"],
                               "hip": ["LASI", "LPSI"], "shoulder": ["LSHO"]}
    assert r.roles["right"]["hip"] == ["RASI", "RPSI"] and r.missing() == []
    assert r.unused == ["LFHD", "C7", "LTHI", "RTIB"]


def test_rbds_style() -> None:
    r = roles_of(RBDS)
    for side, s in (("right", "R"), ("left", "L")):
        assert r[side] == {"heel": [f"{s}.Heel.Bottom"], "mt1": [f"{s}.MT1"], "mt5": [f"{s}.MT5"],
                           "ankle": [f"{s}.Ankle.Lat"], "knee": [f"{s}.Knee"], "hip": [f"{s}.ASIS", f"{s}.PSIS"],
                           "shoulder": [f"{s}.Shoulder"]}


def test_opensim_model_markers() -> None:
    r = roles_of(OPENSIM)
    assert r["right"] == {"heel": ["r_calc"], "toe": ["r_toe"], "mt1": ["r_1meta"], "mt5": ["r_5meta"],
                          "ankle": ["r_ankle"], "knee": ["r_knee"], "hip": ["r_hip"], "shoulder": ["r_shoulder"]}
    assert r["left"]["heel"] == ["l_calc"] and r["left"]["mt5"] == ["l_5meta"]


@pytest.mark.parametrize(("name", "side", "role"), [
    ("R_heel_B", "right", "heel"), ("LP5MT", "left", "mt5"), ("R_met_5", "right", "mt5"),
    ("L_kneejoint_LA", "left", "knee"), ("RLMAL", "right", "ankle"), ("LeftKnee", "left", "knee"),
    ("KNEE_R", "right", "knee"), ("left_foot_index", "left", "toe"), ("R.Toe.Tip", "right", "toe"),
    ("L_acr", "left", "shoulder"), ("RGT", "right", "hip"),
])
def test_single_names(name: str, side: str, role: str) -> None:
    assert roles_of([name])[side] == {role: [name]}


def test_the_better_of_two_candidates() -> None:
    """The heel's bottom over its top or side; the lateral knee over the medial one, whatever the order."""
    r = roles_of(["R_heel_T", "R_heel_LA", "R_heel_B", "R.Knee.Med", "R.Knee.Lat"])
    assert r["right"] == {"heel": ["R_heel_B"], "knee": ["R.Knee.Lat"]}


def write_map(tmp_path: Path, text: str, suffix: str) -> Path:
    f = tmp_path / f"map{suffix}"
    f.write_text(text)
    return f


def test_a_mapping_file_overrides(tmp_path: Path) -> None:
    names = [*PLUG_IN_GAIT, "LKJC", "LHEEL2"]
    toml = write_map(tmp_path, '[left]\nknee = "LKJC"\nheel = "LHEEL2"\nhip = ["LASI"]\ntoe = ""\n', ".toml")
    r = resolve(names, toml)
    assert r.roles["left"]["knee"] == ["LKJC"] and r.roles["left"]["heel"] == ["LHEEL2"]
    assert r.roles["left"]["hip"] == ["LASI"] and "toe" not in r.roles["left"]
    assert r.roles["right"]["knee"] == ["RKNE"]  # roles the file leaves out: from the names
    assert {"LKNE", "LHEE", "LPSI", "LTOE"} <= set(r.unused) and r.mapped
    js = write_map(tmp_path, json.dumps({"right": {"ankle": "LANK", "toe": None}}), ".json")
    r = resolve(names, js)
    assert r.roles["right"]["ankle"] == ["LANK"] and "ankle" not in r.roles["left"]  # a marker, one role
    assert "toe" not in r.roles["right"]


@pytest.mark.parametrize(("text", "suffix", "needle"), [
    ('[left]\nelbow = "LELB"\n', ".toml", r"left.elbow: unknown role; roles are heel, toe"),
    ('[left]\nknee = "LKNEE_X"\n', ".toml", r"left.knee = 'LKNEE_X' is not a marker of the file"),
    ('[middle]\nknee = "LKNE"\n', ".toml", "'middle' is not a side"),
    ('{"left": {"knee": 3}}', ".json", "must be a marker name"),
    ("[left\nknee=", ".toml", "not valid TOML"),
    ("{", ".json", "not valid JSON"),
])
def test_bad_mapping_files(tmp_path: Path, text: str, suffix: str, needle: str) -> None:
    with pytest.raises(ImportError_, match=needle):
        resolve(PLUG_IN_GAIT, write_map(tmp_path, text, suffix))
    with pytest.raises(ImportError_, match="No such file"):
        resolve(PLUG_IN_GAIT, tmp_path / "absent.toml")


def test_the_processor_reads_the_mapped_markers(tmp_path: Path) -> None:
    """Names the processor would read otherwise (LKNE, LTOE) lose to the mapping once renamed."""
    names = [*PLUG_IN_GAIT, "LKJC", "LHAL"]
    xyz = np.random.default_rng(1).normal(size=(5, len(names), 3))
    mapping = write_map(tmp_path, '[left]\nknee = "LKJC"\ntoe = "LHAL"\n', ".toml")
    out_names, out_xyz = apply_roles(names, xyz, resolve(names, mapping))
    layout = KeypointLayout.from_meta(out_names, "xyzc", "m", 1.0, (0.0, 0.0), "down", "3d", "+z", "+x")
    assert layout is not None
    knee = layout.groups[1]  # left knee
    assert [out_names[i] for i in knee] == ["left_knee"]
    np.testing.assert_array_equal(out_xyz[:, knee[0]], xyz[:, names.index("LKJC")])
    assert layout.toes is not None and out_names[layout.toes[0]] == "left_toe"
    np.testing.assert_array_equal(out_xyz[:, layout.toes[0]], xyz[:, names.index("LHAL")])
    hip = out_names.index("left_hip")  # LASI + LPSI: their mean
    np.testing.assert_allclose(out_xyz[:, hip], xyz[:, [names.index("LASI"), names.index("LPSI")]].mean(axis=1))
    assert out_names[:6] == ["left_heel", "left_toe", "left_ankle", "left_knee", "left_hip", "left_shoulder"]
    assert "LKNE" in out_names and "LTOE" in out_names  # no role, kept as they were
    assert foot_indices(names, resolve(names, mapping))["left"] == sorted([names.index("LHEE"), names.index("LHAL")])


def test_a_name_clash_is_an_error() -> None:
    names = ["left_knee", "LKJC"]
    with pytest.raises(ImportError_, match="'left_knee' has a role's name but not that role"):
        apply_roles(names, np.zeros((1, 2, 3)), resolve(names, {"left": {"knee": ["LKJC"]}}))


TRC_HEAD = ("PathFileType\t4\t(X/Y/Z)\tr.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t"
            "OrigDataStartFrame\tOrigNumFrames\n100\t100\t3\t3\tmm\t100\t1\t3\nFrame#\tTime\tLHEE\t\t\tLKJC\t\t\t"
            "RHEE\t\t\n\t\tX1\tY1\tZ1\tX2\tY2\tZ2\tX3\tY3\tZ3\n\n")


def test_cli_reports_and_stores_the_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trc = tmp_path / "r.trc"
    trc.write_text(TRC_HEAD + "".join(f"{k + 1}\t{k / 100}\t1\t2\t30\t1\t2\t500\t1\t2\t40\n" for k in range(3)))
    mapping = write_map(tmp_path, '{"left": {"knee": "LKJC"}}', ".json")
    out = tmp_path / "r.mcap"
    assert main(["import", "trc", str(trc), "-o", str(out), "--markers", str(mapping), "--up", "+z"]) == 0
    err = capsys.readouterr().err
    assert "left: heel=LHEE, knee=LKJC" in err and "right: heel=RHEE" in err and "right.shoulder: none" in err
    [athlete] = athletes_metadata(out)
    assert athlete["markers"]["left"] == {"heel": "LHEE", "knee": "LKJC"} and athlete["markers"]["from"] == \
        "mapping file"
    meta = wm.parse_meta(next(read_messages(out)).payload)
    assert isinstance(meta, wm.KeypointMeta) and meta.names == ["left_heel", "left_knee", "right_heel"]
    bad = write_map(tmp_path, '{"left": {"knee": "NOPE"}}', ".json")
    assert main(["import", "trc", str(trc), "-o", str(tmp_path / "x.mcap"), "--markers", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'NOPE' is not a marker of the file" in err[0]
