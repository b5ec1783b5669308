"""``poserun import``: lab data into a recording (MCAP) that replays like a live session.

Formats: a CSV per stream (time + channels), a TRC marker table (OpenSim /
motion-capture export), and the Bach et al. (2022) shank-accelerometer and
force-plate dataset (``shared/data/real/bach2022``), whose force plate
becomes a ``force_*`` stream plus truth events at a 50 N threshold. The
other formats have modules of their own (``import_*.py``); every marker
format goes through :func:`marker_messages`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poserun.recording import RecordedMessage, RecordingWriter
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.streams import source_kind

TIME_COLUMNS = {"time_ns": 1, "timestamp_ns": 1, "t_ns": 1, "time_ms": 1e6, "time_s": 1e9,
                "time": 1e9, "t": 1e9, "seconds": 1e9}


class ImportError_(ValueError):
    """A lab file poserun cannot import; the message says which line or column."""


def frames_from_table(session: str, athlete: str, source: str, times_ns: np.ndarray,
                      data: np.ndarray, *, frame_ms: float = 10.0) -> list[RecordedMessage]:
    """Cut samples into frames of ``frame_ms``; each logged at its last sample's time."""
    kind = source_kind(source)
    times_ns = np.asarray(times_ns, dtype=np.int64)
    data = np.asarray(data, dtype=np.float32)
    if len(times_ns) != len(data):
        raise ImportError_("times and samples differ in length")
    if len(times_ns) > 1 and np.any(np.diff(times_ns) <= 0):
        bad = int(np.argmax(np.diff(times_ns) <= 0)) + 1
        raise ImportError_(f"time does not increase at sample {bad}")
    if not np.isfinite(data).all():
        raise ImportError_("non-finite values: fill or drop them (missing markers: use confidence 0)")
    if len(times_ns) == 0:
        return []
    period = int(np.median(np.diff(times_ns))) if len(times_ns) > 1 else 10_000_000
    frame_ns = int(frame_ms * 1e6)
    slot = (times_ns - times_ns[0]) // frame_ns
    cuts = np.flatnonzero(np.diff(slot)) + 1
    topic = topics.data_topic(session, athlete, source)
    out = []
    for seq, (ts, rows) in enumerate(zip(np.split(times_ns, cuts), np.split(data, cuts), strict=True)):
        uniform = len(ts) == 1 or bool(np.all(np.diff(ts) == period))
        payload = wf.pack(kind, seq, int(ts[0]), np.ascontiguousarray(rows),
                          period_ns=period if uniform else 0,
                          timestamps_ns=None if uniform else ts)
        out.append(RecordedMessage(topic, payload, int(ts[-1])))
    return out


def meta_message(session: str, athlete: str, meta: Any, t_ns: int = 0) -> RecordedMessage:
    return RecordedMessage(topics.meta_topic(session, athlete, meta.source), wm.dump(meta), t_ns,
                           retain=True, qos=1)


def write_recording(path: str | Path, messages: Sequence[RecordedMessage], *,
                    metadata: dict[str, str] | None = None,
                    athletes: list[dict[str, Any]] | None = None) -> int:
    """Write messages ordered by time (meta first at equal times)."""
    ordered = sorted(messages, key=lambda m: (m.log_time_ns, not m.retain))
    w = RecordingWriter(path, metadata=metadata)
    if athletes is not None:
        w.add_metadata("poserun.athletes", {"json": json.dumps(athletes)})
    for m in ordered:
        w.write(m.topic, m.payload, m.log_time_ns, retain=m.retain, qos=m.qos)
    w.close()
    return len(ordered)


# --------------------------------------------------------------------- CSV

