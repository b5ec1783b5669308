"""What a lab sensor CSV leaves open: where the sensor was worn, which side, its units, axes and
missing accelerometer axes; the answers make the device meta of ``poserun import csv``.

* source: ``--source imu_shank_left``, or built from ``--placement`` (foot, shank, pelvis, sacrum,
  trunk) and ``--side``; a pelvis, sacrum or trunk sensor is the ``imu_pelvis`` source.
* side ``unknown`` (a foot or shank sensor whose leg the lab did not write down): imported as the
  right leg, with a warning, and the metadata says the side is unknown. Contact times and cadence
  do not depend on it; only the left/right labels and symmetry do.
* axes: ``--axes x=forward,y=left,z=up`` (two are enough: the third follows from a right-handed
  sensor frame), or the marker imports' signed style, ``--up -x --forward +z``: the sensor axis
  pointing up and the one pointing forward.
* a 1- or 2-axis accelerometer (``--channels az`` or ``ax,az``): the missing axes are zeros. The
  shank and pelvis detectors track gravity as the slow mean of the acceleration vector and work on
  the dynamic acceleration around it; with zeros on the unmeasured axes both lie in the measured
  axes, so they see exactly what the sensor measured and nothing invented. A pelvis sensor without
  its lateral axis cannot tell left from right stance (warned). A foot IMU is refused: it tracks
  the foot's orientation and needs three axes and a gyroscope.
* units: accelerometer in m/s^2, g or mg (mg is written as g), gyroscope in rad/s or deg/s.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from poserun.services.importer import ImportError_
from poserun.wire import meta as wm
from poserun.wire.streams import SOURCES

PLACEMENTS = ("foot", "shank", "pelvis", "sacrum", "trunk")
SIDED = ("foot", "shank")
UNKNOWN_SIDE_AS = "right"
_BODY = {"forward": (1, 0, 0), "backward": (-1, 0, 0), "left": (0, 1, 0), "right": (0, -1, 0),
         "up": (0, 0, 1), "down": (0, 0, -1)}


def sensor_source(source: str | None, placement: str | None, side: str | None
                  ) -> tuple[str, str | None, str | None, list[str]]:
    """(source, placement, side, notes) from ``--source``, ``--placement`` and ``--side`` (module docstring)."""
    notes: list[str] = []
    if side not in (None, "left", "right", "unknown"):
        raise ImportError_(f"--side {side}: left, right or unknown")
    if placement is not None and placement not in PLACEMENTS:
        raise ImportError_(f"--placement {placement}: one of {', '.join(PLACEMENTS)}")
    if source is not None:
        if source not in SOURCES:
            raise ImportError_(f"--source {source}: one of {', '.join(SOURCES)}")
        named_side = "left" if source.endswith("_left") else "right" if source.endswith("_right") else None
        if side not in (None, "unknown") and named_side and side != named_side:
            raise ImportError_(f"--side {side} contradicts --source {source}")
        if source.startswith("imu_"):
            named = source.split("_")[1]
            if placement is not None and placement != named and not (named == "pelvis" and placement not in SIDED):
                raise ImportError_(f"--placement {placement} contradicts --source {source}")
            placement = placement or named
        if side == "unknown" and named_side:
            notes.append(f"side unknown: written as {source} (the name's side)")
        return source, placement, named_side or (side if side != "unknown" else None), notes
    if placement is None:
        raise ImportError_("import csv needs --source (e.g. imu_shank_left, force_left) or --placement and --side")
    if placement not in SIDED:
        if side not in (None, "unknown"):
            notes.append(f"--side {side} ignored: a {placement} sensor is the athlete's imu_pelvis source")
        return "imu_pelvis", placement, None, notes
    if side in (None, "unknown"):
        notes.append(f"side of the {placement} sensor unknown: imported as the {UNKNOWN_SIDE_AS} leg "
                     "(left/right labels and symmetry then mean nothing; pass --side if it is known)")
        side = UNKNOWN_SIDE_AS
    return f"imu_{placement}_{side}", placement, side, notes


def _cross(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _direction(v: tuple[int, ...]) -> str:
    return next(d for d, u in _BODY.items() if u == tuple(v))


def imu_axes(axes: str | None, up: str | None, forward: str | None) -> dict[str, str] | None:
    """The meta's ``axes`` (sensor axis -> body direction) from ``--axes`` or ``--up``/``--forward``."""
    given: dict[str, str] = {}
    if axes and (up or forward):
        raise ImportError_("give the sensor axes as --axes or as --up/--forward, not both")
    if axes:
        for item in axes.split(","):
            k, sep, v = item.strip().partition("=")
            k, v = k.strip().lower(), v.strip().lower()
            if not sep or k not in ("x", "y", "z") or v not in _BODY or k in given:
                raise ImportError_(f"--axes {axes}: write axis=direction, e.g. x=forward,y=left,z=up "
                                   f"(directions: {', '.join(_BODY)})")
            given[k] = v
    elif up or forward:
        if not (up and forward):
            raise ImportError_("a sensor's axes need both --up and --forward (e.g. --up -x --forward +z)")
        for flag, value, direction in (("--up", up, "up"), ("--forward", forward, "forward")):
            if not re.fullmatch(r"[+-]?[xyz]", value):
                raise ImportError_(f"{flag} {value}: an axis such as +z or -x")
            axis = value[-1]
            if axis in given:
                raise ImportError_("--up and --forward must be different sensor axes")
            given[axis] = direction if not value.startswith("-") else _direction(tuple(-c for c in _BODY[direction]))
    else:
        return None
    if len(given) < 2:
        raise ImportError_("name at least two sensor axes: the third follows from a right-handed frame")
    vec = {k: _BODY[v] for k, v in given.items()}
    if len(given) == 2:
        missing = next(a for a in "xyz" if a not in vec)
        nxt = {"x": ("y", "z"), "y": ("z", "x"), "z": ("x", "y")}[missing]
        third = _cross(vec[nxt[0]], vec[nxt[1]])
        if third == (0, 0, 0):
            flag = f"--axes {axes}" if axes else "--up/--forward"
            raise ImportError_(f"{flag}: the two sensor axes point along one body axis")
        given[missing] = _direction(third)
    try:
        return dict(wm.ImuMeta(source="imu_pelvis", rate_hz=1, placement="pelvis",
                               axes=given).axes)  # type: ignore[arg-type]
    except ValueError:
        raise ImportError_(f"sensor axes {given}: each must point along a different body axis") from None


