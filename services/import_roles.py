"""Marker roles: which lab marker is each foot's heel, toe, metatarsals, ankle, knee, hip and shoulder.

Recognised from common naming conventions (Plug-in Gait ``LHEE LTOE LANK LKNE LASI/LPSI LSHO``,
the RBDS style ``R.Heel.Bottom R.MT1 R.MT5 R.Ankle.Lat``, OpenSim models ``r_calc r_toe r_5meta
r_knee``, Qualisys ``R_heel_B R_kneejoint_LA``), or set by a mapping file (TOML or JSON: per side,
role -> marker name, or a list of names whose mean is the role; ``""`` or ``null`` for none).

Before the markers are written, each role's marker is renamed ``<side>_<role>`` (``left_heel``,
``right_mt5``) and put first, and a role given by several markers (a hip from ASIS + PSIS) is
added as their mean under that name; the other markers follow under their own names. The processor
(``processors/keypoints.py``) takes a set that has all eight of ``left_hip ... right_shoulder`` as
they are, and searches toes in order, so it reads exactly the markers recognised or mapped here
whatever the lab called the others. (A role a mapping file sets to none is left out here, but the
processor may still take another marker for it by its own name rules.)
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poserun.services.importer import ImportError_

SIDES = ("left", "right")
ROLES = ("heel", "toe", "mt1", "mt5", "ankle", "knee", "hip", "shoulder")
#: the roles the processor's marker path needs on both sides (the toe is optional)
JOINT_ROLES = ("hip", "knee", "ankle", "shoulder")
FOOT_ROLES = ("heel", "toe", "mt1", "mt5")

# Per role, aliases of the word after the side, best first; a tuple names markers averaged into the
# role. The joints start with the processor's own aliases, in its order, so that where it would have
# found a marker the same one is chosen; an alias of four letters or more also matches a longer word
# (``KNEEJOINT``), and a name's words after the side are also tried joined (``MET_5`` -> ``MET5``).
ALIASES: dict[str, list[tuple[str, ...]]] = {
    "heel": [("HEE",), ("HEEL",), ("CAL",), ("CALC",), ("CALCN",)],
    "toe": [("TOE",), ("TOE1",), ("HALLUX",), ("FOOTINDEX",), ("TOETIP",), ("HX",)],
    "mt1": [("MT1",), ("P1MT",), ("1MT",), ("MET1",), ("META1",), ("1META",), ("MH1",), ("FMH",)],
    "mt5": [("MT5",), ("P5MT",), ("5MT",), ("MET5",), ("META5",), ("5META",), ("MH5",), ("VMH",)],
    "ankle": [("ANK",), ("ANKLE",), ("LM",), ("LMAL",), ("MAL",), ("AJC",), ("LATMAL",)],
    "knee": [("KNE",), ("KNEE",), ("LEK",), ("KJC",), ("FLE",), ("LFE",), ("LEPI",), ("EPI",), ("LFC",)],
    "hip": [("HIP",), ("GT",), ("TRO",), ("ASI", "PSI"), ("ASIS", "PSIS"), ("ASI",), ("ASIS",), ("HJC",)],
    "shoulder": [("SHO",), ("SHOULDER",), ("ACR",), ("ACROMION",), ("SH",), ("ACROMIUM",), ("SJC",)],
}
# words after the role word that make a marker a worse choice (the medial side, the top of the heel)
# words after the role word that make a marker a better choice: the bottom of the heel (2), the lateral side
# (1, the sagittal view), or a worse one: the medial side, the top of the heel
_BOTTOM = {"B", "BOTTOM", "BOT", "TIP"}
_LATERAL = {"LAT", "LATERAL", "LA", "L"}
_WORSE = {"MED", "MEDIAL", "M", "MA", "MEDI", "T", "TOP", "UP", "UPPER", "SUP"}
_SIDE_WORDS = {"L": "left", "LEFT": "left", "LT": "left", "R": "right", "RIGHT": "right", "RT": "right"}


def _words(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)  # LeftKnee -> Left Knee
    return [w for w in re.split(r"[_.\s:\-]+", spaced.upper()) if w]


def side_and_words(name: str) -> tuple[str, list[str]] | None:
    """The side a marker name spells (a side word first or last, or an L/R or LEFT/RIGHT prefix) and
    the words describing the marker; None for a name with no side."""
    words = _words(name)
    if not words:
        return None
    if words[0] in _SIDE_WORDS and len(words) > 1:
        return _SIDE_WORDS[words[0]], words[1:]
    if words[-1] in _SIDE_WORDS and len(words) > 1:
        return _SIDE_WORDS[words[-1]], words[:-1]
    for prefix in ("LEFT", "RIGHT", "L", "R"):
        if words[0].startswith(prefix) and len(words[0]) > len(prefix):
            return _SIDE_WORDS[prefix], [words[0][len(prefix):], *words[1:]]
    return None


def _rank(words: list[str], part: str) -> int | None:
    """How well a marker's words match one alias: 0 best, None for no match."""
    first, joined = words[0], "".join(words)
    if first == part or joined == part:
        quality = 1
    elif len(part) >= 4 and (first.startswith(part) or joined.startswith(part)):
        quality = 1
    else:
        return None
    rest = set(words[1:])
    return quality - (2 if rest & _BOTTOM else 1 if rest & _LATERAL else 0) + (3 if rest & _WORSE else 0)