def read_csv_table(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(times_ns, data, channel names) from a CSV with a header; the first column is time."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ImportError_(f"{path}: needs a header row and at least one sample")
    header = [h.strip() for h in rows[0]]
    scale = TIME_COLUMNS.get(header[0].lower())
    if scale is None:
        raise ImportError_(
            f"{path}: first column {header[0]!r} must be time: one of {', '.join(TIME_COLUMNS)}"
        )
    if len(header) < 2:
        raise ImportError_(f"{path}: no channel columns after {header[0]!r}")
    times, values = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ImportError_(f"{path}:{lineno}: {len(row)} columns, header has {len(header)}")
        try:
            t = float(row[0])
            vals = [float(v) for v in row[1:]]
        except ValueError:
            raise ImportError_(f"{path}:{lineno}: not a number in {row!r:.80}") from None
        if not math.isfinite(t) or not all(math.isfinite(v) for v in vals):
            raise ImportError_(f"{path}:{lineno}: NaN or infinity")
        times.append(round(t * scale))
        values.append(vals)
    return np.asarray(times, dtype=np.int64), np.asarray(values, dtype=np.float64), header[1:]


def accel_unit_warning(data: np.ndarray, accel_unit: str) -> str | None:
    """A sentence when the file's mean acceleration is no gravity in the declared unit
    (:class:`~poserun.processors.checks.GravityCheck`: a file in g declared as m/s², or the reverse)."""
    from poserun.processors.checks import G, GravityCheck

    check = GravityCheck(G if accel_unit == "g" else 1.0, seconds=0.0)
    if len(data) == 0 or not check.feed(np.zeros(len(data)), data) or check.mean_g is None:
        return None
    other = "m/s^2" if accel_unit == "g" else "g"
    return (f"the accelerometer's mean over the file is {check.mean_g:.2f} g read as {accel_unit}, not about 1 g of "
            f"gravity: is the file in {other}? (--accel-unit {other})")


def import_csv(path: str | Path, *, session: str, athlete: str, meta: Any,
               frame_ms: float = 10.0) -> list[RecordedMessage]:
    times, data, names = read_csv_table(path)
    expected = len(meta.channels)
    if data.shape[1] != expected:
        raise ImportError_(
            f"{path}: {data.shape[1]} channel columns {names}, the {meta.kind} meta needs {expected}"
        )
    return [meta_message(session, athlete, meta, int(times[0])),
            *frames_from_table(session, athlete, meta.source, times, data, frame_ms=frame_ms)]


# --------------------------------------------------------------------- TRC

def read_trc(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], float, str]:
    """(times_ns, xyz (n, markers, 3) with NaN for gaps, names, rate, units) of a TRC file."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    if len(lines) < 6 or not lines[0].startswith("PathFileType"):
        raise ImportError_(f"{path}: not a TRC file (first line must start with PathFileType)")
    keys = lines[1].split("\t")
    vals = lines[2].split("\t")
    info = dict(zip([k.strip() for k in keys], [v.strip() for v in vals], strict=False))
    try:
        rate = float(info["DataRate"])
        units = info["Units"].lower()
        n_markers = int(info["NumMarkers"])
    except (KeyError, ValueError):
        raise ImportError_(f"{path}: line 3 must give DataRate, NumMarkers and Units") from None
    if units not in ("mm", "m"):
        raise ImportError_(f"{path}: units {units!r}; poserun reads mm or m")
    names = [c.strip() for c in lines[3].split("\t")[2:] if c.strip()]
    if len(names) != n_markers:
        raise ImportError_(f"{path}: header names {len(names)} markers, NumMarkers says {n_markers}")
    times, xyz = [], []
    for lineno, line in enumerate(lines[5:], start=6):
        if not line.strip():
            continue
        cells = line.split("\t")
        try:
            t = float(cells[1])
        except (IndexError, ValueError):
            raise ImportError_(f"{path}:{lineno}: no time in column 2") from None
        coords = []
        for k in range(3 * n_markers):
            raw = cells[2 + k].strip() if 2 + k < len(cells) else ""
            try:
                coords.append(float(raw) if raw else math.nan)
            except ValueError:
                raise ImportError_(f"{path}:{lineno}: {raw!r} is not a number") from None
        times.append(round(t * 1e9))
        xyz.append(coords)
    arr = np.asarray(xyz, dtype=np.float64).reshape(len(xyz), n_markers, 3)
    if units == "mm":
        arr = arr / 1000.0
    return np.asarray(times, dtype=np.int64), arr, names, rate, units


def import_trc(path: str | Path, *, session: str, athlete: str, up: str = "+y", forward: str = "+x",
               markers: str | Path | None = None, frame_ms: float = 10.0
               ) -> tuple[list[RecordedMessage], dict[str, Any]]:
    """Markers become a ``keypoints`` source (schema ``markers``, x y z in m + confidence); and what was
    found (marker count, rate, roles, a unit warning)."""
    from poserun.services.import_roles import resolve

    times, xyz, names, rate, units = read_trc(path)
    roles = resolve(names, markers)
    info: dict[str, Any] = {"markers": len(names), "rate_hz": rate, "roles": roles,
                            "warning": height_warning(xyz, up, units)}
    return marker_messages(session, athlete, times, xyz, names, rate, up=up, forward=forward, roles=roles,
                           device=f"markers from {Path(path).name}", frame_ms=frame_ms), info


def marker_messages(session: str, athlete: str, times: np.ndarray, xyz: np.ndarray, names: list[str], rate: float,
                    *, up: str, forward: str, device: str, roles: Any = None,
                    frame_ms: float = 10.0) -> list[RecordedMessage]:
    """3-D markers (n, markers, 3) in m, NaN for a gap, as a ``keypoints`` source: its meta (schema
    ``markers``, the lab's axes) and frames of x y z and a confidence of 1, or 0 for a gap. The role
    markers (``roles``, else recognised from the names) are renamed for the processor
    (:func:`poserun.services.import_roles.apply_roles`)."""
    from poserun.services.import_roles import apply_roles, recognise

    if up[-1:] not in ("x", "y", "z") or forward[-1:] not in ("x", "y", "z") or up[-1] == forward[-1]:
        raise ImportError_(f"--up {up} and --forward {forward} must be two different axes, e.g. +z and +y")
    names, xyz = apply_roles(names, xyz, roles if roles is not None else recognise(names))
    present = np.isfinite(xyz).all(axis=2)
    data = np.concatenate([np.nan_to_num(xyz, nan=0.0), present[..., None].astype(float)], axis=2)
    meta = wm.KeypointMeta(
        source="keypoints", rate_hz=rate, schema="markers", names=names, dims="xyzc", unit="m", device=device,
        camera=wm.CameraMeta(scale_m_per_px=1.0, view="3d", up_axis=up, forward_axis=forward),  # type: ignore[arg-type]
    )
    return [meta_message(session, athlete, meta, int(times[0]) if len(times) else 0),
            *frames_from_table(session, athlete, "keypoints", times,
                               data.reshape(len(times), -1), frame_ms=frame_ms)]


#: the span of marker heights (m) a runner's marker set can have: feet only (a few cm of swing) to the
#: whole body on a raised treadmill; a span outside it is the unit off by 1000 (mm read as m or back)
HEIGHT_SPAN_M = (0.02, 5.0)


def height_warning(xyz_m: np.ndarray, up: str, unit: str) -> str | None:
    """A sentence when the markers' heights (after reading them as ``unit``) span an implausible range."""
    if up[-1:] not in ("x", "y", "z") or xyz_m.size == 0:
        return None
    h = xyz_m[..., "xyz".index(up[-1])]
    h = h[np.isfinite(h)]
    if len(h) < 2:
        return None
    span = float(np.percentile(h, 99) - np.percentile(h, 1))
    if HEIGHT_SPAN_M[0] <= span <= HEIGHT_SPAN_M[1]:
        return None
    other = "m" if span < HEIGHT_SPAN_M[0] else "mm"
    return (f"the markers' heights span {span:.3g} m read as {unit}: implausible for a runner; is the file in "
            f"{other}? (--unit {other}; or another up axis, --up)")


def athlete_entry(athlete: str, *, body_mass_kg: float | None = None, leg_length_m: float | None = None,
                  height_m: float | None = None, **extra: Any) -> dict[str, Any]:
    """The ``poserun.athletes`` entry of an imported subject (read by ``analyze`` and ``validate``).
    Without a leg length, a height gives one: greater trochanter height = 0.530 x stature (Winter's
    segment proportions). Values outside the processor's ranges are refused here, not at analysis."""
    from poserun.settings import AthleteSettings

    entry: dict[str, Any] = {"id": athlete}
    if height_m is not None:
        if not 1.0 <= height_m <= 2.5:
            raise ImportError_(f"--height {height_m:g}: give the stature in metres (1.0-2.5)")
        entry["height_m"] = height_m
        if leg_length_m is None:
            leg_length_m = round(0.530 * height_m, 3)
            entry["leg_length_from"] = "0.530 x height"
    if body_mass_kg is not None:
        entry["body_mass_kg"] = body_mass_kg
    if leg_length_m is not None:
        entry["leg_length_m"] = leg_length_m
    known = {k: entry[k] for k in ("body_mass_kg", "leg_length_m") if k in entry}
    try:
        AthleteSettings(id=athlete, **known)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ("?",), "msg": str(exc)}
        flag = {"body_mass_kg": "--body-mass", "leg_length_m": "--leg-length", "id": "--athlete"}.get(
            str(first["loc"][0]), str(first["loc"][0]))
        raise ImportError_(f"{flag}: {first['msg']}") from None
    return {**entry, **{k: v for k, v in extra.items() if v is not None}}