def pad_channels(data: np.ndarray, channels: list[str], placement: str | None
                 ) -> tuple[np.ndarray, list[str], list[str]]:
    """Columns ordered ax ay az [gx gy gz] with zeros for missing accelerometer axes (module docstring);
    channel names other than a/g + x/y/z are kept as they are. Returns (data, channels, notes)."""
    parsed = [re.fullmatch(r"([ag])([xyz])", c.strip().lower()) for c in channels]
    if not all(parsed):
        return data, channels, []
    keys = [m.group(0) for m in parsed if m]
    if len(set(keys)) != len(keys):
        raise ImportError_(f"--channels {','.join(channels)}: a channel is named twice")
    acc = [a for a in "xyz" if f"a{a}" in keys]
    gyro = [a for a in "xyz" if f"g{a}" in keys]
    if not acc:
        raise ImportError_(f"--channels {','.join(channels)}: no accelerometer axis (ax, ay or az)")
    if gyro and len(gyro) != 3:
        raise ImportError_(f"--channels {','.join(channels)}: a gyroscope needs gx, gy and gz")
    if len(acc) == 3 and keys == [f"a{a}" for a in "xyz"] + [f"g{a}" for a in gyro]:
        return data, channels, []
    notes: list[str] = []
    if len(acc) < 3:
        if placement == "foot":
            raise ImportError_("a foot IMU needs ax, ay, az and a gyroscope (it tracks the foot's orientation)")
        notes.append(f"{len(acc)}-axis accelerometer: {', '.join('a' + a for a in 'xyz' if a not in acc)} "
                     "written as zeros")
    col = {k: i for i, k in enumerate(keys)}
    out = np.zeros((len(data), 3 + len(gyro)))
    for j, a in enumerate("xyz"):
        if f"a{a}" in col:
            out[:, j] = data[:, col[f"a{a}"]]
        if gyro:
            out[:, 3 + j] = data[:, col[f"g{a}"]]
    return out, ["ax", "ay", "az", *(["gx", "gy", "gz"] if gyro else [])], notes


def lateral_missing(axes: dict[str, str] | None, channels_given: list[str]) -> bool:
    """True when a pelvis sensor's lateral axis (left/right) is not among the measured channels."""
    axes = axes or {"x": "forward", "y": "left", "z": "up"}
    measured = {c.strip().lower()[1:] for c in channels_given if re.fullmatch(r"a[xyz]", c.strip().lower())}
    return not any(axes[a] in ("left", "right") for a in measured)


def imu_meta(source: str, placement: str, side: str | None, rate: float, channels: list[str], accel_unit: str,
             gyro_unit: str, axes: dict[str, str] | None, device: str | None = None) -> Any:
    """The IMU's meta; an inconsistent combination is an :class:`ImportError_`."""
    try:
        return wm.ImuMeta(source=source, rate_hz=rate, placement=placement, side=side,  # type: ignore[arg-type]
                          channels=channels, accel_unit=accel_unit, gyro_unit=gyro_unit,  # type: ignore[arg-type]
                          device=device, **({"axes": axes} if axes else {}))
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        msg = errors()[0]["msg"] if callable(errors) else str(exc)
        raise ImportError_(f"{source}: {msg}") from None
