"""Typed decode errors: every rejected payload carries one counted reason."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a payload was rejected. The values are the counter labels."""

    NOT_A_FRAME = "not_a_frame"  # neither the binary magic nor a JSON object
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_STREAM = "unknown_stream"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    COUNT_MISMATCH = "count_mismatch"
    NON_FINITE = "non_finite"
    TIME_BACKWARDS = "time_backwards"
    TIME_JUMP = "time_jump"  # one frame far ahead of its source's clock: refused alone
    BAD_FIELD = "bad_field"
    BAD_JSON = "bad_json"
    BAD_META = "bad_meta"
    META_MISMATCH = "meta_mismatch"
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_ATHLETE = "unknown_athlete"
    STREAM_MISMATCH = "stream_mismatch"  # frame kind differs from the topic's source
    NO_META = "no_meta"  # data before the source's retained meta
    TOO_MANY_ATHLETES = "too_many_athletes"
    BAD_BUNDLE = "bad_bundle"  # a bundle whose entries do not add up (docs/protocol.md, bundles)
    BAD_COACH = "bad_coach"  # a coach action (poserun/wire/coach.py) that fails validation


class WireError(ValueError):
    """A payload or topic that poserun refuses, with a machine-readable reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameError(WireError):
    """A sensor frame that cannot be decoded or fails validation."""


class TopicError(WireError):
    """A topic outside the poserun namespace or with invalid parts."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNKNOWN_TOPIC, detail)


class CoachError(WireError):
    """A coach action that cannot be decoded or fails validation (poserun/wire/coach.py)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.BAD_COACH, detail)