# --------------------------------------------------------------- bach2022

BACH_THRESHOLD_N = 50.0


def force_contacts(vgrf: np.ndarray, fs: float, thresh: float = BACH_THRESHOLD_N,
                   min_contact_s: float = 0.08, min_gap_s: float = 0.05) -> np.ndarray:
    """(IC, TO) sample indices of supra-threshold force segments (the dataset's own rule:
    IC = first sample above, TO = first sample back below; short gaps merged, short or
    edge-touching contacts dropped)."""
    on = vgrf > thresh
    e = np.diff(np.r_[0, on.astype(int), 0])
    starts, ends = np.flatnonzero(e == 1), np.flatnonzero(e == -1)
    segs: list[list[int]] = []
    for s, t in zip(starts, ends, strict=True):
        if segs and (s - segs[-1][1]) / fs < min_gap_s:
            segs[-1][1] = t
        else:
            segs.append([s, t])
    keep = [(s, t) for s, t in segs if (t - s) / fs >= min_contact_s and s > 0 and t < len(vgrf)]
    return np.array(keep, dtype=int).reshape(-1, 2)


def load_bach2022(folder: str | Path) -> list[dict[str, Any]]:
    try:
        import scipy.io as sio
    except ModuleNotFoundError:
        raise ImportError_("reading .mat files needs scipy: pip install 'poserun[lab]'") from None
    folder = Path(folder)
    mat = folder / "walk+run.mat"
    info_csv = folder / "walk+run_INFO.csv"
    if not mat.exists() or not info_csv.exists():
        raise ImportError_(f"{folder}: expected walk+run.mat and walk+run_INFO.csv")
    m = sio.loadmat(mat, squeeze_me=True, struct_as_record=False)
    with open(info_csv, newline="", encoding="utf-8-sig") as fh:
        info = [r for r in csv.DictReader(fh) if r.get("Trial")]
    trials = []
    for i, t in enumerate(np.atleast_1d(m["data"])):
        meta = info[i]
        trials.append({
            "trial": int(meta["Trial"]), "condition": str(t.Condition), "fs": float(t.SamplingRate),
            "acc": np.asarray(t.Accelerometer, float), "vgrf": -np.asarray(t.GroundReactionForce, float),
            "sex": meta["Gender"], "mass_kg": float(meta["Weight [kg]"]),
            "height_cm": float(meta["Height [cm]"]), "speed_kmh": float(meta["Speed [km/h]"]),
        })
    return trials


