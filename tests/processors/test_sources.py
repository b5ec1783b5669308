"""Each source on its own, through the one feed protocol: ``feed(times_ns, data)`` returns
``(foot, rows)`` pairs of ``(kind, time, ic, peak)`` rows (an empty list when nothing happened),
on simple synthetic signals whose events are worked out by hand; ``warnings`` counts an
accelerometer declared in the wrong unit (GravityCheck: a mean under 0.3 g or over 3 g over its
first 10 s) and a pelvis contact given to the wrong foot (processors/sources.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from poserun.processors.clock import ClockOffset
from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO, ContactDetector
from poserun.processors.imu import FootEvents, FootImu
from poserun.processors.insole import InsoleLayout
from poserun.processors.keypoints import JOINTS, KeypointLayout
from poserun.processors.ring import SampleRing
from poserun.processors.sources import (
    CameraSource,
    Events,
    FootImuSource,
    InsoleSource,
    PelvisSource,
    ShankSource,
    Source,
)

G = 9.80665
MS = 1_000_000
S = 1_000_000_000
BW = 700.0
UPRIGHT = {"x": "forward", "y": "left", "z": "up"}


def times(n: int, period_ns: int, start_ns: int = 0) -> np.ndarray:
    return start_ns + np.arange(n, dtype=np.int64) * period_ns


def feed_in(src: Source, t: np.ndarray, data: np.ndarray, cuts: list[int]) -> Events:
    out: Events = []
    bounds = [0, *cuts, len(t)]
    for a, b in itertools.pairwise(bounds):
        out += src.feed(t[a:b], data[a:b])
    return out


def kinds(events: Events) -> list[tuple[str, int]]:
    return [(foot, int(r[0])) for foot, rows in events for r in rows]


def check_protocol(events: Events) -> None:
    assert isinstance(events, list)
    for foot, rows in events:
        assert foot in ("left", "right")
        assert isinstance(rows, np.ndarray) and rows.ndim == 2 and rows.shape[1] == 4 and len(rows) > 0


# ------------------------------------------------------------------ insole

def insole(side: str = "left", areas: list[float] | None = None, unit: str = "N") -> InsoleSource:
    layout = InsoleLayout.from_meta(["heel", "ball"], [(0.1, 0.5), (0.7, 0.45)], areas, unit)
    return InsoleSource(side, layout, ContactDetector(BW), SampleRing(width=2))


def insole_step(per_cell: float = 175.0) -> tuple[np.ndarray, np.ndarray]:
    """100 Hz; 350 N (two cells of 175) on samples 50-74 (0.50-0.74 s), nothing otherwise."""
    t = times(100, 10 * MS)
    cells = np.zeros((100, 2))
    cells[50:75] = per_cell
    return t, cells


# on 10 % BW = 70 N: crossed 70 / 350 = 0.2 of the way from 0.49 s to 0.50 s; off 5 % BW = 35 N:
# 0.9 of the way from 0.74 s (350 N) to 0.75 s (0 N)
INSOLE_IC, INSOLE_TO = 492 * MS, 749 * MS


def test_insole_a_step_above_and_below_10_percent_gives_one_ic_and_one_to() -> None:
    src = insole()
    t, cells = insole_step()
    assert src.feed(t[:40], cells[:40]) == []  # nothing happened
    out = src.feed(t[40:], cells[40:])
    check_protocol(out)
    assert len(out) == 1
    foot, rows = out[0]
    assert foot == "left"
    np.testing.assert_allclose(rows, [[EV_IC, INSOLE_IC, INSOLE_IC, 350.0],
                                      [EV_TO, INSOLE_TO, INSOLE_IC, 350.0]], rtol=0, atol=1.0)
    assert not src.warnings


def test_insole_events_in_the_frames_that_hold_them() -> None:
    src = insole("right")
    t, cells = insole_step()
    first = src.feed(t[:60], cells[:60])
    assert kinds(first) == [("right", 1)]
    assert first[0][1][0, 1] == pytest.approx(INSOLE_IC, abs=1.0)
    assert src.feed(t[60:70], cells[60:70]) == []  # in stance
    assert kinds(src.feed(t[70:], cells[70:])) == [("right", 2)]


def test_insole_any_chunking_gives_the_same_rows() -> None:
    t, cells = insole_step()
    whole = insole().feed(t, cells)
    one_by_one = feed_in(insole(), t, cells, list(range(1, 100)))
    assert np.array_equal(np.concatenate([r for _f, r in one_by_one]), whole[0][1])


def test_insole_a_short_contact_is_a_short_row() -> None:
    src = insole()
    t = times(100, 10 * MS)
    cells = np.zeros((100, 2))
    cells[50:55] = 175.0  # 50 ms: under the 80 ms minimum stance
    rows = src.feed(t, cells)[0][1]
    assert [int(k) for k in rows[:, 0]] == [int(EV_IC), int(EV_SHORT)]


def test_insole_in_kpa_is_scaled_by_the_cell_areas() -> None:
    src = insole(areas=[0.002, 0.002], unit="kPa")  # 2 N per kPa
    t, cells = insole_step(per_cell=87.5)  # 175 N per cell, as above
    rows = src.feed(t, cells)[0][1]
    np.testing.assert_allclose(rows[:, 1], [INSOLE_IC, INSOLE_TO], rtol=0, atol=1.0)
    assert rows[0, 3] == pytest.approx(350.0)


def test_insole_keeps_its_raw_samples_and_measures_its_period() -> None:
    src = insole()
    assert src.period_ns(0.0) == 10 * MS  # until there are three samples
    t = times(60, 5 * MS)  # a 200 Hz insole
    cells = np.tile([3.0, 4.0], (60, 1))
    assert src.feed(t, cells) == []
    kept_t, kept = src.ring.window(-math.inf, math.inf)
    np.testing.assert_array_equal(kept_t, t)
    np.testing.assert_array_equal(kept, cells)
    assert src.period_ns(float(t[-1])) == 5 * MS


def test_insole_cell_map_is_a_copy_each_time() -> None:
    src = insole()
    m = src.cell_map()
    assert m == {"along": [0.1, 0.7], "across": [0.5, 0.45], "region": ["heel", "ball"]}
    m["along"].append(9.0)
    assert src.cell_map() == {"along": [0.1, 0.7], "across": [0.5, 0.45], "region": ["heel", "ball"]}


# ------------------------------------------------------------------ foot IMU

FOOT_RATE = 500.0  # 2 ms samples
# the impact at sample 250 (0.500 s): world vertical acceleration -5 m/s^2 before it, 5 g at it; IC where it
# crossed 1 g between 0.498 and 0.500 s
FOOT_IC = 498 * MS + (G + 5.0) / (5 * G + 5.0) * 2 * MS  # 0.498548 s
FOOT_TO = 802 * MS  # the pitch-rate peak 2, 6, 2 rad/s at samples 400-402 (symmetric: no refinement)


def foot_signal(n: int = 450) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame accelerometer (m/s^2) and gyro (rad/s) of one contact at 500 Hz: standing
    (0-0.2 s), a push-off pitch flick (+5 then -5 rad/s: no net rotation), a descent (specific force
    g - 5: falling at 5 m/s^2), the impact (6 g), standing, and a push-off (pitch rate 2, 6, 2 rad/s)."""
    t = times(n, 2 * MS)
    d = np.zeros((n, 6))
    d[:, 2] = G
    d[100, 4], d[101, 4] = 5.0, -5.0
    d[102:250, 2] = G - 5.0
    d[250, 2] = 6 * G
    d[400:403, 4] = [2.0, 6.0, 2.0]
    return t, d


