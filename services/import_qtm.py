"""Qualisys (QTM) TSV exports into a recording: markers as ``keypoints``, force plates or belts as truth.

QTM writes a 3-D export (``NAME.tsv``: ``KEY<TAB>value`` header lines, ``MARKER_NAMES``, then a
``Frame  Time  ...  <marker> X/Y/Z`` table in mm) and one force export per plate or treadmill belt
(``NAME_f_K.tsv``: ``SAMPLE TIME Force_X/Y/Z Moment_X/Y/Z COP_X/Y/Z``), all on one clock. The
markers become a ``keypoints`` source (schema ``markers``, x y z in m with a confidence of 0 for a
gap, which QTM writes as 0 0 0). The plates become truth events:

* vertical force: each plate's ``Force_Z``, signed so that the body's weight is positive (QTM
  exports the force on the plate, negative under load; the sign is taken from the data: over a
  run the mean vertical ground force is the body's weight, so it must come out positive);
* each plate low-passed at ``LOWPASS_HZ`` (a second-order zero-lag Butterworth: ground-force
  content of running is under 50 Hz, plate noise is not), unless its unloaded samples all read
  one value (a lab export already zeroed and cleaned), its unloaded level removed (the median of its quietest
  tenth of samples: every running stride has flights, a quarter or more of the time, with no
  load), then the plates summed (one belt can see both feet);
* a contact where the sum exceeds ``--force-threshold`` (default ``THRESHOLD_N``) for at least
  the minimum stance, IC the first sample above, TO the first one back below;
* its foot: the foot whose lowest foot marker (heel, toe or metatarsal; the ankle when a foot
  has none of those) is lower at mid-contact, since the stance foot is on the ground and the
  other swings above it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poserun.recording import RecordedMessage
from poserun.services.import_roles import foot_indices, resolve
from poserun.services.importer import ImportError_, force_contacts, marker_messages
from poserun.wire import meta as wm
from poserun.wire import topics

LOWPASS_HZ = 50.0
THRESHOLD_N = 30.0
MIN_CONTACT_S = 0.05  # the shortest sprint contacts last about 0.08 s


def _header(lines: list[str], stop: str) -> tuple[dict[str, list[str]], int]:
    head: dict[str, list[str]] = {}
    for i, line in enumerate(lines):
        parts = line.rstrip("\r\n").split("\t")
        if parts[0] == stop:
            return head, i
        head[parts[0]] = [p for p in parts[1:] if p != ""]
    raise ImportError_(f"no '{stop}' column line: not a QTM TSV export")


def read_qtm_markers(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """(times_ns, xyz (n, markers, 3) in m with NaN for gaps, names, rate) of a QTM 3-D export."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    try:
        head, col = _header(lines, "Frame")
        names = head["MARKER_NAMES"]
        rate = float(head["FREQUENCY"][0])
    except (KeyError, IndexError, ValueError, ImportError_) as exc:
        raise ImportError_(f"{path}: not a QTM 3-D export ({exc})") from None
    columns = lines[col].rstrip("\r\n").split("\t")
    try:
        t_col = columns.index("Time")
        x_col = columns.index(f"{names[0]} X")
    except ValueError:
        raise ImportError_(f"{path}: the column line lacks Time or '{names[0]} X'") from None
    rows = [line.split("\t") for line in lines[col + 1:] if line.strip()]
    try:
        table = np.array([[float(v) for v in r[:x_col + 3 * len(names)]] for r in rows])
    except ValueError as exc:
        raise ImportError_(f"{path}: not a number in the marker table ({exc})") from None
    if table.ndim != 2 or table.shape[1] < x_col + 3 * len(names):
        raise ImportError_(f"{path}: rows shorter than {len(names)} markers")
    xyz = table[:, x_col:x_col + 3 * len(names)].reshape(len(table), len(names), 3) / 1000.0
    xyz[(xyz == 0).all(axis=2)] = np.nan  # QTM writes a gap as 0 0 0
    return np.round(table[:, t_col] * 1e9).astype(np.int64), xyz, names, rate


def read_qtm_force(path: str | Path) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(times_ns, force (n, 3) in N as exported, rate, plate name) of a QTM force export."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    try:
        head, col = _header(lines, "SAMPLE")
        rate = float(head["FREQUENCY"][0])
    except (KeyError, IndexError, ValueError, ImportError_) as exc:
        raise ImportError_(f"{path}: not a QTM force export ({exc})") from None
    columns = lines[col].rstrip("\r\n").split("\t")
    try:
        cols = [columns.index(c) for c in ("TIME", "Force_X", "Force_Y", "Force_Z")]
    except ValueError:
        raise ImportError_(f"{path}: the column line lacks TIME or Force_X/Y/Z") from None
    try:
        table = np.array([[float(r[c]) for c in cols] for r in (line.split("\t") for line in lines[col + 1:]
                                                                 if line.strip())])
    except (ValueError, IndexError) as exc:
        raise ImportError_(f"{path}: not a number in the force table ({exc})") from None
    name = (head.get("FORCE_PLATE_NAME") or [Path(path).stem])[0]
    return np.round(table[:, 0] * 1e9).astype(np.int64), table[:, 1:4], rate, name


