"""The influx sink against a real VictoriaMetrics (Debian's victoria-metrics): points from the
simulator's records through the fusion service, read back exactly with PromQL and /api/v1/export."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poserun.services.broker import free_port
from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, SimSettings, load_settings
from poserun.sinks.base import build_sink
from poserun.sinks.influx import InfluxSink, write_url
from poserun.sinks.line_protocol import BadRecord, fields, stance_point
from tests.conftest import CEILING, require, until, wait_until

EXE = shutil.which("victoria-metrics") or shutil.which("victoriametrics")


def live_records(athletes: int, seconds: float, seed: int = 3) -> list[dict[str, Any]]:
    """A simulated team through one FusionService (as tests/services/sim_feed.py) on the wall clock,
    so ``emitted_ns`` is now and the points fall inside the server's retention."""
    team = SimTeam("club", SimSettings(athletes=athletes, seed=seed,
                                       profiles=["pose", "forced_lander", "heel_striker"]))
    settings = load_settings(overrides={"athletes": [AthleteSettings(
        id=s.athlete_id, body_mass_kg=s.body_mass_kg, leg_length_m=s.leg_length_m).model_dump() for s in team.specs]})
    svc = FusionService(settings, session="club")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    records: list[dict[str, Any]] = []
    for _ in range(int(seconds * 2)):
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            records += svc.handle(m.topic, m.payload, 10**18 + m.at_ns)
    return records


