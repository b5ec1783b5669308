"""Delimited text exports of motion-capture systems (tab, comma or semicolon) into ``keypoints``.

The header line has a ``Time`` column (s; ms when the header says so, ``Time (ms)``, ``time_ms``, or
when a step between samples is over 0.5, which as seconds would be under 2 Hz) or a ``Frame`` column
(needs ``--rate``; frame 1, or 0 when the count starts there, at 0 s), and three columns per marker:
``LHEEX LHEEY LHEEZ``, ``LHEE_x``, ``LHEE.X`` or ``LHEE X``, optionally with a unit (``LHEE X (mm)``).
A Vicon-style two-line header (marker names on the line above ``Frame ... X Y Z X Y Z``) is read
too. Preamble lines before the header may state ``Units<delimiter>mm``; a line of units right under
the header (``s mm mm mm``) is read as such. Units: mm, cm or m, from the file or ``--unit`` (mm
when neither says); a height range implausible for that unit is warned about. Empty cells, ``NaN``
and a marker at exactly 0 0 0 (how QTM, Vicon and C3D write a gap) are gaps. With ``;`` or tab as
the delimiter, a decimal comma is read as a point. Other columns are ignored and listed. The
markers then take the shared path of every marker import (:func:`importer.marker_messages`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poserun.recording import RecordedMessage
from poserun.services.import_roles import resolve
from poserun.services.importer import ImportError_, height_warning, marker_messages

UNITS = {"mm": 1000.0, "cm": 100.0, "m": 1.0}  # per metre (a division, as the QTM import does)
_TIME = re.compile(r"^(time|t|timestamp)( ?[(\[]?(s|sec|secs|seconds|ms|msec)[)\]]?)?$")
_FRAME = re.compile(r"^(frame|frames|frame ?#|frame ?(no|nr|number)\.?|frame ?index)$")
_UNIT_SUFFIX = re.compile(r"\s*[(\[]\s*(mm|cm|m)\s*[)\]]\s*$", re.IGNORECASE)
_AXIS = re.compile(r"^(?P<stem>.*?)(?P<sep>[\s_.:\-]?)(?P<axis>[XYZxyz])$")
_GAP = {"", "nan", "-nan", "na", "n/a", "-"}


@dataclass
class TextMarkers:
    """A delimited marker export read: times, xyz in m (NaN gaps), names, rate, unit and notes."""

    times_ns: np.ndarray
    xyz: np.ndarray
    names: list[str]
    rate_hz: float
    unit: str
    notes: list[str] = field(default_factory=list)


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in ("\t", ";", ",")}
    return max(counts, key=lambda d: counts[d])  # ties: tab, then semicolon


def _norm(cell: str) -> str:
    return re.sub(r"[\s_]+", " ", cell.strip().lower())


def _time_unit(cell: str) -> str | None:
    m = _TIME.match(_norm(cell))
    if m is None:
        return None
    return "ms" if (m.group(3) or "").startswith("ms") else "s" if m.group(3) else ""


def _split(line: str, delim: str) -> list[str]:
    return next(csv.reader(io.StringIO(line), delimiter=delim))


def _find_header(lines: list[str], path: str | Path) -> tuple[int, str]:
    for i, line in enumerate(lines[:200]):
        if not line.strip():
            continue
        delim = _delimiter(line)
        cells = _split(line, delim)
        if len(cells) >= 4 and any(_time_unit(c) is not None or _FRAME.match(_norm(c)) for c in cells):
            return i, delim
    raise ImportError_(f"{path}: no header line with a Time or Frame column and marker columns "
                       "(e.g. Time<TAB>LHEE X<TAB>LHEE Y<TAB>LHEE Z)")


def _column_names(header: list[str], above: list[str] | None) -> list[str]:
    """Header cells, with a Vicon two-line header's names put before its bare X Y Z cells."""
    if above is None or not any(c.strip().upper() in ("X", "Y", "Z") for c in header):
        return header
    out, stem = [], ""
    for k, c in enumerate(header):
        if c.strip().upper() in ("X", "Y", "Z"):
            name = above[k].strip() if k < len(above) else ""
            if name:
                stem = name.split(":")[-1]  # Vicon writes Subject:LHEE
            out.append(f"{stem} {c.strip()}" if stem else c)
        else:
            out.append(c)
    return out