def vertical_force(plates: list[np.ndarray], rate: float, lowpass_hz: float = LOWPASS_HZ) -> np.ndarray:
    """The plates' summed vertical ground force in N (module docstring: sign, zero, filter). A plate
    whose unloaded samples all read the same value has been zeroed and cleaned by the lab's software
    (it has no noise to remove), so it is not filtered: a filter would only smear its contacts' edges."""
    total = np.zeros(len(plates[0]))
    for fz in plates:
        f = np.asarray(fz, dtype=float)
        if np.mean(f) < 0:  # the force on the plate: the body's weight comes out negative
            f = -f
        quiet = np.sort(f)[: max(2, len(f) // 10)]
        if float(np.ptp(quiet)) > 0.0:
            f = _lowpass(f, rate, lowpass_hz)
            quiet = np.sort(f)[: max(2, len(f) // 10)]
        total += f - float(np.median(quiet))
    return total


def _lowpass(f: np.ndarray, rate: float, cutoff_hz: float) -> np.ndarray:
    try:
        from scipy.signal import butter, filtfilt
    except ModuleNotFoundError:
        raise ImportError_("noisy force plates need scipy to filter: pip install 'poserun[lab]'") from None
    b, a = butter(1, min(cutoff_hz / (rate / 2), 0.99))
    return np.asarray(filtfilt(b, a, f))


def stance_foot(xyz: np.ndarray, up: int, up_sign: float, feet: dict[str, list[int]], k: int) -> str | None:
    """The foot whose lowest foot marker is lower in marker frame ``k`` (None if either is missing)."""
    height = {}
    for side, idx in feet.items():
        h = up_sign * xyz[k, idx, up]
        if not np.isfinite(h).any():
            return None
        height[side] = float(np.nanmin(h))
    if len(height) < 2:
        return None
    return "left" if height["left"] < height["right"] else "right"


def import_qtm(path: str | Path, force_paths: list[str | Path], *, session: str, athlete: str, up: str = "+z",
               forward: str = "+y", threshold_n: float = THRESHOLD_N, markers: str | Path | None = None,
               frame_ms: float = 10.0) -> tuple[list[RecordedMessage], dict[str, object]]:
    """The recording's messages, and what was found (marker count, roles, plates, contacts per foot)."""
    times, xyz, names, rate = read_qtm_markers(path)
    roles = resolve(names, markers)
    messages = marker_messages(session, athlete, times, xyz, names, rate, up=up, forward=forward, roles=roles,
                               device=f"QTM markers from {Path(path).name}", frame_ms=frame_ms)
    info: dict[str, object] = {"markers": len(names), "rate_hz": rate, "plates": [], "contacts": {},
                               "roles": roles}
    if not force_paths:
        return messages, info
    plates, f_rate, f_times = [], None, None
    for fp in force_paths:
        t, force, r, name = read_qtm_force(fp)
        if f_rate is not None and (r != f_rate or len(t) != len(f_times)):  # type: ignore[arg-type]
            raise ImportError_(f"{fp}: {len(t)} samples at {r:g} Hz, the other plates have {len(f_times)} at "  # type: ignore[arg-type]
                               f"{f_rate:g} Hz")
        plates.append(force[:, 2])
        f_rate, f_times = r, t
        info["plates"].append(name)  # type: ignore[attr-defined]
    assert f_rate is not None and f_times is not None
    vgrf = vertical_force(plates, f_rate)
    feet = foot_indices(names, roles)
    if len(feet) < 2:
        raise ImportError_(f"{path}: no heel, toe or ankle markers on both sides to tell the feet apart "
                           f"(found {sorted(feet)}; name them in --markers)")
    truth, info["contacts"] = plate_truth(session, athlete, f_times, vgrf, f_rate, times, xyz, feet, up, threshold_n)
    return messages + truth, info


def plate_truth(session: str, athlete: str, f_times: np.ndarray, vgrf: np.ndarray, f_rate: float,
                times: np.ndarray, xyz: np.ndarray, feet: dict[str, list[int]], up: str, threshold_n: float
                ) -> tuple[list[RecordedMessage], dict[str, int]]:
    """Truth events from the summed vertical force (contacts above ``threshold_n`` for the minimum
    contact), each given to the foot whose foot markers are lower at mid-contact; and the counts."""
    up_axis, up_sign = "xyz".index(up[-1]), -1.0 if up.startswith("-") else 1.0
    truth_topic = topics.athlete_topic(session, athlete, "truth")
    counts = {"left": 0, "right": 0, "unknown": 0}
    out = []
    for ic, to in force_contacts(vgrf, f_rate, threshold_n, min_contact_s=MIN_CONTACT_S, min_gap_s=0.0):
        mid = (int(f_times[ic]) + int(f_times[to])) // 2
        k = int(np.clip(np.searchsorted(times, mid), 0, len(times) - 1))
        foot = stance_foot(xyz, up_axis, up_sign, feet, k)
        if foot is None:
            counts["unknown"] += 1
            continue
        counts[foot] += 1
        ev = wm.TruthEvent(foot=foot, step=len(out), ic_ns=int(f_times[ic]), to_ns=int(f_times[to]),  # type: ignore[arg-type]
                           source="force plate")
        out.append(RecordedMessage(truth_topic, wm.dump(ev), int(f_times[to]), qos=1))
    return out, counts


