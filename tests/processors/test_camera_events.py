"""Camera/marker contact events: the kernel against its plain-Python twin, any chunking, a record
that starts in flight, and toe-off from the toe."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.processors.keypoints import TOE_LIFT_M, CameraEvents, camera_events_kernel, new_camera_state
from tests.processors.reference import camera_events_ref

RATE = 240.0


def foot(seconds: float = 4.0, start_in_flight: bool = False, tc: float = 0.25, step: float = 0.7,
         noise: float = 0.0, seed: int = 0, first: float | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """(times, ankle height, toe height, true (IC, TO) s) of one foot: the ankle rises from heel-off,
    100 ms before the toe leaves the ground (3 cm up 40 ms before it); in swing both rise about 15 cm."""
    t = np.arange(0, seconds, 1 / RATE)
    first = first if first is not None else 0.2 if start_in_flight else -0.05
    contacts = [(a, a + tc) for a in np.arange(first, seconds, step)]
    ankle = np.full_like(t, 0.08)
    toe = np.full_like(t, 0.02)
    for a, b in contacts:
        swing = (t > b) & (t < a + step)
        ph = (t[swing] - b) / (a + step - b)
        toe[swing] += 0.15 * np.sin(np.pi * ph) + 0.6 * (t[swing] - b) * (ph < 0.1)
        heel_off = (t > b - 0.10) & (t <= b)
        ankle[heel_off] += 0.5 * (t[heel_off] - (b - 0.10))  # 5 cm by toe-off
        ankle[swing] += 0.05 + 0.15 * np.sin(np.pi * ph)
    if start_in_flight:  # coming down at 1 m/s, as at the end of a swing
        pre = t < first
        ankle[pre] += np.minimum(0.15, 1.0 * (first - t[pre]))
        toe[pre] += np.minimum(0.15, 1.0 * (first - t[pre]))
    rng = np.random.default_rng(seed)
    ankle += rng.normal(0, noise, len(t))
    toe += rng.normal(0, noise, len(t))
    return np.round(t * 1e9).astype(np.int64), ankle, toe, [(a, b) for a, b in contacts if a > 0 and b < seconds]


def two_feet(start_in_flight: bool = False, noise: float = 0.0, seed: int = 0, seconds: float = 4.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, list[tuple[float, float]]]]:
    """Left and right feet half a stride apart: (times, ankles (n, 2), toes (n, 2), truth per foot).
    With ``start_in_flight`` the record begins with the right foot in the air, the left standing."""
    t, la, lt, left = foot(seconds, noise=noise, seed=seed)
    _, ra, rt, right = foot(seconds + 0.35, start_in_flight=start_in_flight, noise=noise, seed=seed + 1,
                            first=0.45 if start_in_flight else None)
    shift = 0 if start_in_flight else int(0.35 * RATE)
    ra, rt = ra[shift:shift + len(t)], rt[shift:shift + len(t)]
    lag = shift / RATE
    right = [(a - lag, b - lag) for a, b in right if 0 < a - lag and b - lag < seconds]
    return t, np.stack([la, ra], axis=1), np.stack([lt, rt], axis=1), {0: left, 1: right}


def run(t: np.ndarray, ankle: np.ndarray, toe: np.ndarray | None, cuts: list[int] | None = None,
        sole: np.ndarray | None = None) -> np.ndarray:
    """Rows of both feet; a single foot's heights (n,) are the left foot's, the right one absent."""
    def both(x: np.ndarray | None) -> np.ndarray | None:
        return x if x is None or x.ndim == 2 else np.stack([x, np.full_like(x, np.nan)], axis=1)
    ankle, toe, sole = both(ankle), both(toe), both(sole)  # type: ignore[assignment]
    det = CameraEvents()
    bounds = [0, *(cuts or []), len(t)]
    rows = [det.update(t[a:b], ankle[a:b], None if toe is None else toe[a:b], None if sole is None else sole[a:b])
            for a, b in itertools.pairwise(bounds)]
    return np.concatenate(rows) if rows else np.empty((0, 4))


def sole_of(t: np.ndarray, toe: np.ndarray, truth: list[tuple[float, float]], descent_mps: float = 1.0,
            floor_step_m: float = 0.0) -> np.ndarray:
    """A sole marker's height: on the floor (10 mm up) from each true IC to its TO, in swing the toe's
    path, coming down at ``descent_mps`` just before IC and stopped by the floor; each contact's floor
    ``floor_step_m`` lower than the one before (a floor that is not level in the camera's frame)."""
    s = np.asarray(t) / 1e9
    sole = toe.copy() + 0.01
    for k, (a, b) in enumerate(truth):
        floor = -k * floor_step_m
        stand = (s >= a) & (s <= b)
        sole[stand] = floor + 0.01
        down = (s > a - 0.1) & (s < a)
        sole[down] = np.minimum(sole[down], floor + 0.01 + descent_mps * (a - s[down]))
        after = (s > b) & (s < b + 0.5)
        sole[after] += floor
    return sole


@pytest.mark.parametrize("with_toe", [False, True])
@settings(max_examples=40, deadline=None)
@given(noise=st.floats(0.0, 0.004), seed=st.integers(0, 10_000), start_in_flight=st.booleans())
def test_kernel_matches_its_twin(with_toe: bool, noise: float, seed: int, start_in_flight: bool) -> None:
    t, ankle, toe, _ = two_feet(start_in_flight, noise, seed)
    zt = toe if with_toe else ankle
    lift = TOE_LIFT_M if with_toe else 0.03
    events = np.empty((2 * len(t) + 2, 4))
    state = np.stack([new_camera_state(), new_camera_state()])
    n = camera_events_kernel(t, ankle, zt, 0.01, lift, 0.02, 0.08e9, 0.10e9, state, events, with_toe)
    ref = camera_events_ref(list(t), ankle.tolist(), zt.tolist(), 0.01, lift, 0.02, 0.08e9, 0.10e9, with_toe)
    np.testing.assert_allclose(events[:n], np.array(ref).reshape(-1, 4))


@settings(max_examples=40, deadline=None)
@given(noise=st.floats(0.0, 0.004), seed=st.integers(0, 10_000), start_in_flight=st.booleans(),
       floor_step=st.floats(-0.02, 0.02))
def test_sole_kernel_matches_its_twin(noise: float, seed: int, start_in_flight: bool, floor_step: float) -> None:
    t, _ankle, toe, truth = two_feet(start_in_flight, noise, seed)
    sole = np.stack([sole_of(t, toe[:, f], truth[f], floor_step_m=floor_step) for f in range(2)], axis=1)
    events = np.empty((2 * len(t) + 2, 4))
    state = np.stack([new_camera_state(), new_camera_state()])
    n = camera_events_kernel(t, sole, toe, 0.01, TOE_LIFT_M, 0.02, 0.08e9, 0.10e9, state, events, True, True, 0.03)
    ref = camera_events_ref(list(t), sole.tolist(), toe.tolist(), 0.01, TOE_LIFT_M, 0.02, 0.08e9, 0.10e9, True,
                            sole=True, swing=0.03)
    assert n > 4
    np.testing.assert_allclose(events[:n], np.array(ref).reshape(-1, 4))


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 959), max_size=8), with_sole=st.booleans())
def test_streaming_equals_batch(cuts: list[int], with_sole: bool) -> None:
    t, ankle, toe, truth = two_feet(start_in_flight=True)
    sole = np.stack([sole_of(t, toe[:, f], truth[f]) for f in range(2)], axis=1) if with_sole else None
    np.testing.assert_array_equal(run(t, ankle, toe, sole=sole), run(t, ankle, toe, sorted(set(cuts)), sole=sole))