def _stated_unit(preamble: list[str], delim: str) -> str | None:
    for line in preamble:
        cells = [c.strip() for c in _split(line, delim)] if line.strip() else []
        if len(cells) >= 2 and _norm(cells[0]).rstrip(":") in ("unit", "units", "length unit", "length units"):
            unit = cells[1].lower()
            if unit in UNITS:
                return unit
    return None


def _cell(raw: str, delim: str) -> float:
    s = raw.strip()
    if s.lower() in _GAP:
        return math.nan
    if delim != ",":
        s = s.replace(",", ".")
    return float(s)


def read_text_markers(path: str | Path, *, rate: float | None = None, unit: str | None = None) -> TextMarkers:
    """Read a delimited marker export (module docstring); :class:`ImportError_` says what and where."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = Path(path).read_text(encoding="latin-1")
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ImportError_(f"{path}: the file is empty")
    h, delim = _find_header(lines, path)
    above = next((_split(lines[k], delim) for k in range(h - 1, -1, -1) if lines[k].strip()), None)
    header = _column_names(_split(lines[h], delim), above)
    while header and not header[-1].strip():
        header.pop()
    notes: list[str] = []
    time_col = next((k for k, c in enumerate(header) if _time_unit(c) is not None), None)
    frame_col = next((k for k, c in enumerate(header) if _FRAME.match(_norm(c))), None)

    # marker columns: stem -> {axis: column}; other columns ignored
    stems: dict[str, dict[str, int]] = {}
    units: set[str] = set()
    loose: dict[str, list[str]] = {}
    ignored = []
    for k, raw in enumerate(header):
        if k in (time_col, frame_col):
            continue
        u = _UNIT_SUFFIX.search(raw)
        cell = _UNIT_SUFFIX.sub("", raw).strip()
        m = _AXIS.match(cell)
        if m is None or not m.group("stem").strip():
            ignored.append(raw.strip() or f"column {k + 1}")
            continue
        stem, axis = m.group("stem").strip(), m.group("axis").upper()
        if axis in stems.get(stem, {}):
            raise ImportError_(f"{path}: column {raw.strip()!r} appears twice")
        stems.setdefault(stem, {})[axis] = k
        loose.setdefault(stem, []).append(raw.strip())
        if u:
            units.add(u.group(1).lower())
        if m.group("sep"):
            stems[stem]["sep"] = 1
    names = []
    for stem, axes in stems.items():
        have = [a for a in "XYZ" if a in axes]
        if len(have) == 3:
            names.append(stem)
        elif len(have) == 2 or axes.get("sep"):
            missing = "".join(a for a in "XYZ" if a not in axes)
            raise ImportError_(f"{path}: marker {stem!r} has no {', '.join(missing)} column "
                               f"(it has {', '.join(loose[stem])})")
        else:
            ignored.extend(loose[stem])
    if not names:
        raise ImportError_(f"{path}: no marker columns (three per marker: NAME X, NAME Y, NAME Z)")
    if time_col is None and frame_col is None:
        raise ImportError_(f"{path}: no Time or Frame column")
    if ignored:
        notes.append(f"columns ignored: {', '.join(ignored[:10])}{' ...' if len(ignored) > 10 else ''}")

    rows = [(lineno, _split(line, delim)) for lineno, line in enumerate(lines[h + 1:], start=h + 2)
            if line.strip()]
    unit_row = None
    if rows:
        first = [c.strip().lower() for c in rows[0][1]]
        if any(first) and all(c in ("", "s", "ms", *UNITS) for c in first):
            unit_row = first
            rows = rows[1:]
    if not rows:
        raise ImportError_(f"{path}: no data rows under the header")
    if unit_row is not None:
        units |= {unit_row[stems[n]["X"]] for n in names if stems[n]["X"] < len(unit_row)} - {""}
    stated = _stated_unit(lines[:h], delim)
    if stated:
        units.add(stated)
    if len(units) > 1:
        raise ImportError_(f"{path}: the file states several units ({', '.join(sorted(units))})")
    file_unit = next(iter(units), None)
    if unit is not None and file_unit is not None and unit != file_unit:
        raise ImportError_(f"{path}: the file says {file_unit}, --unit says {unit}")
    chosen = unit or file_unit or "mm"
    if chosen not in UNITS:
        raise ImportError_(f"{path}: unit {chosen!r}; poserun reads mm, cm or m")
    if unit is None and file_unit is None:
        notes.append("no unit stated: read as mm (--unit m if not)")

    cols = [stems[n][a] for n in names for a in "XYZ"]
    n_cols = len(header)
    key_col = time_col if time_col is not None else frame_col
    assert key_col is not None
    keys, values = [], []
    for lineno, cells in rows:
        if len(cells) > n_cols and not any(c.strip() for c in cells[n_cols:]):
            cells = cells[:n_cols]
        if len(cells) != n_cols:
            raise ImportError_(f"{path}:{lineno}: {len(cells)} cells, the header has {n_cols}")
        try:
            key = _cell(cells[key_col], delim)
        except ValueError:
            key = math.nan
        if not math.isfinite(key):
            raise ImportError_(f"{path}:{lineno}: {header[key_col].strip()} {cells[key_col].strip()!r} is not a number")
        row = []
        for k in cols:
            try:
                row.append(_cell(cells[k], delim))
            except ValueError:
                raise ImportError_(f"{path}:{lineno}: column {header[k].strip()!r}: {cells[k].strip()!r} is not a "
                                   "number") from None
        keys.append(key)
        values.append(row)
    key_arr = np.asarray(keys, dtype=np.float64)

    if time_col is not None:
        t_unit = _time_unit(header[time_col]) or (unit_row[time_col] if unit_row and unit_row[time_col] else "")
        step = float(np.median(np.diff(key_arr))) if len(key_arr) > 1 else 0.0
        if not t_unit:
            t_unit = "ms" if step > 0.5 else "s"
            if t_unit == "ms":
                notes.append(f"time read as ms (a step of {step:g} would be under 2 Hz in s)")
        seconds = key_arr / (1000.0 if t_unit == "ms" else 1.0)
        if rate is None:
            if len(seconds) < 2 or seconds[-1] <= seconds[0]:
                raise ImportError_(f"{path}: cannot tell the rate from the time column: pass --rate")
            rate = (len(seconds) - 1) / float(seconds[-1] - seconds[0])  # not a median step: times are rounded
    else:
        if rate is None:
            raise ImportError_(f"{path}: a Frame column (no Time) needs --rate HZ")
        first = 1.0 if key_arr[0] >= 1 else 0.0
        seconds = (key_arr - first) / rate
    xyz = np.asarray(values, dtype=np.float64).reshape(len(values), len(names), 3)
    xyz[(xyz == 0).all(axis=2)] = np.nan
    xyz /= UNITS[chosen]
    return TextMarkers(np.round(seconds * 1e9).astype(np.int64), xyz, names, float(rate), chosen, notes)


def import_text(path: str | Path, *, session: str, athlete: str, up: str = "+z", forward: str = "+y",
                rate: float | None = None, unit: str | None = None, markers: str | Path | None = None,
                frame_ms: float = 10.0) -> tuple[list[RecordedMessage], dict[str, Any]]:
    """The recording's messages, and what was found (markers, rate, unit, roles, notes, a unit warning)."""
    t = read_text_markers(path, rate=rate, unit=unit)
    roles = resolve(t.names, markers)
    info: dict[str, Any] = {"markers": len(t.names), "rate_hz": t.rate_hz, "unit": t.unit, "roles": roles,
                            "notes": t.notes, "warning": height_warning(t.xyz, up, t.unit)}
    return marker_messages(session, athlete, t.times_ns, t.xyz, t.names, t.rate_hz, up=up, forward=forward,
                           roles=roles, device=f"markers from {Path(path).name}", frame_ms=frame_ms), info
