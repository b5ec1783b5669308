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
from poserun.services.gateway_sim import publication_chunks, run_sim_gateway
from poserun.services.recorder import record
from poserun.services.replay import GATEWAY_CHANNELS, replay, rewrite_session
from poserun.services.sim.team import Message, SimTeam
from poserun.settings import BrokerSettings, Settings, load_settings
from poserun.wire import bundle as wire_bundle
from poserun.wire import topics
from tests.conftest import CEILING

pytestmark = pytest.mark.broker


def recorded(path: Path, channel: str = "data") -> list[tuple[str, bytes]]:
    out = []
    for m in read_messages(path):
        if topics.parse(m.topic).channel == channel:
            out.append((m.topic, m.payload))
    return out


def start_recorder(broker: BrokerSettings, path: Path, session: str, count: int) -> threading.Thread:
    """A recorder that stops once it has ``count`` messages (join it; CEILING if some never come)."""
    ready = threading.Event()
    t = threading.Thread(target=record, args=(broker, path),
                         kwargs={"session": session, "ready": ready, "count": count, "duration": CEILING})
    t.start()
    assert ready.wait(CEILING)
    return t


def sim_messages(settings: Settings, duration: float) -> int:
    """Everything ``run_sim_gateway`` publishes for ``duration`` s: meta, online and offline
    status, frames and truth (the simulator is deterministic: the same chunks again)."""
    team = SimTeam(settings.session.id, settings.sim, settings.athletes)
    body = sum(len(msgs) for msgs, _, _ in publication_chunks(team, duration, None, settings.sim.truth))
    return len(team.meta_messages()) + 2 + body


def replayed(path: Path, channels: tuple[str, ...]) -> int:
    return sum(1 for m in read_messages(path) if topics.parse(m.topic).channel in channels)


def test_record_then_replay_is_byte_identical(broker: BrokerSettings, session_id: str,
                                              tmp_path: Path) -> None:
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id},
                                        "sim": {"athletes": 3, "speed": 5, "truth": True}})
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    rec = start_recorder(broker, first, session_id, sim_messages(settings, 5.0))
    run_sim_gateway(settings, duration=5.0)
    rec.join(CEILING)
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
    channels = (*GATEWAY_CHANNELS, "truth")
    rec = start_recorder(broker, second, again, replayed(first, channels))
    stats = replay(broker, first, speed=1.0, session=again, channels=channels)
    rec.join(CEILING)
    assert stats.messages == sum(1 for _ in read_messages(first)) and stats.skipped == 0
    back = [(rewrite_session(t, session_id), p) for t, p in recorded(second)]
    assert back == got  # same frames, same order, same bytes
    assert recorded(second, "truth") == [(rewrite_session(t, again), p)
                                         for t, p in recorded(first, "truth")]


def cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "poserun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


ATHLETES, SECONDS = 6, 20  # the full 30 x 60 s at --speed 10 is bench/record_replay.py


@pytest.mark.slow
def test_team_recorded_and_replayed_through_the_cli(private_mosquitto: str, tmp_path: Path) -> None:
    """The foundation's acceptance, as fast as the machine goes: a team recorded from the simulator
    and replayed (``--speed 0``) comes back frame for frame, byte for byte, in the same order."""
    url = private_mosquitto
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"

    def recorder(path: Path, session: str, count: int) -> subprocess.Popen[str]:
        ready = tmp_path / f"{path.stem}.ready"
        proc = cli("record", str(path), "--broker", url, "--session", session, "--count", str(count),
                   "--duration", str(CEILING), "--ready-file", str(ready))
        deadline = time.monotonic() + CEILING
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
            time.sleep(0.05)
        return proc

    procs: list[subprocess.Popen[str]] = []
    try:
        made = sim_messages(load_settings(overrides={"session": {"id": "acc"}, "sim": {"athletes": ATHLETES}}),
                            SECONDS)
        rec = recorder(first, "acc", made)
        procs.append(rec)
        gw = cli("gateway", "sim", "--broker", url, "--session", "acc", "--athletes", str(ATHLETES),
                 "--duration", str(SECONDS), "--speed", "1000")  # the simulator's fastest: no waiting
        procs.append(gw)
        assert gw.wait(CEILING) == 0, gw.stderr and gw.stderr.read()
        assert rec.wait(CEILING) == 0
        rec = recorder(second, "acc2", replayed(first, GATEWAY_CHANNELS))
        procs.append(rec)
        rp = cli("gateway", "replay", str(first), "--broker", url, "--speed", "0", "--as-session", "acc2")
        procs.append(rp)
        assert rp.wait(CEILING) == 0, rp.stderr and rp.stderr.read()
        assert rec.wait(CEILING) == 0
    finally:
        for p in procs:  # a failed step must not leave a recorder running
            if p.poll() is None:
                p.kill()
    a = recorded(first)
    b = [(rewrite_session(t, "acc"), p) for t, p in recorded(second)]
    frames = sum(len(wire_bundle.unpack(p)) if t.endswith("/bundle") else 1 for t, p in a)
    assert frames == ATHLETES * SECONDS * (100 + 100 + 100 + 100 + 60)  # every frame of every source
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
        rec = start_recorder(broker, path, session, sim_messages(settings, 2.0))
        stats = run_sim_gateway(settings, duration=2.0, pregenerate=mode == "pregenerated")
        rec.join(CEILING)
        assert stats.sim_seconds == pytest.approx(2.0)
        per_topic: dict[str, list[bytes]] = {}
        for t, p in recorded(path):
            per_topic.setdefault(rewrite_session(t, session_id), []).append(p)
        runs[mode] = (per_topic, len(recorded(path, "truth")), stats.messages)
    assert runs["chunked"] == runs["pregenerated"]
    frames, truth, published = runs["chunked"]
    assert sum(len(v) for v in frames.values()) + truth == published and truth > 0 and published > 400