@pytest.mark.parametrize("floor_step", [0.0, -0.015, 0.015])
def test_the_sole_times_touchdown_on_a_floor_that_is_not_level(floor_step: float) -> None:
    """Each contact 15 mm lower (or higher) than the last, as on an overground run filmed or captured
    in a frame that is tilted 0.4 degrees: the sole's touchdown stays within a sample period, while
    the ankle's fixed height above the lowest point seen moves with the floor."""
    t, ankle, toe, truth = foot(seconds=4.0)
    floors = -np.arange(len(truth) + 2) * floor_step
    s = t / 1e9
    for k, (a, _b) in enumerate(truth):  # the ankle follows its floor too
        ankle[(s >= a - 0.05) & (s < a + 0.7 - 0.05)] += floors[k]
    sole = sole_of(t, toe, truth, floor_step_m=floor_step)
    ics = [r[1] / 1e9 for r in run(t, ankle, toe, sole=sole) if r[0] == 1.0]
    err = [min(abs(ic - a) for a, _ in truth) for ic in ics]
    assert len(ics) >= len(truth) - 1 and max(err) < 1.0 / RATE


def test_a_record_that_starts_in_flight_invents_no_contact() -> None:
    t, ankle, toe, truth = foot(start_in_flight=True)
    ics = [r[1] / 1e9 for r in run(t, ankle, toe) if r[0] == 1.0]
    assert ics and all(min(abs(ic - a) for a, _ in truth) < 0.01 for ic in ics)  # every IC a real one
    assert len(ics) >= len(truth) - 1  # alone, at most the first stance is given up


def test_a_foot_in_the_air_at_the_start_takes_the_floor_the_other_found() -> None:
    t, ankle, toe, truth = two_feet(start_in_flight=True)
    rows = run(t, ankle, toe)
    right = [r[1] / 1e9 for r in rows if r[0] == 1.0 and r[3] == 1.0]
    # its first contact too, once the left has stood (early by the 1 cm touch at 1 m/s and the
    # adopted ground's drift); the later ones as any
    assert right and abs(right[0] - truth[1][0][0]) < 0.02
    complete = [ic for ic in right[1:] if ic < t[-1] / 1e9 - 0.25]  # (truth lists complete contacts only)
    assert complete and all(min(abs(ic - a) for a, _ in truth[1]) < 0.01 for ic in complete)


def test_toe_off_from_the_toe_not_from_heel_off() -> None:
    t, ankle, toe, truth = foot()
    to_ankle = [r[1] / 1e9 for r in run(t, ankle, None) if r[0] == 2.0]
    to_toe = [r[1] / 1e9 for r in run(t, ankle, toe) if r[0] == 2.0]
    err_ankle = [min(abs(x - b) for _, b in truth) for x in to_ankle]
    err_toe = [min(abs(x - b) for _, b in truth) for x in to_toe]
    assert to_toe and np.mean(err_toe) < 0.015 < np.mean(err_ankle)  # the ankle's TO is heel-off


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=6, max_size=6),
                     max_size=200), sole=st.booleans())
def test_any_heights_never_crash(rows: list[list[float]], sole: bool) -> None:
    data = np.array(rows, dtype=np.float64).reshape(-1, 6)
    t = (np.arange(len(data)) * 4_000_000).astype(np.int64)
    CameraEvents().update(t, data[:, :2], data[:, 2:4], data[:, 4:] if sole else None)
    CameraEvents().update(np.zeros(len(data), dtype=np.int64), data[:, :2], data[:, 2:4], data[:, 4:] if sole else None)
