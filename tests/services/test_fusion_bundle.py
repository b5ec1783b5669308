"""Bundles through the fusion service: the same records as frames one by one; bad parts cost themselves."""

from __future__ import annotations

import numpy as np

from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, SimSettings, load_settings
from poserun.wire import bundle, topics
from poserun.wire import frame as wf
from poserun.wire.streams import StreamKind
from tests.services import sim_feed


def run(bundled: bool, seconds: float = 10.0) -> tuple[list[dict], dict]:
    return sim_feed.feed(athletes=3, seed=4, seconds=seconds, bundle=bundled)


def test_bundled_frames_give_the_records_of_the_same_frames_one_by_one() -> None:
    single, one = run(False)
    bundled, many = run(True)
    # the same records; a few come out in another order (a bundle's frames arrive together)
    assert len(single) > 100 and sorted(bundled, key=lambda r: r["id"]) == sorted(single, key=lambda r: r["id"])
    assert many["totals"]["frames"] == one["totals"]["frames"] and many["rejected"] == one["rejected"] == {}
    assert many["bundles"] > 0 and one["bundles"] == 0
    assert many["sources"] == one["sources"]  # per source: frames, samples, bytes, gaps, late


def service() -> FusionService:
    team = SimTeam("s", SimSettings(athletes=1, seed=1))
    svc = FusionService(load_settings(overrides={"athletes": [{"id": team.specs[0].athlete_id}]}), session="s")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    return svc


IMU = wf.pack(StreamKind.IMU, 0, 1_000_000, np.zeros((4, 6), np.float32), period_ns=2_500_000)
INSOLE = wf.pack(StreamKind.INSOLE, 0, 1_000_000, np.zeros((1, 16), np.float32), period_ns=10_000_000)


def test_a_broken_bundle_is_refused_whole_and_a_bad_frame_in_one_alone() -> None:
    svc = service()
    topic = topics.bundle_topic("s", "a01")
    svc.handle(topic, b"PB\x01\x02" + bundle.pack([("imu_foot_left", IMU)])[4:])  # says two, holds one
    snap = svc.snapshot()
    assert snap["rejected"] == {"bad_bundle": 1} and snap["totals"].get("frames", 0) == 0
    # one bad frame (an insole frame under the left foot IMU's id): only it is refused, on its source
    svc.handle(topic, bundle.pack([("imu_foot_left", IMU), ("imu_foot_right", INSOLE), ("insole_left", INSOLE)]))
    snap = svc.snapshot()
    assert snap["totals"]["frames"] == 2
    assert snap["sources"]["s/a01/imu_foot_right"]["rejected"] == {"stream_mismatch": 1}
    assert snap["bundles"] == 2
    # an oversized bundle, and one of a source without meta: each frame is checked as on its own topic
    svc.handle(topic, b"PB" + b"\x00" * (256 * 1024))
    svc.handle(topics.bundle_topic("s", "stranger"), bundle.pack([("imu_foot_left", IMU)]))
    rejected = svc.snapshot()["rejected"]
    assert rejected["oversized"] == 1 and rejected["no_meta"] == 1
    # another session's bundles are not this service's
    svc.handle(topics.bundle_topic("other", "a01"), bundle.pack([("imu_foot_left", IMU)]))
    assert svc.snapshot()["bundles"] == 4


def test_a_refused_bundle_names_its_athlete_and_a_wrapper_sees_one_message(caplog) -> None:  # type: ignore[no-untyped-def]
    svc = service()
    calls: list[str] = []
    inner = svc.handle

    def counted(topic: str, payload: bytes, recv_ns: int | None = None) -> list[dict]:
        calls.append(topic)
        return inner(topic, payload, recv_ns)

    svc.handle = counted  # type: ignore[method-assign]
    topic = topics.bundle_topic("s", "a01")
    svc.handle(topic, bundle.pack([("imu_foot_left", IMU), ("insole_left", INSOLE)]))
    assert calls == [topic] and svc.snapshot()["totals"]["frames"] == 2  # the entries are not handle()d again
    with caplog.at_level("WARNING"):
        svc.handle(topic, b"PB\x01\x01\x63\x01\x00\x00\x00x")  # source id 99
    assert "poserun/v1/s/a01/data/bundle" in caplog.text and "unknown source id 99" in caplog.text
    svc.handle(topic, None)  # type: ignore[arg-type]  # (not bytes: counted, not raised)
    assert svc.snapshot()["rejected"].get("internal_error") == 1


def test_an_athlete_whose_devices_are_listed_is_sent_one_frame_per_message() -> None:
    """The generated ACL gives a device's gateway its sources' topics only, not the bundle topic: the
    simulator sends such an athlete's frames one by one (and the others' in bundles)."""
    listed = [AthleteSettings(id="a01", devices=[{"source": "insole_left"}, {"source": "insole_right"}]),
              AthleteSettings(id="a02")]
    team = SimTeam("s", SimSettings(athletes=2, seed=1), listed)
    msgs, _ = team.step(20)
    by = {a: {topics.parse(m.topic).source for m in msgs if topics.parse(m.topic).athlete == a} for a in ("a01", "a02")}
    assert topics.BUNDLE not in by["a01"] and topics.BUNDLE in by["a02"]
