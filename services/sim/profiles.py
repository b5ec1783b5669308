"""Technique profiles of the simulated team: what each kind of runner does differently.

Figures are typical values from the running literature and the Pose Method
articles in ``shared/seeds`` (ball-of-foot landing under the hip, short
support, ~180 steps/min for ``pose``); every one varies stride to stride.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

#: the speed at which a profile's cadence and duty factor hold (the simulated athlete's default)
REFERENCE_SPEED_MPS = 3.6


@dataclass(frozen=True)
class Profile:
    """Technique parameters; times in s, distances in m, angles in degrees."""

    name: str
    cadence_spm: float
    duty: float  # support time / step time at the reference speed
    overstride_m: float  # ankle ahead of the hip at initial contact
    strike: str  # region that loads first: heel, midfoot, ball
    ic_pitch_deg: float  # foot pitch at IC, positive = toes down
    pull_height_m: float  # ankle rise in swing
    landing_ratio: tuple[float, float]  # foot / body vertical velocity at IC, normal steps
    forced_share: float = 0.0  # share of steps that are forced landings
    forced_ratio: tuple[float, float] = (1.6, 2.4)
    trunk_lean_deg: float = 5.0  # whole-body lean from vertical
    waist_bend_deg: float = 2.0
    heel_touch_bw: float = 0.0  # light heel touch in mid-stance (ball strikers)
    force_peak_at: float = 0.5  # stance fraction of the force peak
    cop: tuple[tuple[float, float], ...] = field(default=())  # (stance fraction, along foot)
    heel_off: float = 0.6  # stance fraction where the heel lifts / pull starts
    toe_off_pitch_deg: float = 35.0  # the least foot pitch at TO (more when the leg needs it)
    knee_flexion_to_deg: float = 16.0  # the knee's flexion at TO, its straightest in stance

    def with_(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


_BALL_COP = ((0.0, 0.72), (0.35, 0.66), (0.7, 0.71), (1.0, 0.80))
_HEEL_COP = ((0.0, 0.10), (0.15, 0.30), (0.45, 0.62), (0.8, 0.80), (1.0, 0.93))
_MID_COP = ((0.0, 0.42), (0.3, 0.55), (0.7, 0.75), (1.0, 0.90))

PROFILES: dict[str, Profile] = {
    "pose": Profile(
        "pose", cadence_spm=180, duty=0.58, overstride_m=0.08, strike="ball", ic_pitch_deg=8,
        pull_height_m=0.34, landing_ratio=(0.8, 1.1), trunk_lean_deg=6, waist_bend_deg=1,
        heel_touch_bw=0.02, force_peak_at=0.42, cop=_BALL_COP, heel_off=0.45,
        toe_off_pitch_deg=25,
    ),
    "heel_striker": Profile(
        "heel_striker", cadence_spm=166, duty=0.72, overstride_m=0.24, strike="heel",
        ic_pitch_deg=-16, pull_height_m=0.24, landing_ratio=(0.85, 1.15), trunk_lean_deg=2,
        waist_bend_deg=6, force_peak_at=0.5, cop=_HEEL_COP, heel_off=0.62,
        toe_off_pitch_deg=40,
    ),
    "forced_lander": Profile(
        "forced_lander", cadence_spm=176, duty=0.62, overstride_m=0.10, strike="ball",
        ic_pitch_deg=6, pull_height_m=0.30, landing_ratio=(0.8, 1.1), forced_share=0.4,
        trunk_lean_deg=5, waist_bend_deg=2, heel_touch_bw=0.03, force_peak_at=0.45,
        cop=_BALL_COP, heel_off=0.5, toe_off_pitch_deg=30,
    ),
    "overstrider": Profile(
        "overstrider", cadence_spm=160, duty=0.74, overstride_m=0.36, strike="heel",
        ic_pitch_deg=-20, pull_height_m=0.22, landing_ratio=(0.85, 1.15), trunk_lean_deg=0,
        waist_bend_deg=4, force_peak_at=0.52, cop=_HEEL_COP, heel_off=0.62,
        toe_off_pitch_deg=40,
    ),
    "slow_cadence": Profile(
        "slow_cadence", cadence_spm=152, duty=0.62, overstride_m=0.18, strike="midfoot",
        ic_pitch_deg=-4, pull_height_m=0.26, landing_ratio=(0.85, 1.15), trunk_lean_deg=3,
        waist_bend_deg=3, force_peak_at=0.5, cop=_MID_COP, heel_off=0.55,
        toe_off_pitch_deg=35,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
