"""Rolling statistics on their own: step numbers, the last IC/TO per foot, cadence (alternating
feet, one foot only, implausible intervals, the window) and L/R symmetry
(100 x (L - R) / mean over the last 8 stances per side), from hand-made contact times."""

from __future__ import annotations

import pytest

from poserun.processors.rolling import SYMMETRY_METRICS, SYMMETRY_STANCES, Rolling

S = 1_000_000_000  # ns


def land_all(r: Rolling, ics: list[tuple[float, str]]) -> list[int]:
    return [r.landed(t, foot) for t, foot in ics]


def alternate(intervals_s: list[float], start_s: float = 10.0, first: str = "left") -> list[tuple[float, str]]:
    """ICs of alternating feet separated by ``intervals_s``."""
    feet = (first, "right" if first == "left" else "left")
    t = start_s
    out = [(t * S, feet[0])]
    for k, dt in enumerate(intervals_s, start=1):
        t += dt
        out.append((t * S, feet[k % 2]))
    return out


def one_foot(intervals_s: list[float], foot: str = "left", start_s: float = 10.0) -> list[tuple[float, str]]:
    t = start_s
    out = [(t * S, foot)]
    for dt in intervals_s:
        t += dt
        out.append((t * S, foot))
    return out


# ------------------------------------------------------------------ steps, last IC / TO

def test_each_landing_is_the_next_step() -> None:
    r = Rolling()
    assert r.steps == 0
    assert land_all(r, alternate([0.35, 0.35, 0.35])) == [1, 2, 3, 4]
    assert r.steps == 4


def test_stood_keeps_the_last_ic_and_to_per_foot() -> None:
    r = Rolling()
    assert r.last_ic == {} and r.last_to == {}
    r.stood("left", 1.0 * S, 1.2 * S)
    r.stood("right", 1.35 * S, 1.56 * S)
    r.stood("left", 1.7 * S, 1.9 * S)
    assert r.last_ic == {"left": 1.7 * S, "right": 1.35 * S}
    assert r.last_to == {"left": 1.9 * S, "right": 1.56 * S}


def test_a_stance_does_not_count_a_step() -> None:
    r = Rolling()
    r.stood("left", 1.0 * S, 1.2 * S)
    assert r.steps == 0
    assert r.cadence_spm() is None


# ------------------------------------------------------------------ cadence

def test_no_cadence_before_two_landings() -> None:
    r = Rolling()
    assert r.cadence_spm() is None
    r.landed(10 * S, "left")
    assert r.cadence_spm() is None


def test_cadence_from_alternating_feet_is_60_over_the_median_step() -> None:
    r = Rolling()
    land_all(r, alternate([0.30, 0.40, 0.35, 0.36, 0.34]))
    # median of 0.30, 0.34, 0.35, 0.36, 0.40 = 0.35 s -> 60 / 0.35 = 171.43
    assert r.cadence_spm() == 171.4


def test_cadence_from_one_foot_is_two_steps_per_stride() -> None:
    r = Rolling()
    land_all(r, one_foot([0.70, 0.72, 0.68]))
    # median stride 0.70 s -> 120 / 0.70 = 171.43
    assert r.cadence_spm() == 171.4


def test_alternating_steps_win_over_same_foot_strides() -> None:
    r = Rolling()
    # left, left (a 0.8 s stride), right 0.4 s later: the step gives 60 / 0.4 = 150
    land_all(r, [(10.0 * S, "left"), (10.8 * S, "left"), (11.2 * S, "right")])
    assert r.cadence_spm() == 150.0


@pytest.mark.parametrize(("intervals", "expected"), [
    ([0.40, 0.10, 0.10], 150.0),  # under 0.15 s: not a step (counted, the median would be 0.10 -> 600)
    ([0.30, 1.60, 1.60], 200.0),  # over 1.5 s: a pause, not a step (counted: 1.60 -> 37.5)
])
def test_implausible_steps_are_ignored(intervals: list[float], expected: float) -> None:
    r = Rolling()
    land_all(r, alternate(intervals))
    assert r.cadence_spm() == expected


@pytest.mark.parametrize(("intervals", "expected"), [
    ([0.80, 0.20, 0.20], 150.0),  # under 0.3 s: not a stride (counted: 0.20 -> 600)
    ([0.60, 3.50, 3.50], 200.0),  # over 3 s: a pause (counted: 3.5 -> 34.3)
])
def test_implausible_strides_are_ignored(intervals: list[float], expected: float) -> None:
    r = Rolling()
    land_all(r, one_foot(intervals))
    assert r.cadence_spm() == expected


def test_only_implausible_intervals_give_no_cadence() -> None:
    r = Rolling()
    land_all(r, alternate([2.0, 2.0]))
    assert r.cadence_spm() is None
    r2 = Rolling()
    land_all(r2, one_foot([5.0]))
    assert r2.cadence_spm() is None


def test_cadence_is_over_the_last_window_steps() -> None:
    r = Rolling(cadence_window_steps=8)
    # 8 steps of 0.5 s, then 8 of 0.3 s: over the last 8 steps the cadence is 60 / 0.3 = 200
    # (over all 16 the median would be 0.4 s -> 150)
    land_all(r, alternate([0.5] * 8 + [0.3] * 8))
    assert r.cadence_spm() == 200.0


