"""The JSON-lines sink on records as the processor emits them, in both formats, to a real file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from poserun.services.validate import SUBSETS, run_session
from poserun.sinks.jsonl import JsonLinesSink


def write(tmp_path: Path, fmt: str, records: list[dict]) -> list[str]:
    path = tmp_path / f"out.{fmt}"
    sink = JsonLinesSink(str(path), format=fmt)

    async def go() -> None:
        await sink.start()
        await sink.write_batch(records)
        await sink.close()
    asyncio.run(go())
    return path.read_text().splitlines()


def test_text_format_takes_stances_without_an_insole(tmp_path: Path) -> None:
    """A foot IMU only gives no peak force (null): the line says so instead of dropping the batch."""
    records, _truth, _profiles = run_session(SUBSETS["foot IMU only"], 4.0, 3, per_profile=1)
    stances = [r for r in records if r["type"] == "stance"]
    assert stances and all(r["peak_force_bw"] is None for r in stances)
    lines = write(tmp_path, "text", records)
    assert len(lines) == len(records)
    assert all(" peak  -   BW" in line for line in lines if " stance " in line)
    assert any(" landing " in line for line in lines)


def test_json_format_round_trips_every_record(tmp_path: Path) -> None:
    records, _truth, _profiles = run_session(SUBSETS["all sensors"], 3.0, 3, per_profile=1)
    lines = write(tmp_path, "json", records)
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(records))
