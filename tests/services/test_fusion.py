"""The fusion service driven with raw topics and payloads, no network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poserun.records import LandingRecord, StanceRecord
from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, Settings, SimSettings, load_settings
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.streams import StreamKind


def team_and_service(athletes: int = 4, **proc: object) -> tuple[SimTeam, FusionService]:
    team = SimTeam("s", SimSettings(athletes=athletes, seed=2))
    listed = [AthleteSettings(id=s.athlete_id, body_mass_kg=s.body_mass_kg) for s in team.specs]
    settings = load_settings(overrides={"athletes": [a.model_dump() for a in listed],
                                        "processor": proc})
    svc = FusionService(settings, session="s")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    return team, svc


def test_records_for_every_athlete_match_truth() -> None:
    team, svc = team_and_service()
    records, truth = [], []
    for _ in range(16):
        msgs, done = team.step(50)
        for m in msgs:
            records += svc.handle(m.topic, m.payload)
        truth += [(a, s) for a, stances in done.items() for s in stances]
    stances = [r for r in records if r["type"] == "stance"]
    assert {r["athlete"] for r in stances} == {s.athlete_id for s in team.specs}
    for r in records:
        (LandingRecord if r["type"] == "landing" else StanceRecord).model_validate(r)
        json.dumps(r)
    by_ic = {(a, s.foot, round(s.ic * 1e9)): s for a, s in truth}
    errors_ic, errors_to = [], []
    for r in stances:
        match = [s for (a, f, ic), s in by_ic.items()
                 if a == r["athlete"] and f == r["foot"] and abs(ic - r["ic_ns"]) < 30e6]
        assert len(match) == 1, r
        errors_ic.append((r["ic_ns"] - match[0].ic * 1e9) / 1e6)
        errors_to.append((r["to_ns"] - match[0].to * 1e9) / 1e6)
    # insole at 100 Hz with interpolated threshold crossings
    assert np.mean(np.abs(errors_ic)) < 6 and np.mean(np.abs(errors_to)) < 10
    cad = [r["cadence_spm"] for r in stances if r["cadence_spm"]]
    assert 140 < np.median(cad) < 190
    snap = svc.snapshot()
    assert snap["rejected"] == {} and snap["totals"]["late"] == 0


def test_random_payloads_are_each_rejected_with_a_reason() -> None:
    team, svc = team_and_service(athletes=2)
    rng = np.random.default_rng(0)
    msgs, _ = team.step(20)
    topics_ = sorted({m.topic for m in msgs})
    n = 10_000
    for i in range(n):
        size = int(rng.integers(0, 300))
        payload = rng.bytes(size)
        if i % 3 == 0:
            payload = b"PR" + payload
        elif i % 3 == 1:
            payload = b"{" + payload
        svc.handle(topics_[i % len(topics_)], payload)
    snap = svc.snapshot()
    assert sum(snap["rejected"].values()) == n
    assert set(snap["rejected"]) <= {"not_a_frame", "truncated", "count_mismatch", "bad_json",
                                     "unknown_version", "unknown_stream", "bad_field",
                                     "non_finite", "stream_mismatch", "meta_mismatch", "bad_bundle"}
    # the service still processes good frames afterwards
    good = 0
    for m in team.step(100)[0]:
        svc.handle(m.topic, m.payload)
        good += m.frames
    assert svc.snapshot()["totals"]["frames"] == good


def frame_bytes(kind: StreamKind, seq: int, t0: int, n: int, c: int) -> bytes:
    return wf.encode(wf.make_frame(kind, seq, t0, np.ones((n, c)), period_ns=10_000_000))


def test_each_rejection_reason_is_counted() -> None:
    settings = load_settings(overrides={"athletes": [{"id": "a"}],
                                        "processor": {"accept_unknown_athletes": False}})
    svc = FusionService(settings)
    imu_meta = wm.ImuMeta(source="imu_foot_left", rate_hz=100, placement="foot", side="left")
    topic = topics.data_topic("s", "a", "imu_foot_left")
    svc.handle(topic, frame_bytes(StreamKind.IMU, 0, 0, 1, 6))  # before meta
    svc.handle(topics.meta_topic("s", "a", "imu_foot_left"), wm.dump(imu_meta))
    svc.handle(topics.meta_topic("s", "a", "insole_left"), wm.dump(imu_meta))  # wrong source
    svc.handle(topics.meta_topic("s", "a", "imu_pelvis"), b"{not json")
    svc.handle(topic, frame_bytes(StreamKind.INSOLE, 0, 0, 1, 6))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 0, 0, 1, 3))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 5, 1_000_000_000, 2, 6))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 4, 900_000_000, 2, 6))  # older sequence
    svc.handle(topic, frame_bytes(StreamKind.IMU, 6, 1_000_000_000, 2, 6))  # clock went back
    svc.handle("poserun/v1/s/a/data/sonar", b"")
    svc.handle("elsewhere/entirely", b"")
    svc.handle(topics.status_topic("s", "gw"), b"{}")
    svc.handle(topics.meta_topic("s", "zed", "imu_pelvis"), wm.dump(
        wm.ImuMeta(source="imu_pelvis", rate_hz=100, placement="pelvis")))
    svc.handle(topics.data_topic("s", "zed", "imu_pelvis"), frame_bytes(StreamKind.IMU, 0, 0, 1, 6))
    snap = svc.snapshot()
    assert snap["rejected"] == {
        "no_meta": 1, "bad_meta": 3, "stream_mismatch": 1, "meta_mismatch": 1,
        "time_backwards": 1, "unknown_topic": 2, "unknown_athlete": 2,  # its meta and its frame
    }
    assert snap["totals"]["late"] == 1 and snap["totals"]["frames"] == 1
    src = snap["sources"]["s/a/imu_foot_left"]
    assert src["rejected"] == {"no_meta": 1, "stream_mismatch": 1, "meta_mismatch": 1,
                               "time_backwards": 1}


def test_athlete_cap_bounds_memory() -> None:
    svc = FusionService(load_settings(overrides={"processor": {"max_athletes": 3}}))
    meta = wm.dump(wm.ForceMeta(source="force_left", rate_hz=100, side="left"))
    for i in range(6):
        svc.handle(topics.meta_topic("s", f"x{i}", "force_left"), meta)
        svc.handle(topics.data_topic("s", f"x{i}", "force_left"),
                   frame_bytes(StreamKind.FORCE, 0, 0, 1, 1))
    assert len(svc.athletes) == 3
    # their meta is refused (no room), so their frames have none
    assert svc.snapshot()["rejected"] == {"too_many_athletes": 3, "no_meta": 3}


def test_kpa_insole_uses_cell_areas() -> None:
    svc = FusionService(Settings(athletes=[AthleteSettings(id="a", body_mass_kg=70)]))
    meta = wm.InsoleMeta(source="insole_left", rate_hz=100, side="left", unit="kPa",
                         cell_regions=["heel", "ball"], cell_positions=[(0.1, 0), (0.7, 0)],
                         cell_area_m2=[0.002, 0.002])
    svc.handle(topics.meta_topic("s", "a", "insole_left"), wm.dump(meta))
    cells = np.zeros((60, 2))
    cells[10:40] = 200.0  # 200 kPa on 2 x 20 cm^2 = 800 N
    payload = wf.encode(wf.make_frame(StreamKind.INSOLE, 0, 0, cells, period_ns=10_000_000))
    recs = svc.handle(topics.data_topic("s", "a", "insole_left"), payload)
    stance = [r for r in recs if r["type"] == "stance"]
    assert len(stance) == 1
    assert stance[0]["peak_force_bw"] == pytest.approx(800 / (70 * 9.81), rel=1e-3)


def test_checks_hold_on_the_routed_fast_path() -> None:
    """Once a topic has a route, every check still applies, and new meta re-routes it."""
    svc = FusionService(load_settings())
    meta_topic = topics.meta_topic("s", "a", "imu_foot_left")
    svc.handle(meta_topic, wm.dump(wm.ImuMeta(source="imu_foot_left", rate_hz=100, placement="foot",
                                                side="left")))
    topic = topics.data_topic("s", "a", "imu_foot_left")
    svc.handle(topic, frame_bytes(StreamKind.IMU, 1, 1_000_000_000, 2, 6))  # makes the route
    svc.handle(topic, frame_bytes(StreamKind.INSOLE, 2, 1_100_000_000, 2, 6))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 3, 1_200_000_000, 2, 3))
    svc.handle(topic, b"PR\x01")
    bad = bytearray(frame_bytes(StreamKind.IMU, 4, 1_300_000_000, 2, 6))
    bad[-4:] = np.float32(np.nan).tobytes()
    svc.handle(topic, bytes(bad))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 1, 1_000_000_000, 2, 6))  # a repeat: late
    svc.handle(topic, frame_bytes(StreamKind.IMU, 7, 1_400_000_000, 2, 6))  # 5, 6 never came
    svc.handle(meta_topic, wm.dump(wm.ImuMeta(source="imu_foot_left", rate_hz=100, placement="foot",
                                                side="left", channels=["ax", "ay", "az"])))
    svc.handle(topic, frame_bytes(StreamKind.IMU, 8, 1_500_000_000, 2, 6))  # the old channel count
    svc.handle(topic, frame_bytes(StreamKind.IMU, 9, 1_600_000_000, 2, 3))
    src = svc.snapshot()["sources"]["s/a/imu_foot_left"]
    assert src["rejected"] == {"stream_mismatch": 1, "meta_mismatch": 2, "truncated": 1, "non_finite": 1}
    # the cursor takes only accepted frames: 2-6 and 8 are missing from the sequence
    assert (src["frames"], src["late"], src["gaps"]) == (3, 1, 6)


@pytest.mark.parametrize("announce", [None, 1, 0])
def test_a_gateway_rebooted_with_a_clock_since_boot_gives_records_again_at_once(announce: int | None) -> None:
    """Up 20 s, then rebooted: sequence numbers and clock begin again from zero. Records resume
    within the first second of the new frames (they used to stop until the new clock passed the old
    one), with or without a new ``online`` status."""
    team, svc = team_and_service(athletes=1)
    for _ in range(40):  # 20 s
        msgs, _ = team.step(50)
        for m in msgs:
            svc.handle(m.topic, m.payload)
    again = SimTeam("s", SimSettings(athletes=1, seed=2))  # the same gateway, started anew
    if announce is not None:  # an online status, with a boot_ns or (0) without one
        status = wm.GatewayStatus(gateway="sim", state="online", athletes=[team.specs[0].athlete_id],
                                  boot_ns=announce or None)
        svc.handle(topics.status_topic("s", "sim"), wm.dump(status))
    for m in again.meta_messages():
        svc.handle(m.topic, m.payload)
    after: list[dict] = []
    for _ in range(4):  # its first 2 s
        msgs, _ = again.step(50)
        for m in msgs:
            after += svc.handle(m.topic, m.payload)
    stances = [r for r in after if r["type"] == "stance"]
    assert stances, svc.snapshot()["rejected"]
    first_ns = min(r["ic_ns"] for r in stances)
    assert first_ns < 1.0e9  # a contact in the new clock's first second
    assert svc.epochs == 1 and svc.snapshot()["rejected"] == {}
    assert all(r["id"].endswith("@1") for r in after)  # not the ids of the first clock's contacts


def test_a_flood_of_made_up_athletes_never_locks_out_the_team() -> None:
    svc = FusionService(load_settings(overrides={"processor": {"max_athletes": 3},
                                                 "athletes": [{"id": "anna"}, {"id": "ben"}]}))
    meta = wm.dump(wm.ForceMeta(source="force_left", rate_hz=100, side="left"))
    for name in [f"junk{i}" for i in range(50)] + ["anna", "ben"]:
        svc.handle(topics.meta_topic("s", name, "force_left"), meta)
        svc.handle(topics.data_topic("s", name, "force_left"), frame_bytes(StreamKind.FORCE, 0, 0, 1, 1))
    assert {a for _s, a in svc.athletes} >= {"anna", "ben"}
    assert len(svc.athletes) == 5
    assert svc.snapshot()["rejected"] == {"too_many_athletes": 47, "no_meta": 47}


def test_a_status_listing_a_city_is_refused_and_a_frame_without_meta_is_not_decoded() -> None:
    svc = FusionService(load_settings())
    huge = json.dumps({"v": 1, "gateway": "g", "state": "online", "athletes": [f"a{i}" for i in range(50_000)]})
    svc.handle(topics.status_topic("s", "g"), huge.encode())  # refused by its size, before parsing
    assert svc.snapshot()["rejected"] == {"oversized": 1}
    long = json.dumps({"v": 1, "gateway": "g", "state": "online", "athletes": [f"a{i}" for i in range(1001)]})
    svc.handle(topics.status_topic("s", "g"), long.encode())  # small enough, but over the list's cap
    assert svc.snapshot()["rejected"] == {"oversized": 1, "bad_meta": 1}
    svc.handle(topics.data_topic("s", "a1", "force_left"), b"\xff" * 100)  # garbage, but first: no meta
    assert svc.snapshot()["rejected"] == {"oversized": 1, "bad_meta": 1, "no_meta": 1}


def test_idle_athletes_are_evicted_counted_and_the_team_is_kept() -> None:
    """Strangers silent for ``idle_s`` lose their state (their counters stay in the totals); a full
    lane takes a newcomer only in place of an idle one; the configured athlete, active, stays."""
    svc = FusionService(load_settings(overrides={"processor": {"max_athletes": 3}, "athletes": [{"id": "anna"}]}),
                        session="s", idle_s=10.0)
    meta = wm.dump(wm.ForceMeta(source="force_left", rate_hz=100, side="left"))

    def send(who: str, t_s: float, seq: int = 0) -> None:
        t = int((1 + t_s) * 1e9)  # (arrival times from 1 s: 0 would mean "now")
        svc.handle(topics.meta_topic("s", who, "force_left"), meta, t)
        svc.handle(topics.data_topic("s", who, "force_left"),
                   frame_bytes(StreamKind.FORCE, seq, 1_000_000_000 * seq, 1, 1), t)

    for i in range(3):
        send(f"x{i}", 0.0)
    send("x3", 1.0)  # the lane is full of active strangers: refused
    assert {a for _s, a in svc.athletes} == {"x0", "x1", "x2"}
    for k in range(1, 30):  # anna streams on; the strangers fall silent
        send("anna", k, seq=k)
    assert {a for _s, a in svc.athletes} == {"anna"}  # swept: idle for more than 10 s
    snap = svc.snapshot()
    assert snap["tables"]["evicted"] == {"unknown": 3, "stray": 1}  # x3 too, a stray after its refusal
    assert snap["totals"]["frames"] == 3 + 29
    assert snap["kinds"]["force"]["frames"] == 32 and "s/x0/force_left" not in snap["sources"]
    assert not any(k[1].startswith("x") for k in (*svc.counters, *svc.meta, *svc.cursors))
    send("x3", 31.0)  # room again
    assert ("s", "x3") in svc.athletes
    for k in range(32, 50):  # now anna rests, for longer than idle_s: she is evicted too, her meta kept
        svc.handle(topics.data_topic("s", "x3", "force_left"), frame_bytes(StreamKind.FORCE, k, k * 10**9, 1, 1),
                   (1 + k) * 10**9)
    assert ("s", "anna") not in svc.athletes and svc.snapshot()["tables"]["evicted"]["configured"] == 1
    frames = svc.snapshot()["totals"]["frames"]
    svc.handle(topics.data_topic("s", "anna", "force_left"), frame_bytes(StreamKind.FORCE, 60, 60 * 10**9, 1, 1),
               61 * 10**9)  # back, without sending her meta again: taken (a new clock epoch)
    assert svc.snapshot()["totals"]["frames"] == frames + 1 and svc._epochs[("s", "anna")] == 1


def test_a_frame_larger_than_its_meta_allows_is_refused_before_decoding() -> None:
    """A 100 Hz force plate's frame holds at most a second of samples: 101 x (8 + 4) + 32 bytes
    binary, 101 x (4 + 24 x 2) + 256 as JSON; a larger one is ``oversized``, whatever its content."""
    svc = FusionService(load_settings(), session="s")
    svc.handle(topics.meta_topic("s", "a", "force_left"), wm.dump(wm.ForceMeta(source="force_left", rate_hz=100)))
    topic = topics.data_topic("s", "a", "force_left")
    svc.handle(topic, frame_bytes(StreamKind.FORCE, 0, 0, 100, 1))  # 1 s of samples: taken
    svc.handle(topic, b"PR" + b"\x00" * (32 + 101 * 12))  # one byte over: refused, not decoded
    svc.handle(topic, b"{" + b" " * (256 + 101 * 52))
    svc.handle(topic, b"{" + b"x" * 2000)  # within the JSON limit: decoded (and refused as bad JSON)
    src = svc.snapshot()["sources"]["s/a/force_left"]
    assert src["frames"] == 1 and src["rejected"] == {"oversized": 2, "bad_json": 1}


@pytest.mark.parametrize("sensors", [["insole_left", "insole_right"], ["imu_pelvis"]])
def test_every_reboot_of_a_gateway_starts_a_new_clock_epoch(sensors: list[str]) -> None:
    """Three boots of one gateway (online status, meta, frames from a clock at zero): each boot
    gives records, on its own epoch (the cursor of the source that noticed the restart is kept)."""
    settings = load_settings(overrides={"athletes": [{"id": "a01"}]})
    svc = FusionService(settings, session="s")
    per_boot = []
    for boot in range(3):
        team = SimTeam("s", SimSettings(athletes=1, seed=2, sensors=sensors))
        status = wm.GatewayStatus(gateway="sim", state="online", athletes=["a01"], boot_ns=10**18 + boot)
        svc.handle(topics.status_topic("s", "sim"), wm.dump(status))
        for m in team.meta_messages():
            svc.handle(m.topic, m.payload)
        got: list[dict] = []
        for _ in range(8):  # 4 s
            for m in team.step(50)[0]:
                got += svc.handle(m.topic, m.payload)
        per_boot.append(got)
    assert all(any(r["type"] == "stance" for r in got) for got in per_boot), [len(g) for g in per_boot]
    assert svc.epochs == 2
    assert [{r["id"].rsplit("@", 1)[1] if "@" in r["id"] else "0" for r in got} for got in per_boot] == \
        [{"0"}, {"1"}, {"2"}]