def foot_imu(axes: dict[str, str] | None = None, accel_unit: str = "m/s^2", gyro_unit: str = "rad/s",
             clock: ClockOffset | None = None) -> FootImuSource:
    return FootImuSource("left", dict(axes or UPRIGHT), accel_unit, gyro_unit, FootImu(FOOT_RATE), FootEvents(),
                         clock=clock)


def test_foot_imu_impact_and_push_off() -> None:
    src = foot_imu()
    t, d = foot_signal()
    assert src.feed(t[:200], d[:200]) == []  # standing and falling
    out = src.feed(t[200:], d[200:])
    check_protocol(out)
    assert kinds(out) == [("left", 1), ("left", 2)]
    rows = out[0][1]
    assert rows[0, 1] == pytest.approx(FOOT_IC, abs=10.0)
    assert rows[0, 2] == pytest.approx(FOOT_IC, abs=10.0)
    assert rows[0, 3] == pytest.approx(5 * G, rel=1e-6)  # the impact's world vertical acceleration
    assert rows[1, 1] == pytest.approx(FOOT_TO, abs=10.0)
    assert rows[1, 2] == pytest.approx(FOOT_IC, abs=10.0)  # the TO's IC
    assert rows[1, 3] == pytest.approx(6.0)  # the pitch-rate peak
    assert not src.warnings


