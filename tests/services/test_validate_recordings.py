"""``poserun validate RECORDING...``: any recording with truth, scored per file and pooled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from poserun.recording import RecordingWriter
from poserun.services.validate import MATCH_MS, pooled, score, score_recordings
from poserun.wire.meta import TruthEvent
from tests.conftest import CEILING
from tests.services.test_analyze import write_team


def stance(ic_ms: float, to_ms: float, foot: str = "left", cadence: float | None = None) -> dict:
    return {"type": "stance", "session": "s", "athlete": "a", "foot": foot, "ic_ns": int(ic_ms * 1e6),
            "to_ns": int(to_ms * 1e6), "cadence_spm": cadence}


def truth(ic_ms: float, to_ms: float, foot: str = "left", step: int = 0) -> TruthEvent:
    return TruthEvent(foot=foot, step=step, ic_ns=int(ic_ms * 1e6), to_ns=int(to_ms * 1e6))  # type: ignore[arg-type]


def test_matching_is_one_to_one_and_counts_what_matches_nothing() -> None:
    events = [truth(0, 250, "left"), truth(500, 750, "right", 1), truth(1000, 1250, "left", 2)]
    records = [stance(10, 270, "left"), stance(15, 260, "left"),  # two detections near one contact
               stance(520, 760, "left"),                          # right contact, given to the wrong foot
               stance(1000 + MATCH_MS + 1, 1300)]                 # too far from the third contact
    s = score(records, {("s", "a"): events})
    assert s["contacts"] == 3 and s["matched"] == 2 and s["wrong_foot"] == 1
    assert s["extra"] == 2  # the second detection near 0 ms and the late one
    assert list(s["errors"]["ic"]) == [10.0, 20.0] and list(s["errors"]["ct"]) == [10.0, -10.0]
    both = pooled([s, s])
    assert both["contacts"] == 6 and len(both["errors"]["ic"]) == 4


def test_a_simulated_recording_with_truth_scores_near_perfect(tmp_path: Path) -> None:
    path = tmp_path / "team.mcap"
    write_team(path, "v1", seconds=10.0)
    [(name, s)] = score_recordings([str(path)])
    assert name == str(path) and s["matched"] == s["contacts"] > 40 and s["wrong_foot"] == 0
    assert abs(s["errors"]["ic"]).mean() < 5.0 and abs(s["errors"]["ct"]).mean() < 10.0


def test_cli_prints_a_table_and_refuses_a_recording_without_truth(tmp_path: Path) -> None:
    good = tmp_path / "team.mcap"
    write_team(good, "v2", seconds=4.0)
    bare = tmp_path / "bare.mcap"
    RecordingWriter(bare).close()
    proc = subprocess.run([sys.executable, "-m", "poserun", "validate", str(good), str(good)],
                          capture_output=True, text=True, timeout=CEILING)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(lines) == 4 and lines[-1].startswith("| pooled |")
    proc = subprocess.run([sys.executable, "-m", "poserun", "validate", str(bare)], capture_output=True, text=True,
                          timeout=CEILING)
    assert proc.returncode == 2 and "carries no truth" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("junk", [b"", b"not json"])
def test_malformed_truth_is_no_contact(tmp_path: Path, junk: bytes) -> None:
    from poserun.services.validate import truth_events
    from poserun.wire import topics

    path = tmp_path / "t.mcap"
    w = RecordingWriter(path)
    w.write(topics.athlete_topic("s", "a", "truth"), junk, 1)
    w.write(topics.athlete_topic("s", "a", "truth"), truth(0, 200).model_dump_json().encode(), 2)
    w.close()
    assert [e.ic_ns for e in truth_events(str(path))[("s", "a")]] == [0]
