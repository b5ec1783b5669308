"""Haptic cues: buzz the athlete's band within the same stride (see docs/haptics.md).

Rules turn records into cues: a forced landing (on by default, from the
``landing`` record, so the cue does not wait for toe-off), heel contact,
overstride and cadence outside a band (from ``stance`` records). Each rule
has its thresholds and vibration pattern; a per-athlete rate limit and a
per-rule cool-down keep a cue meaningful. A metronome mode pulses at a
target cadence for cadence drills. Commands go to the athlete's haptic topic
as JSON, QoS 1, on a connection with TCP_NODELAY that survives the broker
going away (services/mqtt_conn.py): cues made meanwhile wait in a bounded
outbox and go out when it returns, unless they are older than
``max_cue_age_s`` (a late buzz is a wrong one: dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.base import Record
from poserun.wire import topics

log = logging.getLogger(__name__)
PATTERNS = ("single", "double", "triple", "long", "tick")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    pattern: str = Field("double", pattern="^(" + "|".join(PATTERNS) + ")$")
    intensity: float = Field(0.8, ge=0.0, le=1.0)
    duration_ms: int = Field(120, ge=10, le=2000)
    cooldown_s: float = Field(2.0, ge=0.0, le=600.0)


class ForcedLandingRule(Rule):
    min_severity: float = Field(1.3, ge=1.0, description="cue only at or above this foot/body velocity ratio")


class HeelRule(Rule):
    enabled: bool = False
    pattern: str = "single"


class OverstrideRule(Rule):
    enabled: bool = False
    pattern: str = "long"
    max_ratio: float = Field(0.25, gt=0.0, description="overstride / leg length above which to cue")


class CadenceRule(Rule):
    enabled: bool = False
    pattern: str = "triple"
    low_spm: float = Field(170.0, gt=0)
    high_spm: float = Field(195.0, gt=0)


class Metronome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    cadence_spm: float = Field(180.0, ge=60.0, le=300.0)
    athletes: list[str] = Field(default_factory=list, description="empty: every athlete seen")
    intensity: float = Field(0.5, ge=0.0, le=1.0)
    duration_ms: int = Field(40, ge=10, le=500)


class HapticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forced_landing: ForcedLandingRule = Field(default_factory=ForcedLandingRule)
    heel_contact: HeelRule = Field(default_factory=HeelRule)
    overstride: OverstrideRule = Field(default_factory=OverstrideRule)
    cadence: CadenceRule = Field(default_factory=CadenceRule)
    metronome: Metronome = Field(default_factory=Metronome)
    max_cues_per_10s: int = Field(4, ge=1, le=100, description="per-athlete rate limit")
    qos: int = Field(1, ge=0, le=2)
    max_cue_age_s: float = Field(0.5, gt=0.0, le=60.0, description="a cue that waited longer for the broker is "
                                 "dropped (counted): within the stride it is about")
    outbox: int = Field(1000, ge=1, le=1_000_000, description="cues kept while the broker is away")


class HapticRules:
    """Pure decision logic: records in, commands out (tested without a broker)."""

    def __init__(self, config: HapticConfig) -> None:
        self.config = config
        self._last: dict[tuple[str, str], float] = {}
        self._recent: dict[str, deque[float]] = {}
        self.suppressed = 0

    def decide(self, rec: Record, now_s: float) -> list[dict[str, Any]]:
        c = self.config
        out: list[dict[str, Any]] = []
        kind = rec.get("type")
        if kind == "landing":
            sev = rec.get("forced_landing_severity")
            if c.forced_landing.enabled and rec.get("forced_landing") and (sev or 0) >= c.forced_landing.min_severity:
                out.append(self._command(rec, "forced_landing", c.forced_landing, now_s, severity=sev))
        elif kind == "stance":
            if c.heel_contact.enabled and rec.get("heel_contact") is True:
                out.append(self._command(rec, "heel_contact", c.heel_contact, now_s))
            ratio = rec.get("overstride_ratio")
            if c.overstride.enabled and isinstance(ratio, float) and ratio > c.overstride.max_ratio:
                out.append(self._command(rec, "overstride", c.overstride, now_s, overstride_ratio=ratio))
            cad = rec.get("cadence_spm")
            if c.cadence.enabled and isinstance(cad, float) and not c.cadence.low_spm <= cad <= c.cadence.high_spm:
                out.append(self._command(rec, "cadence", c.cadence, now_s, cadence_spm=cad))
        return [cmd for cmd in out if cmd]

    def _command(self, rec: Record, reason: str, rule: Rule, now_s: float, **extra: Any) -> dict[str, Any]:
        athlete = rec["athlete"]
        last = self._last.get((athlete, reason))
        if last is not None and now_s - last < rule.cooldown_s:
            self.suppressed += 1
            return {}
        recent = self._recent.setdefault(athlete, deque())
        while recent and now_s - recent[0] > 10.0:
            recent.popleft()
        if len(recent) >= self.config.max_cues_per_10s:
            self.suppressed += 1
            return {}
        recent.append(now_s)
        self._last[(athlete, reason)] = now_s
        return {"v": 1, "athlete": athlete, "session": rec.get("session"), "reason": reason,
                "pattern": rule.pattern, "intensity": rule.intensity, "duration_ms": rule.duration_ms,
                "foot": rec.get("foot"), "ic_ns": rec.get("ic_ns"), **extra}


class HapticSink:
    """Publishes haptic commands; its own queue keeps it clear of slower sinks."""

    name = "haptic"
    #: its state is per athlete: with ``poserun process --workers N`` each worker runs its own, for its
    #: athletes, so a cue never crosses a process (services/fusion_pool.py)
    per_athlete = True

    def __init__(self, context: dict[str, Any] | None = None, **options: Any) -> None:
        ctx = context or {}
        self.config = HapticConfig.model_validate(options)
        self.broker: BrokerSettings = ctx.get("broker") or BrokerSettings()
        self.rules = HapticRules(self.config)
        self.sent = 0
        self.conn = MqttConnection(self.broker, "haptic", outbox=self.config.outbox,
                                   max_age_s=self.config.max_cue_age_s)
        self._athletes: dict[str, str] = {}  # athlete -> session, for the metronome
        self._metronome: asyncio.Task[None] | None = None

    @property
    def failed(self) -> int:
        """Cues that never went out: too old when the broker returned, or pushed out of the outbox."""
        return self.conn.stats.dropped_old + self.conn.stats.dropped_full

    def connection_stats(self) -> dict[str, object]:
        return {"sent": self.sent, "suppressed": self.rules.suppressed, "failed": self.failed,
                "outbox": self.conn.outbox, **{f"mqtt_{k}": v for k, v in self.conn.stats.as_dict().items()}}

    async def start(self) -> None:
        await self.conn.start()
        if self.config.metronome.enabled:
            self._metronome = asyncio.create_task(self._tick())

    async def write_batch(self, records: list[Record]) -> None:
        now = time.monotonic()
        for rec in records:
            if "session" in rec and "athlete" in rec:
                self._athletes[rec["athlete"]] = rec["session"]
            for cmd in self.rules.decide(rec, now):
                await self._send(cmd)

    async def _send(self, cmd: dict[str, Any]) -> None:
        """Hand the command to the connection now: written at once (its acknowledgement is the
        connection's business, so a cue never waits behind the previous cue's round trip), or
        kept in the outbox while the broker is away."""
        cmd["sent_ns"] = time.time_ns()
        topic = topics.athlete_topic(cmd["session"], cmd["athlete"], "haptic")
        self.conn.publish(topic, json.dumps(cmd, separators=(",", ":")), qos=self.config.qos)
        self.sent += 1

    async def _tick(self) -> None:
        m = self.config.metronome
        period = 60.0 / m.cadence_spm
        next_at = time.monotonic()
        beat = 0
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            beat += 1
            targets = m.athletes or list(self._athletes)
            for athlete in targets:
                session = self._athletes.get(athlete)
                if session is None:
                    continue
                await self._send({"v": 1, "athlete": athlete, "session": session, "reason": "metronome",
                                  "pattern": "tick", "intensity": m.intensity, "duration_ms": m.duration_ms,
                                  "beat": beat, "cadence_spm": m.cadence_spm, "ic_ns": None})

    async def close(self) -> None:
        if self._metronome is not None:
            self._metronome.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._metronome
        await self.conn.close(timeout=2.0)  # the last cues' acknowledgements, briefly