class Victoria:
    """A private VictoriaMetrics on a port of its own, data in a temporary directory."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert EXE is not None
        self.proc = subprocess.Popen([EXE, f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
                                      "-search.latencyOffset=0s", "-search.disableCache", "-retentionPeriod=100y",
                                      "-loggerLevel=ERROR"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._healthy, "VictoriaMetrics to answer /health")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"victoria-metrics exited with {self.proc.returncode}", pytrace=False)
        with contextlib.suppress(OSError):
            return urllib.request.urlopen(f"{self.base}/health", timeout=2).read().strip() == b"OK"
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(CEILING)
        self.proc = None

    def get(self, path: str, **params: str) -> bytes:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        return urllib.request.urlopen(url, timeout=30).read()

    def export(self, match: str) -> list[dict[str, Any]]:
        self.get("/internal/force_flush")
        return [json.loads(line) for line in self.get("/api/v1/export", **{"match[]": match}).splitlines() if line]

    def query(self, promql: str, at_ms: int) -> list[dict[str, Any]]:
        """``promql`` evaluated at ``at_ms`` (by default the server takes now, in whole seconds)."""
        body = json.loads(self.get("/api/v1/query", query=promql, time=f"{at_ms / 1000:.3f}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def points(self, metric: str) -> int:
        return int(sum(len(s["values"]) for s in self.export(metric)))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Victoria]:
    require(EXE is not None, "the victoria-metrics binary is missing (Debian package 'victoria-metrics'; "
                             ".ci/run installs it)")
    vm = Victoria(tmp_path / "vm", free_port())
    vm.start()
    yield vm
    vm.stop()


def test_a_stance_as_one_line() -> None:
    rec = {"type": "stance", "session": "s 1", "athlete": "a,b=c", "foot": "left", "ic_ns": 5, "to_ns": 9,
           "emitted_ns": 1_796_000_000_123_456_789, "support_time_s": 0.2125, "flight_time_s": None,
           "heel_contact": True, "forced_landing": False, "strike_zone": "heel", "cadence_spm": float("nan"),
           "symmetry_pct": {"support_time_s": -6.28}, "sources": ["insole"], "pose_score": 71}
    line = stance_point(rec)
    assert line == (r"poserun_stance,session=s\ 1,athlete=a\,b\=c,foot=left forced_landing=false,heel_contact=true,"
                    "pose_score=71.0,support_time_s=0.2125,symmetry_pct_support_time_s=-6.28 1796000000123")
    for bad in ({**rec, "athlete": None}, {**rec, "foot": ""}, {**rec, "athlete": "a\nb"},
                {"type": "stance", "athlete": "a", "foot": "left", "emitted_ns": 1, "strike_zone": "heel"},
                {**rec, "emitted_ns": None}):
        with pytest.raises(BadRecord):
            stance_point(bad)


def test_a_measurement_escapes_only_comma_and_space() -> None:
    rec = {"type": "stance", "session": "s", "athlete": "a", "foot": "left", "emitted_ns": 2_000_000,
           "support_time_s": 0.2}
    assert stance_point(rec, measurement="run=1 club,x").startswith(r"run=1\ club\,x,session=s,")


def test_a_burst_keeps_its_order_and_a_clock_step_back_keeps_its_time() -> None:
    sink = InfluxSink(url="http://127.0.0.1:9/write")
    ms = 1_796_000_000_000
    stamps = [sink._timestamp({"session": "s", "athlete": "a", "foot": "left", "emitted_ns": t * 1_000_000})
              for t in (ms, ms, ms, ms + 1, ms - 60_000)]
    assert stamps == [ms, ms + 1, ms + 2, ms + 3, ms - 60_000]  # one burst in order; then NTP went back a minute
    assert sink.clock_steps_back == 1


def test_bad_options_are_refused() -> None:
    for opts in ({"url": "ftp://x/write"}, {"url": "localhost:8428"}, {"batch_size": 0},
                 {"batch_size": 10, "max_backlog": 5}, {"flush_interval_s": 0}):
        with pytest.raises(ValueError):
            build_sink("influx", opts, {})
    assert write_url("http://h:8086/write?db=poserun&precision=ns") == "http://h:8086/write?db=poserun&precision=ms"


def timed_stances(records: list[dict[str, Any]]) -> list[tuple[str, str, int, dict[str, float]]]:
    """(athlete, foot, timestamp ms, fields) per stance in order, timed as the sink times them
    (emitted_ns in ms, strictly increasing per athlete and foot)."""
    out = []
    last: dict[tuple[str, str], int] = {}
    for r in records:
        if r["type"] != "stance":
            continue
        key = (r["athlete"], r["foot"])
        ms = last[key] = max(r["emitted_ns"] // 1_000_000, last.get(key, -1) + 1)
        values = {name: 1.0 if text == "true" else 0.0 if text == "false" else float(text)
                  for name, text in fields(r).items()}
        out.append((r["athlete"], r["foot"], ms, values))
    return out


def expected_points(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], float]:
    """(athlete, foot, field, timestamp ms) -> value."""
    return {(a, f, name, ms): v for a, f, ms, values in timed_stances(records) for name, v in values.items()}


def test_every_stance_reaches_victoria_metrics_exactly(victoria: Victoria) -> None:
    records = live_records(athletes=3, seconds=12)
    stances = [r for r in records if r["type"] == "stance"]
    assert len(stances) > 30

    async def main() -> dict[str, object]:
        sink = build_sink("influx", {"url": f"{victoria.base}/write", "batch_size": 16, "flush_interval_s": 0.2}, {})
        await sink.start()
        for k in range(0, len(records), 25):  # (as the sink runner hands them over: batches in order)
            await sink.write_batch(records[k:k + 25])
        await sink.write_batch([{"type": "stance", "athlete": "a01", "emitted_ns": 1}])  # no foot: bad
        await until(lambda: sink.connection_stats()["points_written"] == len(stances), "every point written")
        await sink.close()
        return sink.connection_stats()  # type: ignore[attr-defined, no-any-return]

    stats = asyncio.run(main())
    assert stats["bad_records"] == 1 and stats["backlog"] == 0 and stats["db_errors"] == 0
    want = expected_points(records)
    wait_until(lambda: victoria.points('{__name__=~"poserun_stance_.*"}') == len(want), "the points to be searchable")
    got = {(s["metric"]["athlete"], s["metric"]["foot"], s["metric"]["__name__"].removeprefix("poserun_stance_"), t): v
           for s in victoria.export('{__name__=~"poserun_stance_.*"}') for v, t in zip(s["values"], s["timestamps"],
                                                                                     strict=True)}
    assert got == want
    assert {s["metric"]["session"] for s in victoria.export("poserun_stance_support_time_s")} == {"club"}
    # PromQL over the points: stances per athlete and foot, and their longest support time
    at = max(ms for _a, _f, ms, _v in timed_stances(records)) + 5000  # (the server takes whole seconds)
    counted = {(r["metric"]["athlete"], r["metric"]["foot"]): float(r["value"][1])
               for r in victoria.query("count_over_time(poserun_stance_support_time_s[1h])", at)}
    per_foot: dict[tuple[str, str], list[float]] = {}
    for r in stances:
        per_foot.setdefault((r["athlete"], r["foot"]), []).append(float(r["support_time_s"]))
    assert counted == {k: float(len(v)) for k, v in per_foot.items()}
    peaks = {(r["metric"]["athlete"], r["metric"]["foot"]): float(r["value"][1])
             for r in victoria.query("max_over_time(poserun_stance_support_time_s[1h])", at)}
    assert peaks == {k: max(v) for k, v in per_foot.items()}


def test_the_sink_waits_for_a_server_that_is_down_and_loses_nothing_within_its_backlog(tmp_path: Path) -> None:
    require(EXE is not None, "the victoria-metrics binary is missing (Debian package 'victoria-metrics'; "
                             ".ci/run installs it)")
    records = live_records(athletes=2, seconds=8, seed=5)
    stances = [r for r in records if r["type"] == "stance"]
    vm = Victoria(tmp_path / "vm", free_port())  # not started yet: its port refuses connections

    async def main() -> dict[str, object]:
        sink = InfluxSink(url=f"{vm.base}/write", batch_size=8, flush_interval_s=0.1, retry_max_s=0.5)
        await sink.start()
        await sink.write_batch(records[: len(records) // 2])
        await until(lambda: sink.errors >= 3, "the sink to retry against the absent server")
        assert sink.written == 0 and sink.connection_stats()["backlog"] > 0
        await sink.write_batch(records[len(records) // 2:])  # written while the server is still away
        await asyncio.to_thread(vm.start)
        await until(lambda: sink.written == len(stances), "the backlog to reach the server once it is up")
        await sink.close()
        return sink.connection_stats()

    try:
        stats = asyncio.run(main())
        assert stats["backlog"] == 0 and stats["backlog_dropped"] == 0 and stats["dropped_closed"] == 0
        assert "Connection refused" in str(stats["last_error"])
        wait_until(lambda: vm.points("poserun_stance_support_time_s") == len(stances), "the points to be searchable")
        want = {k: v for k, v in expected_points(records).items() if k[2] == "support_time_s"}
        got = {(s["metric"]["athlete"], s["metric"]["foot"], "support_time_s", t): v
               for s in vm.export("poserun_stance_support_time_s")
               for v, t in zip(s["values"], s["timestamps"], strict=True)}
        assert got == want
    finally:
        vm.stop()


def test_a_full_backlog_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    require(EXE is not None, "the victoria-metrics binary is missing (Debian package 'victoria-metrics'; "
                             ".ci/run installs it)")
    records = live_records(athletes=2, seconds=8, seed=7)
    stances = [r for r in records if r["type"] == "stance"]
    keep = 10
    assert len(stances) > 2 * keep
    vm = Victoria(tmp_path / "vm", free_port())

    async def main() -> dict[str, object]:
        sink = InfluxSink(url=f"{vm.base}/write", batch_size=5, flush_interval_s=0.1, retry_max_s=0.3,
                          max_backlog=keep)
        await sink.start()
        for r in records:
            await sink.write_batch([r])
        await until(lambda: sink.errors >= 2, "the sink to retry against the absent server")
        assert sink.connection_stats()["backlog"] == keep
        await asyncio.to_thread(vm.start)
        await until(lambda: sink.written == keep, "the kept points to reach the server")
        await sink.close()
        return sink.connection_stats()

    try:
        stats = asyncio.run(main())
        assert stats["backlog_dropped"] == len(stances) - keep and stats["backlog"] == 0
        wait_until(lambda: vm.points("poserun_stance_support_time_s") == keep, "the points to be searchable")
        got = {(s["metric"]["athlete"], s["metric"]["foot"], t)
               for s in vm.export("poserun_stance_support_time_s") for t in s["timestamps"]}
        assert got == {(a, f, ms) for a, f, ms, _ in timed_stances(records)[-keep:]}  # the newest, not the oldest
    finally:
        vm.stop()


def test_points_the_server_refuses_are_counted_and_not_sent_again(victoria: Victoria) -> None:
    records = live_records(athletes=1, seconds=6, seed=9)
    stances = [r for r in records if r["type"] == "stance"]

    async def main() -> dict[str, object]:
        sink = InfluxSink(url=f"{victoria.base}/no-such-path", batch_size=4, flush_interval_s=0.1)  # VM: HTTP 400
        await sink.start()
        await sink.write_batch(records)
        await until(lambda: sink.rejected == len(stances), "the refused batches to be counted")
        await sink.close()
        return sink.connection_stats()

    stats = asyncio.run(main())
    assert stats["db_errors"] == 0 and stats["points_written"] == 0 and stats["backlog"] == 0
    assert "HTTP 400" in str(stats["last_error"])