@dataclass
class MarkerRoles:
    """Per side and role, the marker names that give it (one, or several to average)."""

    roles: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {s: {} for s in SIDES})
    unused: list[str] = field(default_factory=list)
    mapped: bool = False  # some role came from a mapping file

    def get(self, side: str, role: str) -> list[str]:
        return self.roles.get(side, {}).get(role, [])

    def missing(self) -> list[str]:
        """The joints the processor needs that no marker gives (``left.shoulder``)."""
        return [f"{s}.{r}" for s in SIDES for r in JOINT_ROLES if not self.get(s, r)]

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {s: {r: (v[0] if len(v) == 1 else v) for r, v in self.roles[s].items()}
                               for s in SIDES}
        out["unused"] = list(self.unused)
        out["from"] = "mapping file" if self.mapped else "names"
        return out

    def report(self) -> str:
        """Lines for stderr: which marker fills each role, what is missing, which markers no role uses."""
        lines = []
        for s in SIDES:
            cells = [f"{r}={'+'.join(self.roles[s][r])}" for r in ROLES if r in self.roles[s]]
            lines.append(f"  {s}: {', '.join(cells) or 'none'}")
        for joint in self.missing():
            side, role = joint.split(".")
            if role == "ankle" and self.get(side, "heel"):
                lines.append(f"  {joint}: none; the heel stands in for it (contacts, and knee flexion and "
                             "overstride measured at the heel)")
            elif role == "ankle":
                lines.append(f"  {joint}: none, nor a heel: no contacts from this marker set")
            else:
                lines.append(f"  {joint}: none (contacts are timed; the metrics that need it are null)")
        if self.unused:
            shown = ", ".join(self.unused[:40]) + (f" ... ({len(self.unused)})" if len(self.unused) > 40 else "")
            lines.append(f"  no role (kept in the recording, unused): {shown}")
        return "\n".join(lines)


def recognise(names: list[str]) -> MarkerRoles:
    """Roles from the markers' names (module docstring); each marker fills one role at most."""
    cands: dict[tuple[str, str], list[tuple[int, int, int, list[str]]]] = {}
    parsed = {n: side_and_words(n) for n in names}
    for role in ROLES:
        for alias_rank, alias in enumerate(ALIASES[role]):
            for side in SIDES:
                picks = []
                for part in alias:
                    best = None
                    for order, n in enumerate(names):
                        p = parsed[n]
                        if p is None or p[0] != side:
                            continue
                        q = _rank(p[1], part)
                        if q is not None and (best is None or q < best[0]):
                            best = (q, order, n)
                    if best is None:
                        break
                    picks.append(best)
                else:
                    quality = max(q for q, _, _ in picks)
                    cands.setdefault((side, role), []).append(
                        (alias_rank, quality, picks[0][1], [n for _, _, n in picks]))
    out = MarkerRoles()
    taken: set[str] = set()
    # the joints first (they must agree with the processor), then the foot; each marker once
    for role in ("hip", "knee", "ankle", "shoulder", "heel", "toe", "mt1", "mt5"):
        for side in SIDES:
            for _a, _q, _o, picked in sorted(cands.get((side, role), []), key=lambda c: (c[0], c[1], c[2])):
                if not taken & set(picked):
                    out.roles[side][role] = picked
                    taken |= set(picked)
                    break
    out.unused = [n for n in names if n not in taken]
    return out


