"""Recording and replay: what a session published comes back byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from poserun.recording import read_messages
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.recorder import record
from poserun.services.replay import replay, rewrite_session
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, load_settings
from poserun.wire import topics

pytestmark = pytest.mark.broker


def recorded(path: Path, channel: str = "data") -> list[tuple[str, bytes]]:
    out = []
    for m in read_messages(path):
        if topics.parse(m.topic).channel == channel:
            out.append((m.topic, m.payload))
    return out


def start_recorder(broker: BrokerSettings, path: Path, session: str) -> tuple[threading.Thread, threading.Event]:
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=record, args=(broker, path),
                         kwargs={"session": session, "stop": stop, "ready": ready, "idle_stop": 1.5})
    t.start()
    assert ready.wait(10)
    return t, stop


def test_record_then_replay_is_byte_identical(broker: BrokerSettings, session_id: str,
                                              tmp_path: Path) -> None:
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id},
                                        "sim": {"athletes": 3, "speed": 5, "truth": True}})
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    rec, _ = start_recorder(broker, first, session_id)
    run_sim_gateway(settings, duration=5.0)
    rec.join(20)
    # the recording holds exactly what the simulator made (nothing lost or altered)
    team = SimTeam(session_id, settings.sim)
    made = []
    for _ in range(10):
        made += [(m.topic, m.payload) for m in team.step(50)[0]]
    got = recorded(first)
    assert sorted(got) == sorted(made)
    assert len(recorded(first, "truth")) > 10
    assert {t for t, _ in recorded(first, "meta")} == {m.topic for m in team.meta_messages()}
    # replay under a new session id with the original timing, and record that
    again = session_id + "r"
    rec, _ = start_recorder(broker, second, again)
    stats = replay(broker, first, speed=1.0, session=again)
    rec.join(20)
    assert stats.messages == sum(1 for _ in read_messages(first))
    back = [(rewrite_session(t, session_id), p) for t, p in recorded(second)]
    assert back == got  # same frames, same order, same bytes
    assert recorded(second, "truth") == [(rewrite_session(t, again), p)
                                         for t, p in recorded(first, "truth")]


def cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "poserun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
def test_thirty_athletes_sixty_seconds_at_ten_times(private_mosquitto: str, tmp_path: Path) -> None:
    """The foundation's acceptance: 30 athletes x 60 s at --speed 10, recorded and replayed."""
    url = private_mosquitto
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"

    def recorder(path: Path, session: str) -> subprocess.Popen[str]:
        ready = tmp_path / f"{path.stem}.ready"
        proc = cli("record", str(path), "--broker", url, "--session", session, "--idle-stop", "3",
                   "--ready-file", str(ready))
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
            time.sleep(0.05)
        return proc

    procs: list[subprocess.Popen[str]] = []
    try:
        rec = recorder(first, "acc")
        procs.append(rec)
        gw = cli("gateway", "sim", "--broker", url, "--session", "acc", "--athletes", "30",
                 "--duration", "60", "--speed", "10")
        procs.append(gw)
        assert gw.wait(300) == 0, gw.stderr and gw.stderr.read()
        assert rec.wait(120) == 0
        rec = recorder(second, "acc2")
        procs.append(rec)
        # original timing: the recorder keeps pace with a live gateway, not with a burst
        rp = cli("gateway", "replay", str(first), "--broker", url, "--speed", "1", "--as-session", "acc2")
        procs.append(rp)
        assert rp.wait(300) == 0, rp.stderr and rp.stderr.read()
        assert rec.wait(120) == 0
    finally:
        for p in procs:  # a failed step must not leave a recorder running
            if p.poll() is None:
                p.kill()
    a = recorded(first)
    b = [(rewrite_session(t, "acc"), p) for t, p in recorded(second)]
    assert len(a) == 30 * 60 * (100 + 100 + 100 + 100 + 60)  # every frame of every source
    assert a == b
    os.remove(first)
    os.remove(second)


def test_pregenerated_gateway_publishes_the_same_frames(broker: BrokerSettings, session_id: str,
                                                       tmp_path: Path) -> None:
    """``gateway sim --pregenerate``: simulated first, QoS 0 frames written raw in batches; the
    broker delivers what the chunked gateway sends, per topic in the same order."""
    runs = {}
    for mode in ("chunked", "pregenerated"):
        session = f"{session_id}{mode[0]}"
        settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session},
                                            "sim": {"athletes": 2, "speed": 4, "truth": True}})
        path = tmp_path / f"{mode}.mcap"
        rec, _ = start_recorder(broker, path, session)
        stats = run_sim_gateway(settings, duration=2.0, pregenerate=mode == "pregenerated")
        rec.join(20)
        assert stats.sim_seconds == pytest.approx(2.0) and stats.max_lag_s < 0.5
        per_topic: dict[str, list[bytes]] = {}
        for t, p in recorded(path):
            per_topic.setdefault(rewrite_session(t, session_id), []).append(p)
        runs[mode] = (per_topic, len(recorded(path, "truth")), stats.messages)
    assert runs["chunked"] == runs["pregenerated"]
    frames, truth, published = runs["chunked"]
    assert sum(len(v) for v in frames.values()) + truth == published and truth > 0 and published > 1000


def test_pregenerate_needs_a_duration(broker: BrokerSettings) -> None:
    with pytest.raises(ValueError, match="duration"):
        run_sim_gateway(load_settings(overrides={"broker": {"url": broker.url}}), pregenerate=True)
