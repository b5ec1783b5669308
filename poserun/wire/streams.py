"""Stream kinds and sources: what a frame carries and where it was worn."""

from __future__ import annotations

from enum import IntEnum


class StreamKind(IntEnum):
    """The kind byte of a frame header. Values are part of the wire protocol."""

    IMU = 1
    INSOLE = 2
    KEYPOINTS = 3
    FORCE = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> StreamKind:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown stream kind {label!r}") from None


#: Every source an athlete may have, the topic segment naming it, and its kind.
SOURCES: dict[str, StreamKind] = {
    "imu_foot_left": StreamKind.IMU,
    "imu_foot_right": StreamKind.IMU,
    "imu_shank_left": StreamKind.IMU,
    "imu_shank_right": StreamKind.IMU,
    "imu_pelvis": StreamKind.IMU,
    "insole_left": StreamKind.INSOLE,
    "insole_right": StreamKind.INSOLE,
    "keypoints": StreamKind.KEYPOINTS,
    "force_left": StreamKind.FORCE,
    "force_right": StreamKind.FORCE,
}


def source_kind(source: str) -> StreamKind:
    """The stream kind a source must carry; ``ValueError`` for an unknown source."""
    try:
        return SOURCES[source]
    except KeyError:
        raise ValueError(
            f"unknown source {source!r}; expected one of {', '.join(SOURCES)}"
        ) from None


def source_side(source: str) -> str | None:
    """``left``/``right`` for sided sources, ``None`` otherwise."""
    if source.endswith("_left"):
        return "left"
    if source.endswith("_right"):
        return "right"
    return None
