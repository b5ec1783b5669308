"""C3D files (Vicon, Qualisys, Motion Analysis ...) into a recording: markers and force plates.

Read with the ``c3d`` package (pip ``poserun[lab]``): pure Python on numpy, maintained, a wheel
for every platform and Python, and it reads points, analog channels and the FORCE_PLATFORM and
EVENT groups, all this import needs (``ezc3d`` reads the same values but is a compiled extension
that pins its own numpy builds). Markers become a ``keypoints`` source as in the QTM import (m,
confidence 0 for a gap, which C3D stores as 0 0 0); the plates' vertical force (``FORCE_PLATFORM:CHANNEL``
by ``FORCE_PLATFORM:TYPE``: the third channel of types 1, 2 and 4, the sum of the four vertical
channels of type 3) becomes truth exactly as the QTM
import does (:func:`poserun.services.import_qtm.plate_truth`: sign and zero from the data, 50 Hz
unless the lab already cleaned the channel, the contact threshold, the foot by its lower foot
markers). Vicon puts frame ``n`` at
``(n - 1) / rate`` s, and the analog samples on the same clock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poserun.recording import RecordedMessage
from poserun.services.import_qtm import THRESHOLD_N, plate_truth, vertical_force
from poserun.services.import_roles import foot_indices, resolve
from poserun.services.importer import ImportError_, marker_messages

UNITS = {"mm": 0.001, "cm": 0.01, "m": 1.0}


def read_c3d(path: str | Path) -> dict[str, object]:
    """Markers (times_ns, xyz in m with NaN gaps, names, rate) and plates (times_ns, Fz per plate, rate)."""
    try:
        import c3d
    except ModuleNotFoundError:
        raise ImportError_("C3D files need the c3d package: pip install 'poserun[lab]'") from None
    try:
        with open(path, "rb") as fh:
            r = c3d.Reader(fh)
            names = [s.strip() for s in r.point_labels]
            pts, ana = [], []
            for _i, p, a in r.read_frames():
                pts.append(p[:, :3])
                ana.append(a)
            rate, a_rate, first = float(r.point_rate), float(r.analog_rate), int(r.first_frame)
            unit_param = r.get("POINT:UNITS")
            unit = unit_param.string_value.strip().lower() if unit_param is not None else "mm"
            fp = r.get("FORCE_PLATFORM")
            channel = fp.get("CHANNEL").int16_array if fp is not None and fp.get("CHANNEL") is not None else None
            types = fp.get("TYPE").int16_array if fp is not None and fp.get("TYPE") is not None else None
    except (ValueError, OSError, AssertionError, IndexError, KeyError, AttributeError) as exc:
        raise ImportError_(f"{path}: not a readable C3D file ({exc})") from None
    if unit not in UNITS:
        raise ImportError_(f"{path}: point units {unit!r}; poserun reads mm, cm or m")
    xyz = np.array(pts, dtype=float)
    xyz[(xyz == 0).all(axis=2)] = np.nan
    xyz *= UNITS[unit]
    t0 = (first - 1) / rate
    times = np.round((t0 + np.arange(len(xyz)) / rate) * 1e9).astype(np.int64)
    out: dict[str, object] = {"times": times, "xyz": xyz, "names": names, "rate": rate, "plates": []}
    if channel is not None and a_rate > 0 and ana and np.size(ana[0]):
        analog = np.concatenate(ana, axis=1).T  # (samples, channels)
        kinds = np.atleast_1d(types) if types is not None else np.full(len(np.atleast_2d(channel)), 2)
        out["plates"] = [_vertical_channel(analog, row, int(kind), path)
                         for row, kind in zip(np.atleast_2d(channel), kinds, strict=False)]
        out["f_rate"] = a_rate
        out["f_times"] = np.round((t0 + np.arange(len(analog)) / a_rate) * 1e9).astype(np.int64)
    return out


def _vertical_channel(analog: np.ndarray, channels: np.ndarray, plate_type: int, path: str | Path) -> np.ndarray:
    """A plate's vertical force from its analog channels (1-based in ``channels``), by C3D plate type:
    types 1, 2 and 4 (AMTI-style: Fx Fy Fz ...) carry it in their third channel; type 3 (Kistler:
    Fx12 Fx34 Fy14 Fy23 Fz1 Fz2 Fz3 Fz4) as the sum of channels five to eight."""
    cols = [int(c) - 1 for c in np.atleast_1d(channels)]
    if any(not 0 <= c < analog.shape[1] for c in cols):
        raise ImportError_(f"{path}: FORCE_PLATFORM:CHANNEL names an analog channel the file lacks")
    if plate_type in (1, 2, 4) and len(cols) >= 3:
        return analog[:, cols[2]]
    if plate_type == 3 and len(cols) >= 8:
        return analog[:, cols[4:8]].sum(axis=1)
    raise ImportError_(f"{path}: force plate type {plate_type} with {len(cols)} channels: poserun reads "
                       "types 1-4")


def import_c3d(path: str | Path, *, session: str, athlete: str, up: str = "+z", forward: str = "+y",
               threshold_n: float = THRESHOLD_N, markers: str | Path | None = None, frame_ms: float = 10.0
               ) -> tuple[list[RecordedMessage], dict[str, object]]:
    """The recording's messages, and what was found (markers, roles, loaded plates, contacts per foot)."""
    d = read_c3d(path)
    times, xyz, names, rate = d["times"], d["xyz"], d["names"], d["rate"]
    assert isinstance(times, np.ndarray) and isinstance(xyz, np.ndarray) and isinstance(names, list)
    roles = resolve(names, markers)
    messages = marker_messages(session, athlete, times, xyz, names, float(rate), up=up,  # type: ignore[arg-type]
                               forward=forward, roles=roles, device=f"C3D markers from {Path(path).name}",
                               frame_ms=frame_ms)
    plates = d["plates"]
    assert isinstance(plates, list)
    loaded = [k + 1 for k, fz in enumerate(plates) if np.nanmax(np.abs(fz)) > threshold_n]
    info: dict[str, object] = {"markers": len(names), "rate_hz": rate, "plates": loaded, "contacts": {},
                               "roles": roles}
    if not loaded:
        return messages, info
    feet = foot_indices(names, roles)
    if len(feet) < 2:
        raise ImportError_(f"{path}: no heel, toe or ankle markers on both sides to tell the feet apart")
    f_rate, f_times = d["f_rate"], d["f_times"]
    assert isinstance(f_rate, float) and isinstance(f_times, np.ndarray)
    vgrf = vertical_force([plates[k - 1] for k in loaded], f_rate)
    truth, info["contacts"] = plate_truth(session, athlete, f_times, vgrf, f_rate, times, xyz, feet, up, threshold_n)
    return messages + truth, info
