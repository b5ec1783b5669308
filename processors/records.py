"""The records the processor emits: the one source of truth for their keys and types.

Records travel as plain dicts (JSON on the wire); these ``TypedDict``s say which keys a
record has and what each holds. ``poserun.records`` derives the pydantic models and the
JSON schema from them, and the tests hold every emitted record to them (no key missing,
none extra). A required key is always present, ``None`` where no source supports the
metric; a ``NotRequired`` key appears only when its data exist. ``session`` and
``emitted_ns`` are added by the service, not by the processor.
"""

from typing import Literal, NotRequired, TypedDict

Foot = Literal["left", "right"]
StrikeZone = Literal["heel", "midfoot", "ball", "toes"]


class PressureMap(TypedDict):
    """One stance's pressure map: each cell's peak (body weights), where the cells sit
    (fractions of the insole's length and width) and each cell's region (from the device meta)."""

    peak_bw: list[float]
    along: list[float]
    across: list[float]
    region: NotRequired[list[StrikeZone]]  # heel, midfoot, ball or toes per cell (absent in older recordings)


class _Common(TypedDict):
    athlete: str
    foot: Foot
    ic_ns: int  # initial contact on the athlete's time base (the timing source's clock), ns
    session: NotRequired[str]  # added by the service
    emitted_ns: NotRequired[int]  # the service's clock when it emitted the record
    id: NotRequired[str]  # added by the service: record_id(), the same for the same contact on every replay


class LandingRecord(_Common):
    """Emitted as soon as an initial contact is certain; carries the forced-landing decision
    (the haptic cue's trigger)."""

    type: Literal["landing"]
    step: int
    source: str  # the source that timed the IC
    foot_landing_velocity_mps: float | None
    foot_velocity_source: str | None
    body_fall_velocity_mps: float | None
    body_fall_source: str | None
    forced_landing: bool | None
    forced_landing_severity: float | None


class StanceRecord(_Common):
    """Emitted at toe-off with every metric of the stance; ``None`` where no source supports one."""

    type: Literal["stance"]
    to_ns: int
    support_time_s: float
    # timing from events
    flight_time_s: float | None
    step_time_s: float | None
    stride_time_s: float | None
    duty_factor: float | None
    cadence_spm: float | None
    # insole
    strike_zone: StrikeZone | None
    cop_ic_fraction: float | None
    heel_contact: bool | None
    heel_peak_fraction: float | None
    ball_load_fraction: float | None
    release_time_s: float | None
    release_ratio: float | None
    toe_pushoff_fraction: float | None
    loading_rate_bw_per_s: float | None
    peak_force_bw: float | None
    pressure_map: NotRequired[PressureMap]
    # foot or shank IMU
    impact_peak_g: float | None
    # camera
    overstride_m: float | None
    overstride_ratio: float | None
    knee_flexion_ic_deg: float | None
    knee_flexion_min_deg: float | None
    fall_angle_deg: float | None
    waist_bend_deg: float | None
    pull_height_m: float | None
    pull_under_hip_m: float | None
    vertical_oscillation_m: float | None
    pose_ic: NotRequired[dict[str, list[float]]]  # joints at IC relative to the hips' midpoint, m
    # the landing decision, made at IC
    foot_landing_velocity_mps: float | None
    body_fall_velocity_mps: float | None
    body_fall_source: str | None
    forced_landing: bool | None
    forced_landing_severity: float | None
    # rolling statistics and the score
    support_symmetry_pct: float | None
    symmetry_pct: dict[str, float]
    pose_score: float | None
    pose_score_breakdown: dict[str, float]
    event_source: str
    imu_placement: NotRequired[str]  # pelvis, sacrum or trunk, when such a sensor timed the stance
    sources: list[str]


CoachAction = Literal["buzz", "metronome", "tag", "rep", "targets"]


class Targets(TypedDict):
    """An athlete's targets (``None``: no target): cadence band [low, high] in steps/min, the
    longest support time in s, the largest share of forced landings (0-1)."""

    cadence_spm: list[float] | None
    support_time_s: float | None
    forced_share: float | None


class CoachRecord(TypedDict):
    """A coach's action from the board (poserun/wire/coach.py), emitted by the service in order
    with the athlete's other records. ``t_ns`` is the coach's click on the wall clock; ``rep`` is
    the number the service gives a rep that starts (1, 2, ... per athlete and session) and repeats
    on the stop that ends it."""

    type: Literal["coach"]
    athlete: str
    action: CoachAction
    t_ns: int
    by: str
    session: NotRequired[str]  # added by the service
    emitted_ns: NotRequired[int]
    id: NotRequired[str]
    label: NotRequired[str]
    on: NotRequired[bool]
    cadence_spm: NotRequired[float]
    pattern: NotRequired[str]
    targets: NotRequired[Targets]
    rep: NotRequired[int]


Record = LandingRecord | StanceRecord | CoachRecord

#: The keys each kind of record may carry, and those it always carries.
KEYS: dict[str, frozenset[str]] = {
    "landing": LandingRecord.__required_keys__ | LandingRecord.__optional_keys__,
    "stance": StanceRecord.__required_keys__ | StanceRecord.__optional_keys__,
    "coach": CoachRecord.__required_keys__ | CoachRecord.__optional_keys__}
REQUIRED: dict[str, frozenset[str]] = {"landing": LandingRecord.__required_keys__,
                                       "stance": StanceRecord.__required_keys__,
                                       "coach": CoachRecord.__required_keys__}
#: The keys the service adds to every record it emits (required on the wire).
SERVICE_KEYS = frozenset({"session", "emitted_ns", "id"})


def record_id(session: str, athlete: str, kind: str, foot: str, ic_ns: int, epoch: int = 0) -> str:
    """A record's identity: one landing and one stance per contact (a foot's IC on the athlete's
    time base, in its clock epoch: a gateway that rebooted starts its clock again), so a record
    emitted again (a replay, a resend after a fault) has the same id and a store keeps it once."""
    return f"{session}/{athlete}/{foot}/{ic_ns}/{kind}" + (f"@{epoch}" if epoch else "")


def coach_record_id(session: str, athlete: str, action: str, t_ns: int) -> str:
    """A coach record's identity: one per athlete, action and click (a QoS 1 duplicate is the same)."""
    return f"{session}/{athlete}/coach/{t_ns}/{action}"
