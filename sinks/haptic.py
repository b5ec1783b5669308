"""Haptic cues: buzz the athlete's band within the same stride (see docs/haptics.md).

Rules turn records into cues: a forced landing (on by default, from the
``landing`` record, so the cue does not wait for toe-off), heel contact,
overstride and cadence outside a band (from ``stance`` records). Each rule
has its thresholds and vibration pattern; a per-athlete rate limit and a
per-rule cool-down keep a cue meaningful. A metronome pulses at a target
cadence for cadence drills: from the config (its athletes, or every athlete
seen) and per athlete from the board (a ``coach`` record, action
``metronome``: on at that athlete's cadence, or off), each athlete on a beat
of its own. A coach's buzz (action ``buzz``) is one command, reason
``coach``: no technique rule's cool-down applies, only a cap of its own
(``coach.max_per_10s``). Commands go to the athlete's haptic topic
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
from dataclasses import dataclass, field
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


class CoachBuzz(BaseModel):
    """The coach's buzz from the board: always sent, up to ``max_per_10s`` per athlete (a stuck
    button or a script must not numb the athlete's wrist)."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field("double", pattern="^(" + "|".join(PATTERNS) + ")$",
                         description="when the board names none")
    intensity: float = Field(1.0, ge=0.0, le=1.0)
    duration_ms: int = Field(200, ge=10, le=2000)
    max_per_10s: int = Field(10, ge=1, le=100)


class HapticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forced_landing: ForcedLandingRule = Field(default_factory=ForcedLandingRule)
    heel_contact: HeelRule = Field(default_factory=HeelRule)
    overstride: OverstrideRule = Field(default_factory=OverstrideRule)
    cadence: CadenceRule = Field(default_factory=CadenceRule)
    metronome: Metronome = Field(default_factory=Metronome)
    coach: CoachBuzz = Field(default_factory=CoachBuzz)
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
        self._coach_recent: dict[str, deque[float]] = {}
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
        elif kind == "coach" and rec.get("action") == "buzz":
            out.append(self._coach(rec, now_s))
        return [cmd for cmd in out if cmd]

    def _coach(self, rec: Record, now_s: float) -> dict[str, Any]:
        c = self.config.coach
        recent = self._coach_recent.setdefault(rec["athlete"], deque())
        while recent and now_s - recent[0] > 10.0:
            recent.popleft()
        if len(recent) >= c.max_per_10s:
            self.suppressed += 1
            return {}
        recent.append(now_s)
        return {"v": 1, "athlete": rec["athlete"], "session": rec.get("session"), "reason": "coach",
                "pattern": rec.get("pattern") or c.pattern, "intensity": c.intensity, "duration_ms": c.duration_ms,
                "foot": None, "ic_ns": None, "t_ns": rec.get("t_ns")}

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


@dataclass(eq=False)
class Beat:
    """One athlete's metronome: its cadence, who set it, the beats sent, the task that sends them."""

    cadence_spm: float
    source: str  # "config" or "coach"
    beat: int = 0
    task: asyncio.Task[None] = field(init=False)


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
        self._beats: dict[str, Beat] = {}  # athlete -> its metronome
        self._coach_off: set[str] = set()  # athletes the coach stopped the configured metronome for
        self._started = False

    @property
    def failed(self) -> int:
        """Cues that never went out: too old when the broker returned, or pushed out of the outbox."""
        return self.conn.stats.dropped_old + self.conn.stats.dropped_full

    def connection_stats(self) -> dict[str, object]:
        return {"sent": self.sent, "suppressed": self.rules.suppressed, "failed": self.failed,
                "outbox": self.conn.outbox, **{f"mqtt_{k}": v for k, v in self.conn.stats.as_dict().items()}}

    def metronomes(self) -> dict[str, dict[str, Any]]:
        """Who has a metronome now: ``{athlete: {"cadence_spm", "source": "config"|"coach", "beat"}}``."""
        return {a: {"cadence_spm": b.cadence_spm, "source": b.source, "beat": b.beat} for a, b in self._beats.items()}

    async def start(self) -> None:
        await self.conn.start()
        self._started = True
        m = self.config.metronome
        if m.enabled:
            for athlete in m.athletes:  # (beats wait for the athlete's session: its first record)
                self._set_beat(athlete, m.cadence_spm, "config")

    async def write_batch(self, records: list[Record]) -> None:
        now = time.monotonic()
        m = self.config.metronome
        for rec in records:
            athlete = rec.get("athlete")
            if "session" in rec and isinstance(athlete, str):
                if athlete not in self._athletes and m.enabled and not m.athletes and athlete not in self._beats:
                    self._set_beat(athlete, m.cadence_spm, "config")
                self._athletes[athlete] = rec["session"]
            if rec.get("type") == "coach" and rec.get("action") == "metronome" and isinstance(athlete, str):
                self._coach_metronome(athlete, rec)
            for cmd in self.rules.decide(rec, now):
                await self._send(cmd)

    def _coach_metronome(self, athlete: str, rec: Record) -> None:
        """The board starts (at the athlete's cadence) or stops an athlete's metronome; stopped, the
        configured metronome stays off for that athlete until the coach starts one again."""
        cad = rec.get("cadence_spm")
        if rec.get("on") is True and isinstance(cad, int | float) and 60.0 <= cad <= 300.0:
            self._coach_off.discard(athlete)
            self._set_beat(athlete, float(cad), "coach")
        elif rec.get("on") is False:
            self._coach_off.add(athlete)
            beat = self._beats.pop(athlete, None)
            if beat is not None:
                beat.task.cancel()

    def _set_beat(self, athlete: str, cadence_spm: float, source: str) -> None:
        if not self._started or (source == "config" and athlete in self._coach_off):
            return
        old = self._beats.get(athlete)
        if old is not None:
            if old.cadence_spm == cadence_spm and old.source == source:
                return
            old.task.cancel()
        beat = Beat(cadence_spm, source)
        beat.task = asyncio.create_task(self._tick(athlete, beat), name=f"metronome-{athlete}")
        self._beats[athlete] = beat

    async def _send(self, cmd: dict[str, Any]) -> None:
        """Hand the command to the connection now: written at once (its acknowledgement is the
        connection's business, so a cue never waits behind the previous cue's round trip), or
        kept in the outbox while the broker is away."""
        cmd["sent_ns"] = time.time_ns()
        topic = topics.athlete_topic(cmd["session"], cmd["athlete"], "haptic")
        self.conn.publish(topic, json.dumps(cmd, separators=(",", ":")), qos=self.config.qos)
        self.sent += 1

    async def _tick(self, athlete: str, beat: Beat) -> None:
        """One athlete's beats, on a schedule of their own (no drift: each from the first)."""
        m = self.config.metronome
        period = 60.0 / beat.cadence_spm
        first = time.monotonic()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, first + n * period - time.monotonic()))
            session = self._athletes.get(athlete)
            if session is None:
                continue
            beat.beat += 1
            await self._send({"v": 1, "athlete": athlete, "session": session, "reason": "metronome",
                              "pattern": "tick", "intensity": m.intensity, "duration_ms": m.duration_ms,
                              "beat": beat.beat, "cadence_spm": beat.cadence_spm, "source": beat.source,
                              "ic_ns": None})

    async def close(self) -> None:
        beats, self._beats = list(self._beats.values()), {}
        self._started = False
        for b in beats:
            b.task.cancel()
        for b in beats:
            with contextlib.suppress(asyncio.CancelledError):
                await b.task
        await self.conn.close(timeout=2.0)  # the last cues' acknowledgements, briefly