def test_a_shorter_window_forgets_sooner() -> None:
    ics = alternate([0.5] * 4 + [0.3] * 3 + [0.5] * 2)
    r = Rolling(cadence_window_steps=4)
    land_all(r, ics[:-1])
    # last 4 steps: 0.3, 0.3, 0.3, 0.5 -> median 0.3 -> 200
    assert r.cadence_spm() == 200.0
    r.landed(*ics[-1])
    # last 4: 0.3, 0.3, 0.5, 0.5 -> median 0.4 -> 150
    assert r.cadence_spm() == 150.0


# ------------------------------------------------------------------ symmetry

def test_symmetry_needs_both_sides() -> None:
    r = Rolling()
    assert r.symmetry("left", {"support_time_s": 0.20}) == {}
    assert r.symmetry("left", {"support_time_s": 0.22}) == {}


def test_symmetry_is_100_l_minus_r_over_the_mean() -> None:
    r = Rolling()
    r.symmetry("left", {"support_time_s": 0.20})
    out = r.symmetry("right", {"support_time_s": 0.25})
    # 100 * (0.20 - 0.25) / 0.225 = -22.222...
    assert out == {"support_time_s": -22.22}
    # the sign follows left minus right whichever foot's stance it is
    out = r.symmetry("left", {"support_time_s": 0.20})
    assert out == {"support_time_s": -22.22}


def test_symmetry_means_the_last_8_stances_per_side() -> None:
    assert SYMMETRY_STANCES == 8
    r = Rolling()
    r.symmetry("left", {"flight_time_s": 0.50})  # pushed out by the next 8
    for _ in range(8):
        r.symmetry("left", {"flight_time_s": 0.10})
    r.symmetry("right", {"flight_time_s": 0.14})
    out = r.symmetry("right", {"flight_time_s": 0.10})
    # left mean 0.10 (the 0.50 forgotten), right mean 0.12: 100 * (0.10 - 0.12) / 0.11 = -18.18
    assert out == {"flight_time_s": -18.18}


def test_symmetry_mean_of_several_stances() -> None:
    r = Rolling()
    for v in (20.0, 22.0, 24.0):
        r.symmetry("left", {"loading_rate_bw_per_s": v})
    out = r.symmetry("right", {"loading_rate_bw_per_s": 18.0})
    # left mean 22, right 18: 100 * 4 / 20 = 20
    assert out == {"loading_rate_bw_per_s": 20.0}


def test_ints_count_booleans_and_none_do_not() -> None:
    r = Rolling()
    r.symmetry("left", {"knee_flexion_ic_deg": 20, "impact_peak_g": True, "pull_height_m": None})
    out = r.symmetry("right", {"knee_flexion_ic_deg": 10, "impact_peak_g": False, "pull_height_m": 0.3})
    # 100 * (20 - 10) / 15 = 66.67; impact (booleans) and pull height (left None) absent
    assert out == {"knee_flexion_ic_deg": 66.67}


def test_non_numbers_and_other_metrics_are_ignored() -> None:
    r = Rolling()
    r.symmetry("left", {"overstride_m": "0.1", "peak_force_bw": 2.5, "support_time_s": 0.2})
    out = r.symmetry("right", {"overstride_m": 0.1, "peak_force_bw": 2.0, "support_time_s": 0.2})
    assert out == {"support_time_s": 0.0}


def test_a_zero_mean_gives_no_figure() -> None:
    r = Rolling()
    r.symmetry("left", {"flight_time_s": 0.05})
    assert r.symmetry("right", {"flight_time_s": -0.05}) == {}


def test_symmetry_of_every_listed_metric() -> None:
    assert set(SYMMETRY_METRICS) == {
        "support_time_s", "flight_time_s", "loading_rate_bw_per_s", "ball_load_fraction", "release_ratio",
        "toe_pushoff_fraction", "impact_peak_g", "foot_landing_velocity_mps", "overstride_m",
        "knee_flexion_ic_deg", "pull_height_m"}  # docs/processor.md "Symmetry"
    r = Rolling()
    r.symmetry("left", dict.fromkeys(SYMMETRY_METRICS, 3.0))
    out = r.symmetry("right", dict.fromkeys(SYMMETRY_METRICS, 1.0))
    # 100 * (3 - 1) / 2 = 100 for each
    assert out == dict.fromkeys(SYMMETRY_METRICS, 100.0)


def test_a_stance_without_a_metric_still_reports_the_histories() -> None:
    r = Rolling()
    r.symmetry("left", {"support_time_s": 0.2, "loading_rate_bw_per_s": 30.0})
    r.symmetry("right", {"support_time_s": 0.2, "loading_rate_bw_per_s": 20.0})
    out = r.symmetry("left", {"support_time_s": 0.2})  # no insole metric this time
    # the loading-rate histories are unchanged: 100 * 10 / 25 = 40
    assert out == {"support_time_s": 0.0, "loading_rate_bw_per_s": 40.0}