def test_pregenerate_needs_a_duration(broker: BrokerSettings) -> None:
    with pytest.raises(ValueError, match="duration"):
        run_sim_gateway(load_settings(overrides={"broker": {"url": broker.url}}), pregenerate=True)


def test_replay_republishes_only_gateway_channels(broker: BrokerSettings, session_id: str, tmp_path: Path) -> None:
    """A replay stands in for gateways: poserun's recorded outputs (records, haptic commands) stay
    in the file unless asked for, so no live band buzzes for a recording; truth only on request."""
    from poserun.recording import RecordingWriter

    settings = load_settings(overrides={"session": {"id": session_id}, "sim": {"athletes": 1, "truth": True}})
    team = SimTeam(session_id, settings.sim)
    path = tmp_path / "mixed.mcap"
    writer = RecordingWriter(path)
    msgs = [*team.meta_messages(), *team.step(20)[0]]
    msgs.append(Message(topics.status_topic(session_id, "gw1"), b'{"gateway":"gw1","state":"online"}',
                                   retain=True, qos=1))
    for k, m in enumerate(msgs):
        writer.write(m.topic, m.payload, 1_000_000 * (k + 1), retain=m.retain, qos=m.qos)
    outputs = [(topics.athlete_topic(session_id, "a01", "truth"), b'{"ic_ns": 1}'),
               (topics.athlete_topic(session_id, "a01", "records"), b'{"type":"stance"}'),
               (topics.athlete_topic(session_id, "a01", "haptic"), b'{"pattern":"forced"}')]
    for k, (topic, payload) in enumerate(outputs):
        writer.write(topic, payload, 10_000_000_000 + k)
    writer.close()
    by_channel = {}
    for label, channels in (("default", GATEWAY_CHANNELS), ("truth", (*GATEWAY_CHANNELS, "truth")),
                            ("all", topics.CHANNELS)):
        again = f"{session_id}{label[0]}"
        out = tmp_path / f"{label}.mcap"
        rec = start_recorder(broker, out, again, replayed(path, channels))
        stats = replay(broker, path, speed=0, session=again, channels=channels)
        rec.join(CEILING)
        got = [topics.parse(m.topic).channel for m in read_messages(out)]
        by_channel[label] = set(got)
        assert stats.messages == len(got) and stats.skipped == len(msgs) + 3 - len(got)
    assert by_channel["default"] == {"data", "meta", "status"}
    assert by_channel["truth"] == {"data", "meta", "status", "truth"}
    assert by_channel["all"] == {"data", "meta", "status", "truth", "records", "haptic"}
    with pytest.raises(ValueError, match="unknown channel"):
        replay(broker, path, channels=("data", "video"))


def test_replay_keeps_the_recorded_order(broker: BrokerSettings, session_id: str, tmp_path: Path) -> None:
    """Frames go out pre-encoded in batches, meta and status as QoS 1 publishes between them: a
    status recorded after frames must not overtake them."""
    from poserun.recording import RecordingWriter

    team = SimTeam(session_id, load_settings(overrides={"sim": {"athletes": 2, "bundle": False}}).sim)
    frames = [m for m in team.step(100)[0] if "/data/" in m.topic]
    status = Message(topics.status_topic(session_id, "gw1"), b'{"gateway":"gw1","state":"offline"}', retain=True,
                     qos=1)
    path = tmp_path / "ordered.mcap"
    w = RecordingWriter(path)
    for k, m in enumerate([*team.meta_messages(), *frames[:400], status, *frames[400:]]):
        w.write(m.topic, m.payload, k + 1, retain=m.retain, qos=m.qos)
    w.close()
    again = session_id + "o"
    out = tmp_path / "again.mcap"
    rec = start_recorder(broker, out, again, replayed(path, GATEWAY_CHANNELS))
    replay(broker, path, speed=0, session=again)
    rec.join(CEILING)
    got = [topics.parse(m.topic).channel for m in read_messages(out) if topics.parse(m.topic).channel != "meta"]
    assert got.index("status") == 400 and len(got) == len(frames) + 1
