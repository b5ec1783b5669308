"""Coach actions, sans-I/O: the JSON the board publishes on an athlete's coach topic.

``poserun/v1/{session}/{athlete}/coach``, QoS 1, one message per athlete (docs/protocol.md)::

    {"v": 1, "action": "buzz"|"metronome"|"tag"|"rep"|"targets", "t_ns": <wall clock ns>, "by": "board", ...}

per action: buzz: optional ``pattern``; metronome: ``on`` and, when on, ``cadence_spm`` (60-300);
tag: ``label`` (1-120 characters); rep: ``on`` (start or stop a rep); targets: ``targets``
(:func:`check_targets`). :func:`parse_coach` turns bytes into a :class:`CoachCommand` or raises
:class:`CoachError` saying what is wrong; :func:`encode_coach` is its inverse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from poserun.wire.errors import CoachError

VERSION = 1
ACTIONS = ("buzz", "metronome", "tag", "rep", "targets")
PATTERNS = ("single", "double", "triple", "long", "tick")  # the band's vibration patterns (sinks/haptic.py)
CADENCE_SPM = (60.0, 300.0)  # a metronome's range: a slow walk to beyond a sprinter's cadence
SUPPORT_TIME_S = (0.05, 1.0)  # a support-time target's range: shorter than any measured stance to a walk's
MAX_LABEL = 120
MAX_BY = 64
MAX_PAYLOAD = 4096
TARGET_KEYS = ("cadence_spm", "support_time_s", "forced_share")
_FIELDS = {"buzz": {"pattern"}, "metronome": {"on", "cadence_spm"}, "tag": {"label"}, "rep": {"on"},
           "targets": {"targets"}}
_COMMON = {"v", "action", "t_ns", "by"}


@dataclass(frozen=True, slots=True)
class CoachCommand:
    """One coach action for one athlete (the athlete and session are in the topic)."""

    action: str
    t_ns: int
    by: str = "board"
    pattern: str | None = None
    on: bool | None = None
    cadence_spm: float | None = None
    label: str | None = None
    targets: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """The action's own fields that are set (what a coach record carries besides its keys)."""
        out: dict[str, Any] = {}
        for key in ("pattern", "on", "cadence_spm", "label", "targets"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CoachError(f"{what} must be a finite number, got {value!r:.40}")
    return float(value)


def check_cadence(value: Any, what: str = "cadence_spm") -> float:
    """A cadence in steps/min within :data:`CADENCE_SPM`."""
    v = _number(value, what)
    lo, hi = CADENCE_SPM
    if not lo <= v <= hi:
        raise CoachError(f"{what} {v:g} is outside {lo:g}-{hi:g} steps/min")
    return v


def check_targets(value: Any) -> dict[str, Any]:
    """A targets dict: ``cadence_spm`` [low, high] with low < high, both 60-300; ``support_time_s``
    a maximum in s (0.05-1); ``forced_share`` a maximum share of forced landings (0-1). Every key
    optional, ``None`` for no target; no other key. Returns it normalised (floats, a list band)."""
    if not isinstance(value, dict):
        raise CoachError("targets must be an object")
    extra = sorted(set(value) - set(TARGET_KEYS))
    if extra:
        raise CoachError(f"unknown target(s) {', '.join(map(str, extra))[:80]}: use {', '.join(TARGET_KEYS)}")
    out: dict[str, Any] = {}
    band = value.get("cadence_spm")
    if band is not None:
        if not isinstance(band, list | tuple) or len(band) != 2:
            raise CoachError("targets.cadence_spm must be [low, high] in steps/min")
        lo, hi = (check_cadence(b, "targets.cadence_spm") for b in band)
        if not lo < hi:
            raise CoachError(f"targets.cadence_spm: low {lo:g} must be below high {hi:g}")
        out["cadence_spm"] = [lo, hi]
    else:
        out["cadence_spm"] = None
    st = value.get("support_time_s")
    if st is not None:
        st = _number(st, "targets.support_time_s")
        if not SUPPORT_TIME_S[0] <= st <= SUPPORT_TIME_S[1]:
            raise CoachError(f"targets.support_time_s {st:g} is outside {SUPPORT_TIME_S[0]:g}-{SUPPORT_TIME_S[1]:g} s")
    out["support_time_s"] = st
    share = value.get("forced_share")
    if share is not None:
        share = _number(share, "targets.forced_share")
        if not 0.0 <= share <= 1.0:
            raise CoachError(f"targets.forced_share {share:g} is outside 0-1")
    out["forced_share"] = share
    return out


def check_label(value: Any) -> str:
    if not isinstance(value, str):
        raise CoachError("label must be a string")
    label = value.strip()
    if not label:
        raise CoachError("label is empty")
    if len(label) > MAX_LABEL:
        raise CoachError(f"label has {len(label)} characters: at most {MAX_LABEL}")
    if any(ord(c) < 32 for c in label):
        raise CoachError("label has control characters")
    return label


def command_from_dict(obj: Any) -> CoachCommand:
    """Validate a decoded coach message (the checks of :func:`parse_coach` after the JSON)."""
    if not isinstance(obj, dict):
        raise CoachError("a coach message is a JSON object")
    if obj.get("v") != VERSION:
        raise CoachError(f"unknown coach message version {obj.get('v')!r:.20}: expected {VERSION}")
    action = obj.get("action")
    if action not in ACTIONS:
        raise CoachError(f"unknown action {action!r:.40}: use one of {', '.join(ACTIONS)}")
    extra = sorted(set(obj) - _COMMON - _FIELDS[action])
    if extra:
        raise CoachError(f"{action}: unexpected field(s) {', '.join(map(str, extra))[:80]}")
    t_ns = obj.get("t_ns")
    if isinstance(t_ns, bool) or not isinstance(t_ns, int) or t_ns <= 0:
        raise CoachError("t_ns must be a positive integer (wall clock ns)")
    by = obj.get("by", "board")
    if not isinstance(by, str) or not 0 < len(by) <= MAX_BY:
        raise CoachError(f"by must be a string of 1-{MAX_BY} characters")
    kw: dict[str, Any] = {}
    if action == "buzz":
        pattern = obj.get("pattern")
        if pattern is not None and pattern not in PATTERNS:
            raise CoachError(f"unknown pattern {pattern!r:.40}: use one of {', '.join(PATTERNS)}")
        kw["pattern"] = pattern
    elif action in ("metronome", "rep"):
        on = obj.get("on")
        if not isinstance(on, bool):
            raise CoachError(f"{action}: on must be true or false")
        kw["on"] = on
        if action == "metronome":
            cad = obj.get("cadence_spm")
            if on and cad is None:
                raise CoachError("metronome on needs cadence_spm")
            kw["cadence_spm"] = None if cad is None else check_cadence(cad)
    elif action == "tag":
        kw["label"] = check_label(obj.get("label"))
    else:
        kw["targets"] = check_targets(obj.get("targets"))
    return CoachCommand(action=action, t_ns=t_ns, by=by, **kw)


def parse_coach(payload: bytes) -> CoachCommand:
    """Decode one coach message; :class:`CoachError` with a clear reason for anything else."""
    if len(payload) > MAX_PAYLOAD:
        raise CoachError(f"coach message of {len(payload)} bytes: at most {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CoachError(f"not JSON: {exc}"[:120]) from None
    return command_from_dict(obj)


def encode_coach(cmd: CoachCommand) -> bytes:
    """The wire form of a command (validated again, so what is sent is what parses)."""
    obj = {"v": VERSION, "action": cmd.action, "t_ns": cmd.t_ns, "by": cmd.by, **cmd.fields()}
    command_from_dict(obj)
    return json.dumps(obj, separators=(",", ":")).encode()
