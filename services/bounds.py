"""What keeps the fusion service's tables bounded and its cheap checks cheap.

* :class:`AthleteTable`: who may hold per-source state, in three least-recently-seen lanes:
  configured athletes, unconfigured ones that proved themselves (valid meta or a taken frame)
  and strays (frames without meta). Each lane has a cap; entries idle for ``idle_ns`` are
  evicted by :meth:`AthleteTable.sweep` a few at a time (amortised, never a full scan); a full
  lane evicts its least recently seen entry if it is idle (strays: at once), else the newcomer
  is refused. Configured athletes have a lane of their own: strangers never displace them.
* :class:`FrameLimits`: the largest frame a source's meta allows, binary and JSON, checked
  before decoding (docs/reliability.md says how it is derived).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from poserun.wire.errors import FrameError, Reason

Athlete = tuple[str, str]  # session, athlete

#: The longest frame a gateway may send, in seconds of samples (the simulator's frame_ms is at most 1000).
MAX_FRAME_S = 1.0
#: Bytes per sample value and per timestamp in the JSON form: a float32 printed as a double with
#: sign, 17 digits, exponent and comma ("-1.1754943508222875e-38,") is 24 characters.
JSON_VALUE_BYTES = 24
JSON_ROW_BYTES = 4  # "[", "]" and ","
JSON_HEAD_BYTES = 256  # the keys and header fields
#: Meta and gateway status are small: a 256-cell insole's meta is about 10 KB, a status listing
#: 1000 athletes (its cap) of 64-character ids about 67 KB.
MAX_META_BYTES = 64 * 1024
MAX_STATUS_BYTES = 128 * 1024


@dataclass(slots=True, frozen=True)
class FrameLimits:
    """The largest frame of one source: ``MAX_FRAME_S`` of samples at its meta's rate (+1), each
    with a timestamp, in the binary form (32-byte header, 8 + 4 x channels per sample) and in the
    JSON form (``JSON_VALUE_BYTES`` per value and timestamp); never above the processor's cap."""

    binary: int
    json: int

    @classmethod
    def of(cls, rate_hz: float, channels: int, cap: int) -> FrameLimits:
        samples = math.ceil(rate_hz * MAX_FRAME_S) + 1
        binary = 32 + samples * (8 + 4 * channels)
        json = JSON_HEAD_BYTES + samples * (JSON_ROW_BYTES + JSON_VALUE_BYTES * (channels + 1))
        return cls(min(binary, cap), min(json, cap))

    def check(self, payload: bytes) -> None:
        """``FrameError(oversized)`` for a frame larger than its form allows (before decoding)."""
        size = len(payload)
        if size <= self.binary:
            return
        if size > self.json or payload[:2] == b"PR":
            form = "binary" if payload[:2] == b"PR" else "JSON"
            limit = self.binary if form == "binary" else self.json
            raise FrameError(Reason.OVERSIZED, f"{size} bytes > {limit}, the largest {form} frame its meta allows")


@dataclass(slots=True, eq=False)
class Entry:
    """One athlete with per-source state: when it was last heard, and its sources."""

    key: Athlete
    configured: bool
    proven: bool = False
    seen_ns: int = 0
    sources: set[str] = field(default_factory=set)


class AthleteTable:
    """The athletes that may hold state, bounded per lane, idle ones evicted (module docstring)."""

    SWEEP = 64  # idle entries evicted at most per lane and sweep

    def __init__(self, idle_ns: int, max_configured: int, max_unknown: int,
                 evict: Callable[[Entry], None]) -> None:
        self.idle_ns = idle_ns
        self.caps = {"configured": max_configured, "unknown": max_unknown, "stray": max_unknown}
        self.lanes: dict[str, OrderedDict[Athlete, Entry]] = {n: OrderedDict() for n in self.caps}
        self.evicted: Counter[str] = Counter()  # by lane, idle or pushed out
        self._evict = evict

    def __len__(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())

    def _lane(self, e: Entry) -> str:
        return "configured" if e.configured else "unknown" if e.proven else "stray"

    def get(self, key: Athlete) -> Entry | None:
        for lane in self.lanes.values():
            e = lane.get(key)
            if e is not None:
                return e
        return None

    def touch(self, e: Entry, now_ns: int) -> None:
        e.seen_ns = now_ns
        lane = self.lanes[self._lane(e)]
        if e.key in lane:
            lane.move_to_end(e.key)

    def admit(self, key: Athlete, configured: bool, now_ns: int) -> Entry | None:
        """The athlete's entry, made if there is room (``None``: its lane is full of active ones)."""
        e = self.get(key)
        if e is not None:
            if now_ns - e.seen_ns > 1_000_000_000:
                self.touch(e, now_ns)
            return e
        e = Entry(key, configured, seen_ns=now_ns)
        name = self._lane(e)
        if not self._room(name, now_ns):
            return None
        self.lanes[name][key] = e
        return e

    def prove(self, e: Entry, now_ns: int) -> bool:
        """A stray sent valid meta or a valid frame: it moves to the unknown lane if there is room
        (``False``: none, it stays a stray and may hold no meta or state)."""
        if e.proven or e.configured:
            return True
        if not self._room("unknown", now_ns):
            return False
        del self.lanes["stray"][e.key]
        e.proven = True
        e.seen_ns = now_ns
        self.lanes["unknown"][e.key] = e
        return True

    def _room(self, name: str, now_ns: int) -> bool:
        lane = self.lanes[name]
        if len(lane) < self.caps[name]:
            return True
        oldest = next(iter(lane.values()))
        if name == "stray" or now_ns - oldest.seen_ns > self.idle_ns:
            self._drop(name, oldest)
            return True
        return False

    def _drop(self, name: str, e: Entry) -> None:
        del self.lanes[name][e.key]
        self.evicted[name] += 1
        self._evict(e)

    def sweep(self, now_ns: int) -> None:
        """Evict up to ``SWEEP`` idle entries per lane, the least recently seen first."""
        for name, lane in self.lanes.items():
            for _ in range(self.SWEEP):
                if not lane:
                    break
                oldest = next(iter(lane.values()))
                if now_ns - oldest.seen_ns <= self.idle_ns:
                    break
                self._drop(name, oldest)

    def report(self) -> dict[str, object]:
        return {"size": {n: len(lane) for n, lane in self.lanes.items()}, "cap": dict(self.caps),
                "evicted": dict(self.evicted), "idle_s": self.idle_ns / 1e9}