def load_mapping(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """A mapping file's roles: ``{side: {role: [marker, ...]}}`` (an empty list: no marker)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8")) if p.suffix.lower() == ".toml" \
            else json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImportError_(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} ({exc})") from None
    if not isinstance(raw, dict):
        raise ImportError_(f"{path}: must map left/right to tables of role = marker")
    out: dict[str, dict[str, list[str]]] = {}
    for side, table in raw.items():
        if side not in SIDES:
            raise ImportError_(f"{path}: {side!r} is not a side: use left and right")
        if not isinstance(table, dict):
            raise ImportError_(f"{path}: {side} must be a table of role = marker")
        for role, value in table.items():
            if role not in ROLES:
                raise ImportError_(f"{path}: {side}.{role}: unknown role; roles are {', '.join(ROLES)}")
            values = [] if value in (None, "") else [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise ImportError_(f"{path}: {side}.{role} must be a marker name or a list of names")
            out.setdefault(side, {})[role] = list(values)
    return out


def resolve(names: list[str], mapping: str | Path | dict[str, dict[str, list[str]]] | None = None) -> MarkerRoles:
    """The roles of a marker set: the mapping file's, and for roles it does not name, the names'."""
    roles = recognise(names)
    if mapping is None:
        return roles
    where = str(mapping) if isinstance(mapping, str | Path) else "the mapping"
    table = load_mapping(mapping) if isinstance(mapping, str | Path) else mapping
    known = set(names)
    for side, entries in table.items():
        for role, markers in entries.items():
            absent = [m for m in markers if m not in known]
            if absent:
                raise ImportError_(f"{where}: {side}.{role} = {absent[0]!r} is not a marker of the file "
                                   f"(it has {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})")
            for s in SIDES:  # a marker the mapping gives a role leaves any role recognised for it
                for r in list(roles.roles[s]):
                    if (s, r) != (side, role) and set(roles.roles[s][r]) & set(markers):
                        del roles.roles[s][r]
            if markers:
                roles.roles[side][role] = list(markers)
            else:
                roles.roles[side].pop(role, None)
    used = {m for s in SIDES for v in roles.roles[s].values() for m in v}
    roles.unused = [n for n in names if n not in used]
    roles.mapped = True
    return roles


def apply_roles(names: list[str], xyz: np.ndarray, roles: MarkerRoles) -> tuple[list[str], np.ndarray]:
    """The markers renamed and ordered for the processor: first each role, named ``<side>_<role>`` (a
    role's single marker moved there, a role of several markers, or of one that already fills another
    role, as their mean, a gap where any has one), then every other marker in the file's order (the
    processor searches names in order, so a role comes before any other marker it could take for it)."""
    index = {n: i for i, n in enumerate(names)}
    moved: set[int] = set()
    head_names: list[str] = []
    head: list[np.ndarray] = []
    for side in SIDES:
        for role in ROLES:
            markers = roles.get(side, role)
            if not markers:
                continue
            head_names.append(f"{side}_{role}")
            if len(markers) == 1 and index[markers[0]] not in moved:
                moved.add(index[markers[0]])
                head.append(xyz[:, index[markers[0]], :])
            else:
                head.append(xyz[:, [index[m] for m in markers], :].mean(axis=1))
    rest = [i for i in range(len(names)) if i not in moved]
    clash = [names[i] for i in rest if names[i] in set(head_names)]
    if clash:
        raise ImportError_(f"marker {clash[0]!r} has a role's name but not that role: rename it in the file "
                           "or give it its role in --markers")
    if not head:
        return list(names), xyz
    out = np.concatenate([np.stack(head, axis=1), xyz[:, rest, :]], axis=1)
    return head_names + [names[i] for i in rest], out


def foot_indices(names: list[str], roles: MarkerRoles) -> dict[str, list[int]]:
    """Per side, the markers that tell a foot on the ground: heel, toe and metatarsals, else the ankle."""
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for side in SIDES:
        foot = [index[m] for r in FOOT_ROLES for m in roles.get(side, r)]
        ankle = [index[m] for m in roles.get(side, "ankle")]
        if foot or ankle:
            out[side] = sorted(set(foot or ankle))
    return out
