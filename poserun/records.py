"""The records poserun emits, as pydantic models (their JSON is the wire form).

The service builds records as plain dicts on the hot path; these models
define and document them and validate them in tests and in consumers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    session: str
    athlete: str
    foot: Literal["left", "right"]
    ic_ns: int = Field(description="initial contact on the athlete's time base (gateway clock), ns")
    emitted_ns: int | None = Field(None, description="wall clock when poserun emitted the record")


class LandingRecord(_Record):
    """Emitted as soon as an initial contact is certain (drives haptic cues)."""

    type: Literal["landing"]
    source: str
    step: int


class StanceRecord(_Record):
    """Emitted at toe-off with the stance's metrics; null where no source supports one."""

    type: Literal["stance"]
    to_ns: int
    support_time_s: Annotated[float, Field(gt=0)]
    flight_time_s: float | None = None
    cadence_spm: float | None = None
    peak_force_bw: float | None = None
    sources: list[str]


Record = Annotated[LandingRecord | StanceRecord, Field(discriminator="type")]