def test_foot_imu_keeps_its_columns() -> None:
    src = foot_imu()
    t, d = foot_signal()
    src.feed(t, d)
    kept_t, cols = src.ring.window(-math.inf, math.inf)
    np.testing.assert_array_equal(kept_t, t)
    assert cols.shape == (len(t), 4)  # vz, still, |a| - g, a_wz
    assert cols[50, 1] == 1.0  # standing still
    assert cols[50, 0] == 0.0  # at rest
    assert cols[249, 0] == pytest.approx(-5.0 * 148 * 0.002, abs=0.01)  # 148 samples falling at 5 m/s^2
    assert cols[250, 2] == pytest.approx(5 * G)  # |a| - g at the impact


@pytest.mark.parametrize(("scale_acc", "accel_unit", "scale_gyr", "gyro_unit", "sign", "axes"), [
    (1 / G, "g", 1.0, "rad/s", 1.0, UPRIGHT),
    (1.0, "m/s^2", 180 / math.pi, "deg/s", 1.0, UPRIGHT),
    (1.0, "m/s^2", 1.0, "rad/s", -1.0, {"x": "backward", "y": "right", "z": "down"}),
])
def test_foot_imu_the_meta_s_units_and_axes(scale_acc: float, accel_unit: str, scale_gyr: float, gyro_unit: str,
                                            sign: float, axes: dict[str, str]) -> None:
    t, d = foot_signal()
    raw = d.copy()
    raw[:, :3] *= scale_acc * sign
    raw[:, 3:] *= scale_gyr * sign
    rows = foot_imu(axes, accel_unit, gyro_unit).feed(t, raw)[0][1]
    np.testing.assert_allclose(rows[:, 1], [FOOT_IC, FOOT_TO], rtol=0, atol=1e3)


def test_foot_imu_beside_an_insole_is_put_on_its_clock() -> None:
    clock = ClockOffset()
    for k in range(3):  # the insole saw each IC 40 ms after the IMU's clock did
        clock.add(reference_ns=(10 + k) * S + 40 * MS, source_raw_ns=(10 + k) * S)
    assert clock.applied_ns() == 40 * MS
    src = foot_imu(clock=clock)
    t, d = foot_signal()
    rows = src.feed(t, d)[0][1]
    assert src.shift_ns == 40 * MS
    np.testing.assert_allclose(rows[:, 1], [FOOT_IC + 40 * MS, FOOT_TO + 40 * MS], rtol=0, atol=10.0)
    kept_t, _ = src.ring.window(-math.inf, math.inf)
    np.testing.assert_array_equal(kept_t, t + 40 * MS)


# ------------------------------------------------------------------ unit checks (foot and shank)

