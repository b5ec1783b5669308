"""``poserun analyze``: the processor over recordings offline, equal to the live service."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import poserun
from poserun.recording import RecordingWriter
from poserun.services.analyze import analyze_files, summarize
from poserun.services.fusion import FusionService
from poserun.services.replay import replay
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, SimSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.memory import ListSink
from tests.conftest import CEILING, frames_taken, until


def write_team(path: Path, session: str, athletes: int = 2, seconds: float = 6.0) -> int:
    """A simulated team straight into a recording (log time = when each message is due); frames written."""
    team = SimTeam(session, SimSettings(athletes=athletes, seed=11, truth=True,
                                        profiles=["pose", "forced_lander"], forced_share=0.6))
    writer = RecordingWriter(path, metadata={"session": session, "source": "test"})
    for m in team.meta_messages():
        writer.write(m.topic, m.payload, 1, retain=True, qos=1)
    frames = 0
    for _ in range(round(seconds / 0.5)):
        msgs, steps = team.step(50)
        msgs += team.truth_messages(steps)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            writer.write(m.topic, m.payload, 1_000_000_000 + m.at_ns, retain=m.retain, qos=m.qos)
            frames += m.frames if "/data/" in m.topic else 0
    writer.close()
    return frames


def without_clock(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "emitted_ns"} for r in records]


def test_offline_equals_the_live_service(broker: BrokerSettings, session_id: str, tmp_path: Path) -> None:
    path = tmp_path / "team.mcap"
    frames = write_team(path, session_id)
    offline = analyze_files([path]).records
    assert {r["athlete"] for r in offline} == {"a01", "a02"} and len(offline) > 40

    live_session = session_id + "live"

    async def live() -> list[dict]:
        sink = ListSink()
        svc = FusionService(load_settings(overrides={"broker": {"url": broker.url}}), [SinkRunner(sink)],
                            session=live_session)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        await asyncio.to_thread(replay, broker, path, speed=0, session=live_session)
        await until(frames_taken(svc, frames), "the live service to take every frame")
        stop.set()
        await task
        return sink.records

    got = asyncio.run(live())
    expected = [{**r, "session": live_session, "id": r["id"].replace(session_id, live_session, 1)}
                for r in without_clock(offline)]
    # the same records, each athlete's in the same order (the ingest is fair between athletes: while
    # it is behind, as under a replay at full speed, it interleaves them, not in arrival order)
    def by_athlete(records: list[dict]) -> dict[str, list[dict]]:
        return {a: [r for r in records if r["athlete"] == a] for a in sorted({r["athlete"] for r in records})}

    assert by_athlete(without_clock(got)) == by_athlete(expected)


def test_deterministic_and_summarised(tmp_path: Path) -> None:
    path = tmp_path / "team.mcap"
    write_team(path, "s1")
    first, second = analyze_files([path]).records, analyze_files([path]).records
    assert first == second  # emitted_ns included: the recording's clock, not the wall's
    rows = {r["athlete"]: r for r in summarize(first)}
    assert set(rows) == {"a01", "a02"}
    for row in rows.values():
        assert row["stances"] == row["left"] + row["right"] > 12  # 6 s at about 3 steps/s
        assert 140 < row["cadence_spm"] < 200 and 0.15 < row["support_time_s"] < 0.35
    assert rows["a02"]["forced_landings"] > rows["a01"]["forced_landings"]  # the forced lander
    listed = poserun.analyze(path, frame=False)
    assert listed == first


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_cli_writes_records_and_a_summary(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "team.mcap"
    write_team(path, "s2", seconds=3.0)
    expected = analyze_files([path]).records
    out = tmp_path / f"records{suffix}"
    proc = subprocess.run([sys.executable, "-m", "poserun", "analyze", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=CEILING)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(expected)} records -> {out}" in proc.stderr
    assert "a01" in proc.stderr and "a02" in proc.stderr and "stances" in proc.stderr
    if suffix == ".jsonl":
        assert [json.loads(line) for line in out.read_text().splitlines()] == json.loads(json.dumps(expected))
    elif suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == len(expected) and rows[0]["type"] == expected[0]["type"]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert table.num_rows == len(expected) and "support_time_s" in table.column_names


def test_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "x.mcap"
    bogus.write_text("no")
    for args in ([str(bogus)], [str(bogus), "-o", str(tmp_path / "r.txt")]):
        proc = subprocess.run([sys.executable, "-m", "poserun", "analyze", *args], capture_output=True, text=True,
                              timeout=CEILING)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_csv_in_g_read_as_metres_per_second_squared_is_warned_about(tmp_path: Path) -> None:
    """At import (one line on stderr) and in the analysis (the processor's counted warning)."""
    from tests.processors.test_checks import G, swinging_segment

    t, acc = swinging_segment(seconds=15.0)
    src = tmp_path / "shank.csv"
    src.write_text("time_s,ax,ay,az\n" + "".join(f"{ti / 1e9:.4f},{a[0] / G:.5f},{a[1] / G:.5f},{a[2] / G:.5f}\n"
                                                   for ti, a in zip(t, acc, strict=True)))
    rec = tmp_path / "shank.mcap"
    proc = subprocess.run([sys.executable, "-m", "poserun", "import", "csv", str(src), "-o", str(rec), "--source",
                           "imu_shank_right", "--channels", "ax,ay,az"], capture_output=True, text=True,
                          timeout=CEILING)
    assert proc.returncode == 0, proc.stderr
    assert "is the file in g? (--accel-unit g)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "poserun", "analyze", str(rec), "-o", str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, timeout=CEILING)
    assert proc.returncode == 0, proc.stderr
    assert "imu_shank_right_accel_unit_implausible" in proc.stderr
