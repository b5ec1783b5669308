"""Retained device meta, gateway status and truth messages (JSON, validated by pydantic).

A gateway publishes one meta message per source, retained, before its first
frame. The processor takes sample rates, axes, cell maps and camera scale
from here and never assumes them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from poserun.wire.errors import Reason, WireError

Direction = Literal["forward", "backward", "left", "right", "up", "down"]
Region = Literal["heel", "midfoot", "ball", "toes"]
Side = Literal["left", "right"]

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
MEDIAPIPE33 = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
_AXIS_PAIRS = {"forward": "x", "backward": "x", "left": "y", "right": "y", "up": "z", "down": "z"}


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    source: str
    rate_hz: Annotated[float, Field(gt=0, le=20_000)]
    device: str | None = Field(None, max_length=200, description="make/model/serial, free text")


class ImuMeta(_Meta):
    """An inertial sensor. Channels are accelerometer x,y,z then gyroscope x,y,z (if any)."""

    kind: Literal["imu"] = "imu"
    placement: Literal["foot", "shank", "pelvis", "sacrum", "trunk"]
    side: Side | None = None
    channels: list[str] = Field(default_factory=lambda: ["ax", "ay", "az", "gx", "gy", "gz"])
    accel_unit: Literal["m/s^2", "g"] = "m/s^2"
    gyro_unit: Literal["rad/s", "deg/s"] = "rad/s"
    axes: dict[Literal["x", "y", "z"], Direction] = Field(
        default_factory=lambda: {"x": "forward", "y": "left", "z": "up"},
        description="the body direction each sensor axis points to when standing still",
    )

    @model_validator(mode="after")
    def _check(self) -> ImuMeta:
        if len(self.channels) not in (3, 6, 9):
            raise ValueError("an IMU has 3 (accel), 6 (+gyro) or 9 (+magnetometer) channels")
        if sorted(self.axes) != ["x", "y", "z"]:
            raise ValueError("axes must name x, y and z")
        if sorted(_AXIS_PAIRS[d] for d in self.axes.values()) != ["x", "y", "z"]:
            raise ValueError("axes must point along three different body axes")
        return self


class InsoleMeta(_Meta):
    """A pressure insole: one value per cell, with the cell map."""

    kind: Literal["insole"] = "insole"
    side: Side
    unit: Literal["N", "kPa"] = "N"
    foot_length_m: Annotated[float, Field(gt=0.1, lt=0.45)] = 0.27
    cell_regions: list[Region]
    cell_positions: list[tuple[float, float]] = Field(
        description="per cell (along, across): along = 0 heel to 1 toe, across = -0.5 medial to 0.5 lateral"
    )
    cell_area_m2: list[float] | None = None

    @property
    def channels(self) -> list[str]:
        return [f"c{i}" for i in range(len(self.cell_regions))]

    @model_validator(mode="after")
    def _check(self) -> InsoleMeta:
        n = len(self.cell_regions)
        if not 1 <= n <= 256:
            raise ValueError("an insole has 1-256 cells")
        if len(self.cell_positions) != n:
            raise ValueError(f"cell_positions has {len(self.cell_positions)} entries for {n} cells")
        if self.cell_area_m2 is not None and len(self.cell_area_m2) != n:
            raise ValueError("cell_area_m2 needs one value per cell")
        if self.unit == "kPa" and self.cell_area_m2 is None:
            raise ValueError("kPa insoles need cell_area_m2 to turn pressure into force")
        return self


class CameraMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scale_m_per_px: Annotated[float, Field(gt=0)] = 1.0
    origin_px: tuple[float, float] = (0.0, 0.0)
    y_axis: Literal["down", "up"] = "down"
    view: Literal["sagittal_right", "sagittal_left", "frontal", "3d"] = "sagittal_right"
    moving: bool = Field(False, description="true when the camera frame follows the athlete (tracking or treadmill)")
    image_px: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = Field(
        None, description="the image's width and height in pixels (a camera)")
    up_axis: Literal["+x", "-x", "+y", "-y", "+z", "-z"] | None = Field(
        None, description="axis pointing up (3-D markers); for images y_axis decides")
    forward_axis: Literal["+x", "-x", "+y", "-y", "+z", "-z"] | None = Field(
        None, description="axis of the running direction (3-D markers)")


class KeypointMeta(_Meta):
    """Body keypoints or lab markers: per keypoint the values named by ``dims``."""

    kind: Literal["keypoints"] = "keypoints"
    schema_: Literal["coco17", "mediapipe33", "markers"] = Field(alias="schema")
    names: list[str] = Field(default_factory=list)
    dims: Literal["xyc", "xyzc", "xy", "xyz"] = "xyc"
    unit: Literal["px", "m", "mm"] = "px"
    camera: CameraMeta = Field(default_factory=CameraMeta)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def channels(self) -> list[str]:
        return [f"{n}.{d}" for n in self.names for d in self.dims]

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("names"):
            schema = data.get("schema", data.get("schema_"))
            if schema == "coco17":
                data = {**data, "names": list(COCO17)}
            elif schema == "mediapipe33":
                data = {**data, "names": list(MEDIAPIPE33)}
        return data

    @model_validator(mode="after")
    def _check(self) -> KeypointMeta:
        if not self.names:
            raise ValueError("a marker set needs its names")
        if len(set(self.names)) != len(self.names):
            raise ValueError("keypoint names must be unique")
        expected = {"coco17": COCO17, "mediapipe33": MEDIAPIPE33}.get(self.schema_)
        if expected is not None and tuple(self.names) != expected:
            raise ValueError(f"{self.schema_} names must be the standard {len(expected)} in order")
        return self


class ForceMeta(_Meta):
    """A force plate or instrumented treadmill belt under one foot (lab truth)."""

    kind: Literal["force"] = "force"
    side: Side | None = None
    channels: list[str] = Field(default_factory=lambda: ["fz"])
    unit: Literal["N"] = "N"


DeviceMeta = Annotated[
    ImuMeta | InsoleMeta | KeypointMeta | ForceMeta, Field(discriminator="kind")
]
_META = TypeAdapter(DeviceMeta)


def channel_count(meta: ImuMeta | InsoleMeta | KeypointMeta | ForceMeta) -> int:
    return len(meta.channels)


class GatewayStatus(BaseModel):
    """Retained on the status topic; the broker publishes ``offline`` as the last will."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    gateway: str
    state: Literal["online", "offline"]
    athletes: list[str] = Field(default_factory=list, max_length=1000,
                                description="the athletes it serves (a gateway serves a team, not a city)")
    boot_ns: int | None = Field(None, description="wall clock (ns) at start; a new value means counters restarted")
    wall_ns_at_clock_zero: int | None = Field(
        None, description="wall time (ns since 1970) when the gateway clock read 0, if the gateway knows it")
    clock_rate: float = Field(1.0, gt=0, description="gateway clock ns per wall-clock ns (a replay at 10x: 10)")


class TruthEvent(BaseModel):
    """Ground truth for one stance (simulator, or force plate in a lab import)."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    foot: Side
    step: int
    ic_ns: int
    to_ns: int
    foot_landing_velocity_mps: float | None = None
    body_fall_velocity_mps: float | None = None
    forced_landing: bool | None = None
    overstride_m: float | None = None
    strike_zone: Region | None = None
    source: str = "sim"


def parse_meta(payload: bytes) -> ImuMeta | InsoleMeta | KeypointMeta | ForceMeta:
    """Validate a meta payload; :class:`WireError` (``bad_meta``) names the field."""
    try:
        return _META.validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        raise WireError(Reason.BAD_META, f"{where}: {first.get('msg')}") from None


def dump(model: BaseModel) -> bytes:
    """Compact JSON of a meta/status/truth model."""
    return json.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=True),
                      separators=(",", ":")).encode()