def import_bach2022(folder: str | Path, *, session: str = "bach2022",
                    running_only: bool = False, frame_ms: float = 10.0
                    ) -> tuple[list[RecordedMessage], list[dict[str, Any]]]:
    """Each trial becomes an athlete ``trialNN`` with a shank IMU (accelerometer, g),
    a force stream of the same leg and truth events at 50 N."""
    messages: list[RecordedMessage] = []
    athletes: list[dict[str, Any]] = []
    for tr in load_bach2022(folder):
        if running_only and tr["condition"] != "running":
            continue
        athlete = f"trial{tr['trial']:02d}"
        fs = tr["fs"]
        n = len(tr["vgrf"])
        times = np.round(np.arange(n) * (1e9 / fs)).astype(np.int64)
        imu = wm.ImuMeta(
            source="imu_shank_right", rate_hz=fs, placement="shank", side="right",
            channels=["ax", "ay", "az"], accel_unit="g",
            axes={"x": "down", "y": "left", "z": "forward"},
            device="Bach et al. 2022 shank accelerometer (side of the instrumented leg not stated; "
                   "same leg as the force signal)",
        )
        force = wm.ForceMeta(source="force_right", rate_hz=fs, side="right",
                             device="instrumented treadmill, vertical GRF of the sensor's leg")
        messages += [meta_message(session, athlete, imu), meta_message(session, athlete, force)]
        messages += frames_from_table(session, athlete, imu.source, times, tr["acc"], frame_ms=frame_ms)
        messages += frames_from_table(session, athlete, force.source, times, tr["vgrf"][:, None],
                                      frame_ms=frame_ms)
        contacts = force_contacts(tr["vgrf"], fs)
        truth_topic = topics.athlete_topic(session, athlete, "truth")
        for k, (ic, to) in enumerate(contacts):
            ev = wm.TruthEvent(foot="right", step=k, ic_ns=int(times[ic]), to_ns=int(times[to]),
                               source="force_plate_50N")
            messages.append(RecordedMessage(truth_topic, wm.dump(ev), int(times[to]), qos=1))
        athletes.append({
            "id": athlete, "trial": tr["trial"], "condition": tr["condition"], "sex": tr["sex"],
            "body_mass_kg": tr["mass_kg"], "height_cm": tr["height_cm"],
            "speed_kmh": tr["speed_kmh"], "rate_hz": fs, "contacts": len(contacts),
        })
    return messages, athletes
