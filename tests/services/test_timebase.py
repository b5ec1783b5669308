"""Sources on clocks of their own are put on their athlete's time base from arrival times
(services/timebase.py); shared clocks are never moved."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.services.timebase import DRIFT_STEP_NS, FRAMES_TO_DECIDE, TOLERANCE_NS, AthleteTimebase
from poserun.settings import AthleteSettings, SimSettings, load_settings
from poserun.wire import frame as wf
from poserun.wire import topics

MS = 1_000_000


def feed(tb: AthleteTimebase, source: str, offset_ns: int, frames: int, rng: np.random.Generator,
         start: int = 0) -> list[int | None]:
    """Frames every 10 ms on a clock ``offset_ns`` ahead of the wall, delivered 2-30 ms late."""
    out = []
    for k in range(start, start + frames):
        t = k * 10 * MS
        out.append(tb.shift(source, t + offset_ns, t + offset_ns, 10**18 + t + int(rng.integers(2, 30)) * MS))
    return out


def test_sources_on_one_clock_are_never_moved_nor_held_back() -> None:
    rng = np.random.default_rng(1)
    tb = AthleteTimebase()
    for k in range(300):
        for source in ("insole_left", "imu_foot_left", "keypoints"):
            assert feed(tb, source, 0, 1, rng, start=k) == [0]
    assert tb.report() == {} and tb.reference == "insole_left"


def test_a_clock_of_its_own_is_found_and_shifted_onto_the_reference() -> None:
    rng = np.random.default_rng(2)
    tb = AthleteTimebase()
    feed(tb, "insole_left", 0, 200, rng)
    shifts = feed(tb, "imu_foot_left", 90 * 10**9, 200, rng)  # a clock since boot, 90 s apart
    assert shifts[:FRAMES_TO_DECIDE - 1] == [None] * (FRAMES_TO_DECIDE - 1)  # held while it is found
    decided = shifts[FRAMES_TO_DECIDE - 1]
    assert decided is not None and abs(decided + 90 * 10**9) < 30 * MS  # within the delivery jitter
    later = shifts[FRAMES_TO_DECIDE:]
    assert all(x is not None and abs(x + 90 * 10**9) < 30 * MS for x in later)  # then steady
    assert all(abs(b - a) <= DRIFT_STEP_NS for a, b in itertools.pairwise(later))  # in small steps
    assert set(tb.report()) == {"imu_foot_left"}


def test_a_difference_within_the_tolerance_is_left_to_the_finer_alignment() -> None:
    rng = np.random.default_rng(3)
    tb = AthleteTimebase()
    feed(tb, "insole_left", 0, 50, rng)
    assert set(feed(tb, "imu_foot_left", TOLERANCE_NS // 2, 200, rng)) == {0}


def test_a_clock_that_steps_is_shifted_again_after_a_whole_block() -> None:
    rng = np.random.default_rng(4)
    tb = AthleteTimebase()
    feed(tb, "insole_left", 0, 1000, rng)
    before = feed(tb, "imu_foot_left", 5 * 10**9, 300, rng)[-1]
    after = feed(tb, "imu_foot_left", 8 * 10**9, 300, rng, start=300)[-1]
    assert before is not None and after is not None
    assert abs(before + 5 * 10**9) < 30 * MS and abs(after + 8 * 10**9) < 30 * MS and tb.realigned == 1


def shifted(payload: bytes, offset_ns: int) -> bytes:
    f = wf.decode(payload)
    ts = None if f.timestamps_ns is None else f.timestamps_ns + offset_ns
    return wf.encode(dataclasses.replace(f, t0_ns=f.t0_ns + offset_ns, timestamps_ns=ts))


def stances(offsets: dict[str, int]) -> tuple[list[dict], FusionService]:
    """A simulated athlete whose sources' gateways run the given clock offsets, delivered 1-9 ms
    after each frame's last sample."""
    team = SimTeam("s", SimSettings(athletes=1, seed=5, bundle=False))  # (sources shifted one by one below)
    settings = load_settings(overrides={"athletes": [AthleteSettings(
        id=team.specs[0].athlete_id, body_mass_kg=team.specs[0].body_mass_kg).model_dump()]})
    svc = FusionService(settings, session="s")
    rng = np.random.default_rng(6)
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    out = []
    sent = 0
    for _ in range(24):  # 12 s
        for m in team.step(50)[0]:
            sent += m.frames if "/data/" in m.topic else 0
            t = topics.parse(m.topic)
            payload = m.payload
            if t.channel == "data" and t.source is not None and offsets.get(t.source):
                payload = shifted(payload, offsets[t.source])
            arrival = 10**18 + m.at_ns + int(rng.integers(1, 10)) * MS
            out += [r for r in svc.handle(m.topic, payload, arrival) if r["type"] == "stance"]
    assert svc.snapshot()["totals"]["frames"] == sent  # the frames that waited for their clock are processed
    return out, svc