def standing(seconds: float, value: float, rate: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    n = int(seconds * rate) + 1
    d = np.zeros((n, 6))
    d[:, 2] = value
    return times(n, round(1e9 / rate)), d


@pytest.mark.parametrize(("value", "declared", "wrong"), [
    (1.0, "m/s^2", True),  # a file in g declared as m/s^2: 0.1 g
    (G, "g", True),  # m/s^2 declared as g: 9.8 g
    (G, "m/s^2", False),
    (1.0, "g", False),
])
def test_foot_imu_an_accelerometer_in_the_wrong_unit_is_counted_once(value: float, declared: str,
                                                                     wrong: bool) -> None:
    src = foot_imu(accel_unit=declared)
    t, d = standing(9.0, value)
    src.feed(t, d)
    assert not src.warnings  # under 10 s: no verdict yet
    t2, d2 = standing(2.0, value)
    src.feed(t2 + t[-1] + 10 * MS, d2)
    src.feed(t2 + t[-1] + 3 * S, d2)  # and later data does not count it again
    expected = {"imu_foot_left_accel_unit_implausible": 1} if wrong else {}
    assert dict(src.warnings) == expected


@pytest.mark.parametrize(("value", "declared", "wrong"), [(1.0, "m/s^2", True), (G, "g", True),
                                                          (G, "m/s^2", False), (1.0, "g", False)])
def test_shank_an_accelerometer_in_the_wrong_unit_is_counted_once(value: float, declared: str,
                                                                  wrong: bool) -> None:
    src = ShankSource("right", declared)
    t, d = standing(12.0, value)
    assert src.feed(t[:500], d[:500, :3]) == []
    assert not src.warnings
    src.feed(t[500:], d[500:, :3])
    src.feed(t + 13 * S, d[:, :3])
    expected = {"imu_shank_right_accel_unit_implausible": 1} if wrong else {}
    assert dict(src.warnings) == expected


# ------------------------------------------------------------------ shank

SHANK_RATE = 200.0  # 5 ms samples
ONSET = 460  # 2.300 s: the last minimum before the rise (dynamic acceleration about 0)
DIP = 500  # 2.500 s: the deepest deceleration along gravity


def shank_signal(n: int = 700) -> tuple[np.ndarray, np.ndarray]:
    """Any-axis accelerometer (m/s^2) at 200 Hz: still (0-2 s), a swing (0.5 g forward, 2.0-2.3 s),
    the impact onset (2.300 s: gravity alone), the impact (60 then 30 m/s^2 along the shank), stance
    with a push-off deceleration (g - 4, g - 8, g - 4 at 2.495-2.505 s), still again."""
    t = times(n, 5 * MS)
    a = np.zeros((n, 3))
    a[:, 2] = G
    a[400:ONSET, 0] = 5.0
    a[ONSET + 1, 2] = G + 60.0
    a[ONSET + 2, 2] = G + 30.0
    a[DIP - 1:DIP + 2, 2] = [G - 4.0, G - 8.0, G - 4.0]
    return t, a


def test_shank_swing_impact_stance() -> None:
    src = ShankSource("left", "m/s^2")
    t, a = shank_signal()
    out = src.feed(t, a)
    check_protocol(out)
    assert kinds(out) == [("left", 1), ("left", 2)]
    rows = out[0][1]
    onset = float(t[ONSET])
    # IC: the onset, refined between samples (within half a sample of it)
    assert abs(rows[0, 1] - onset) <= 2.5 * MS
    assert rows[0, 2] == rows[0, 1]
    assert rows[0, 3] == pytest.approx(60.0, abs=1.0)  # the impact's size, m/s^2
    # TO: the deepest deceleration (symmetric: at its sample)
    assert abs(rows[1, 1] - float(t[DIP])) <= 1 * MS
    assert rows[1, 2] == rows[0, 1]
    assert rows[1, 3] == pytest.approx(-8.0, abs=0.5)


def test_shank_events_come_when_they_are_certain() -> None:
    src = ShankSource("left", "m/s^2")
    t, a = shank_signal()
    assert src.feed(t[:ONSET + 2], a[:ONSET + 2]) == []  # up to the impact's peak: not yet passed
    ic = src.feed(t[ONSET + 2:ONSET + 3], a[ONSET + 2:ONSET + 3])
    assert kinds(ic) == [("left", 1)]  # the sample after the peak
    # the push-off is the deepest deceleration up to 0.5 s after IC: not reported before
    until = int(np.searchsorted(t, ic[0][1][0, 1] + 0.45 * S))
    assert src.feed(t[ONSET + 3:until], a[ONSET + 3:until]) == []
    assert kinds(src.feed(t[until:], a[until:])) == [("left", 2)]


def test_shank_in_g_gives_the_same_events() -> None:
    t, a = shank_signal()
    in_si = ShankSource("left", "m/s^2").feed(t, a)[0][1]
    in_g = ShankSource("left", "g").feed(t, a / G)[0][1]
    np.testing.assert_allclose(in_g[:, :3], in_si[:, :3], rtol=0, atol=100.0)


def test_shank_reads_the_first_three_columns() -> None:
    t, a = shank_signal()
    six = np.concatenate([a, np.full_like(a, 123.0)], axis=1)  # a gyro beside it
    rows = ShankSource("right", "m/s^2").feed(t, six)
    assert kinds(rows) == [("right", 1), ("right", 2)]


# ------------------------------------------------------------------ camera

NAMES = [f"{side}_{j}" for side in ("left", "right") for j in JOINTS]
POSE = np.array([[0.0, 0.9], [0.05, 0.5], [0.1, 0.0], [0.05, 1.4],
                 [0.02, 0.9], [-0.1, 0.55], [-0.3, 0.0], [0.07, 1.4]])


def camera() -> CameraSource:
    layout = KeypointLayout.from_meta(NAMES, "xy", "m", 1.0, (0.0, 0.0), "up", "sagittal_right")
    assert layout is not None
    return CameraSource(layout, min_stance_s=0.08, min_swing_s=0.10)


def ankle_height(n: int = 120) -> np.ndarray:
    """100 fps: standing (frames 0-30), up 1 cm a frame to 10 cm (40), held (50), down 1 cm a frame to
    the ground (60), standing (85), up 1 cm a frame."""
    z = np.zeros(n)
    for k in range(n):
        if 30 < k <= 40:
            z[k] = (k - 30) * 0.01
        elif 40 < k <= 50:
            z[k] = 0.10
        elif 50 < k <= 60:
            z[k] = 0.10 - (k - 50) * 0.01
        elif k > 85:
            z[k] = (k - 85) * 0.01
    return z


# The ground level is the lowest height seen, drifting up 0.02 m/s (0.2 mm a frame) while the foot
# is above it. IC: the ankle at 1 cm above it, ground 0.3 s (29 frames) after the last standing
# frame at 5.8 mm: crossed between 0.58 s (2 cm) and 0.59 s (1 cm) at 2 - 1.58 = 0.42 of the way.
CAM_IC = 0.5842e9
# TO: 3 cm above the ground, which has drifted 0.8 mm 4 frames after 0.85 s: between 0.88 s (3 cm)
# and 0.89 s (4 cm) at 0.08 of the way
CAM_TO = 0.8808e9


def frames(foot: str) -> tuple[np.ndarray, np.ndarray]:
    n = 120
    pts = np.repeat(POSE[None], n, axis=0)
    pts[:, 2 if foot == "left" else 6, 1] = ankle_height(n)
    return times(n, 10 * MS), pts.reshape(n, 16)


@pytest.mark.parametrize("foot", ["left", "right"])
def test_camera_an_ankle_coming_down(foot: str) -> None:
    src = camera()
    t, data = frames(foot)
    assert src.feed(t[:50], data[:50]) == []  # standing, lifting
    out = src.feed(t[50:], data[50:])
    check_protocol(out)
    assert len(out) == 1
    got_foot, rows = out[0]
    assert got_foot == foot  # the other ankle never leaves the ground
    np.testing.assert_allclose(rows, [[EV_IC, CAM_IC, CAM_IC, 0.0], [EV_TO, CAM_TO, CAM_IC, 0.0]],
                               rtol=0, atol=1e3)
    assert not src.warnings


def test_camera_no_ic_for_a_foot_not_yet_seen_standing() -> None:
    """A record that starts with the foot in the air: its first descent gives no IC."""
    src = camera()
    t, data = frames("left")
    assert src.feed(t[31:70], data[31:70]) == []
    # the right ankle, at 0 all along, never stood and lifted either: nothing for it


def test_camera_keeps_metric_frames() -> None:
    src = camera()
    t, data = frames("left")
    src.feed(t, data)
    got = src.window(float(t[10]), float(t[12]))
    assert got is not None
    wt, joints = got
    np.testing.assert_array_equal(wt, t[10:13])
    assert joints.shape == (3, 8, 2)
    np.testing.assert_allclose(joints[0], POSE)
    assert src.window(float(t[10]), float(t[10])) is None  # under two frames


# ------------------------------------------------------------------ pelvis

PELVIS_RATE = 200.0
TC, STEP = 0.25, 0.35  # s


def pelvis_signal(first: str, seconds: float = 8.0) -> tuple[np.ndarray, np.ndarray, list[tuple[str, float, float]]]:
    """A sacrum accelerometer (upright axes, m/s^2) over alternating half-sine stances of 0.25 s every
    0.35 s, their mean 1 g; a stance on the left foot pushes the body right (-y), on the right left.
    Returns (times, specific force, true (foot, IC s, TO s))."""
    n = int(seconds * PELVIS_RATE)
    t = times(n, 5 * MS)
    ts = np.arange(n) / PELVIS_RATE
    peak = G * math.pi / 2 * STEP / TC  # the mean of the stances is then g
    acc = np.zeros((n, 3))
    truth = []
    for k in range(int(seconds / STEP) + 1):
        a, b = 0.05 + k * STEP, 0.05 + k * STEP + TC
        foot = first if k % 2 == 0 else ("left" if first == "right" else "right")
        m = (ts > a) & (ts < b)
        v = peak * np.sin(np.pi * (ts[m] - a) / TC)
        acc[m, 2] = v
        acc[m, 1] = (0.1 if foot == "right" else -0.1) * v
        if b < seconds:
            truth.append((foot, a, b))
    return t, acc, truth


def contacts(events: Events) -> list[tuple[str, float, float]]:
    """(foot, IC s, TO s) of each TO row."""
    out = []
    for foot, rows in events:
        for kind, time, ic, _peak in rows:
            if kind == EV_TO:
                out.append((foot, ic / 1e9, time / 1e9))
    return out


def test_pelvis_alternating_contacts_each_given_its_foot() -> None:
    src = PelvisSource(UPRIGHT, "sacrum", PELVIS_RATE, 0.08)
    t, acc, truth = pelvis_signal(first="left")
    out = feed_in(src, t, acc, [400, 401, 900])
    check_protocol(out)
    assert all(len(rows) == 1 for _f, rows in out)  # one row per pair
    got = contacts(out)
    assert [f for f, _a, _b in got] == [f for f, _a, _b in truth]
    for (_f, ic, to), (_tf, a, b) in list(zip(got, truth, strict=True))[3:]:  # once gravity is known
        assert abs(ic - a) < 3e-3 and abs(to - b) < 3e-3
    assert not src.warnings
    assert src.placement == "sacrum"


def test_pelvis_a_contact_given_to_the_wrong_foot_is_counted() -> None:
    """Contacts are predicted to start on the left; the first stance is on the right: one flip,
    after which the alternation is turned round and the feet are right."""
    src = PelvisSource(UPRIGHT, "pelvis", PELVIS_RATE, 0.08)
    t, acc, truth = pelvis_signal(first="right")
    got = contacts(src.feed(t, acc))
    assert got[0][0] == "left"  # predicted at IC, the record already given
    assert [f for f, _a, _b in got[1:]] == [f for f, _a, _b in truth[1:]]
    assert dict(src.warnings) == {"pelvis_side_flip": 1}


def test_pelvis_nothing_happened() -> None:
    src = PelvisSource(UPRIGHT, "trunk", PELVIS_RATE, 0.08)
    t, acc, _ = pelvis_signal(first="left", seconds=0.04)  # before the first stance
    assert src.feed(t, acc) == []


def test_camera_window_carries_the_toes_as_the_fall_angles_support() -> None:
    names = [*NAMES, "left_toe", "right_toe"]
    layout = KeypointLayout.from_meta(names, "xy", "m", 1.0, (0.0, 0.0), "up", "sagittal_right")
    assert layout is not None and layout.toes == (8, 9)
    src = CameraSource(layout, min_stance_s=0.08, min_swing_s=0.10)
    t = np.arange(10, dtype=np.int64) * 10_000_000
    frame = np.concatenate([POSE, [[0.25, -0.02], [-0.15, -0.02]]]).ravel()
    src.feed(t, np.tile(frame, (10, 1)))
    win = src.window(0, 1e9)
    assert win is not None and len(win) == 3
    np.testing.assert_allclose(win[1][0], POSE)
    np.testing.assert_allclose(win[2][0], [[0.25, -0.02], [-0.15, -0.02]])
    # without toes: joints only
    plain = camera()
    plain.feed(t, np.tile(POSE.ravel(), (10, 1)))
    win = plain.window(0, 1e9)
    assert win is not None and len(win) == 2