def test_an_athlete_whose_gateways_never_synchronised_gets_the_same_records() -> None:
    """Foot IMUs on a gateway up 73 s longer, the camera on one up 41 s longer: each is put on the
    athlete's time base, and the stances are those of one shared clock (shifted by the
    reference's offset), to within the delivery jitter."""
    same, _ = stances({})
    off = {"imu_foot_left": 73 * 10**9, "imu_foot_right": 73 * 10**9, "keypoints": 41 * 10**9}
    apart, svc = stances(off)
    assert svc.snapshot()["totals"]["aligning"] > 0
    tb = next(iter(svc.timebases.values()))
    ref = off.get(tb.reference or "", 0)
    assert set(svc.snapshot()["timebases"]["s/" + svc.settings.athletes[0].id]) == \
        {s for s in ("insole_left", "insole_right", "imu_foot_left", "imu_foot_right", "keypoints")
         if off.get(s, 0) != ref}
    late = [r for r in same if r["ic_ns"] > 2e9]  # once every source is aligned
    def twin(r: dict) -> dict | None:
        near = [g for g in apart if g["foot"] == r["foot"] and abs(g["ic_ns"] - ref - r["ic_ns"]) < 30 * MS]
        return near[0] if len(near) == 1 else None
    matched = [(r, twin(r)) for r in late]
    assert sum(g is not None for _r, g in matched) >= 0.95 * len(late) > 10
    ic_err = [abs(g["ic_ns"] - ref - r["ic_ns"]) / MS for r, g in matched if g is not None]
    st_err = [abs(g["support_time_s"] - r["support_time_s"]) * 1e3 for r, g in matched if g is not None]
    assert np.median(ic_err) < 10 and np.median(st_err) < 10


def test_a_stalled_reference_does_not_move_a_source_on_the_same_clock() -> None:
    """The reference's link stalls 2 s and then catches up, ten late frames a period, while an
    IMU on the same clock goes on arriving promptly: the late frames give no estimate, the IMU
    stays unshifted."""
    tb = AthleteTimebase()
    backlog: list[int] = []
    shifts = []
    for k in range(3000):  # 30 s of 10 ms frames
        t = k * 10 * MS
        now = 10**18 + t + 3 * MS
        if 1000 <= k < 1200:  # 10-12 s: the reference's frames wait on a stalled link
            backlog.append(t)
        else:
            for _ in range(min(10, len(backlog))):  # ... and come late, ten a period
                tj = backlog.pop(0)
                tb.shift("insole_left", tj, tj, now)
            if not backlog:
                tb.shift("insole_left", t, t, now)
            else:
                backlog.append(t)
        shifts.append(tb.shift("imu_foot_left", t, t, 10**18 + t + 2 * MS))
    assert set(shifts) == {0} and tb.realigned == 0


def test_drift_of_a_clock_of_its_own_is_followed() -> None:
    """A camera gateway 41 s ahead that runs 50 ppm fast: after 10 minutes its shift still puts it
    on the reference within the delivery jitter (it moved 30 ms meanwhile)."""
    rng = np.random.default_rng(7)
    tb = AthleteTimebase()
    last = None
    for k in range(60_000):  # 10 min of 10 ms frames
        t = k * 10 * MS
        arrival = 10**18 + t + int(rng.integers(2, 6)) * MS
        tb.shift("insole_left", t, t, arrival)
        own = 41 * 10**9 + round(t * (1 + 50e-6))
        last = tb.shift("keypoints", own, own, arrival + int(rng.integers(0, 3)) * MS)
    assert last is not None
    residual = (own + last) - t  # where the shifted sample lands against the reference's clock
    assert abs(residual) < 5 * MS, residual / MS
