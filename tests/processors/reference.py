"""Slow, obvious twins of the kernels, written for clarity, not speed."""

from __future__ import annotations

import math

import numpy as np

from poserun.processors.keypoints import G, joint


def contact_events(times: list[int], force: list[float], on: float, off: float,
                   min_stance_ns: float, min_swing_ns: float) -> list[tuple[float, float, float, float]]:
    """(kind, time, ic, peak) rows exactly as documented in processors/contact.py."""
    events = []
    in_contact = False
    ic = 0.0
    peak = 0.0
    last_to = -1e30
    prev = None
    for t, f in zip(times, force, strict=True):
        t = float(t)
        if not in_contact:
            rising = prev is None or prev[1] < on
            if f >= on and rising:
                if prev is None:
                    start = t
                else:
                    pt, pf = prev
                    frac = 1.0 if f == pf else min(max((on - pf) / (f - pf), 0.0), 1.0)
                    start = pt + frac * (t - pt)
                if start - last_to >= min_swing_ns:
                    in_contact, ic, peak = True, start, f
                    events.append((1.0, start, start, f))
        else:
            peak = max(peak, f)
            if f < off:
                pt, pf = prev  # type: ignore[misc]
                frac = 1.0 if f == pf else min(max((off - pf) / (f - pf), 0.0), 1.0)
                to = pt + frac * (t - pt)
                in_contact = False
                if to - ic >= min_stance_ns:
                    last_to = to
                    events.append((2.0, to, ic, peak))
                else:
                    events.append((3.0, to, ic, peak))
        prev = (t, f)
    return events


REGIONS = ("heel", "midfoot", "ball", "toes")


def insole_metrics(times: list[int], cells: list[list[float]], region: list[int], along: list[float],
                   ic: float, to: float, on: float, heel_n: float, bw: float) -> dict[str, float | None]:
    """The insole stance metrics, spelled out one by one."""
    totals = [sum(row) for row in cells]
    regs = [[sum(v for v, r in zip(row, region, strict=True) if r == k) for k in range(4)] for row in cells]
    first = next((i for i, f in enumerate(totals) if f >= on), None)
    if first is None or len(times) < 2 or to <= ic:
        return {}
    loads = regs[first]
    strike = max(range(4), key=lambda k: (loads[k], -k))
    out: dict[str, float | None] = {
        "strike": float(strike),
        "cop": sum(v * a for v, a in zip(cells[first], along, strict=True)) / totals[first],
    }
    peak = max(totals)
    heel_peak = max(r[0] for r in regs)
    out["heel_contact"] = 1.0 if heel_peak >= heel_n else 0.0
    out["heel_frac"] = heel_peak / peak
    imp = sum(0.5 * (totals[i] + totals[i + 1]) * (times[i + 1] - times[i]) for i in range(len(times) - 1))
    imp_ball = sum(0.5 * (regs[i][2] + regs[i + 1][2]) * (times[i + 1] - times[i]) for i in range(len(times) - 1))
    out["ball_frac"] = imp_ball / imp
    ball = [r[2] for r in regs]
    k = ball.index(max(ball))
    out["release_s"] = (to - times[k]) / 1e9
    out["release_ratio"] = (to - times[k]) / (to - ic)
    late = [i for i, t in enumerate(times) if t >= ic + 0.7 * (to - ic)]
    out["toe_pushoff"] = sum(regs[i][3] for i in late) / sum(totals[i] for i in late)
    t20 = ic + 0.2 * (to - ic)
    for i in range(len(times) - 1):
        if times[i] <= t20 <= times[i + 1]:
            f20 = totals[i] + (t20 - times[i]) / (times[i + 1] - times[i]) * (totals[i + 1] - totals[i])
            out["loading_rate"] = f20 / (0.2 * (to - ic) / 1e9) / bw
            break
    out["peak"] = peak
    return out


def strapdown_vz(times: list[int], imu: list[list[float]], still_acc: float, still_gyr: float,
                 still_min: int, g: float = 9.80665) -> list[float]:
    """Vertical velocity by the book: tilt from gravity when still, quaternion steps otherwise."""
    import math

    q = [1.0, 0.0, 0.0, 0.0]
    v = 0.0
    run = 0
    init = False
    prev_t = None
    out = []

    def mul(a: list[float], b: list[float]) -> list[float]:
        return [a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
                a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
                a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
                a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]]

    for t, (ax, ay, az, gx, gy, gz) in zip(times, imu, strict=True):
        amag = math.sqrt(ax * ax + ay * ay + az * az)
        quiet = abs(amag - g) < still_acc and math.sqrt(gx * gx + gy * gy + gz * gz) < still_gyr
        run = run + 1 if quiet else 0
        if run >= still_min:
            ux, uy, uz = ax / amag, ay / amag, az / amag
            s = math.hypot(uy, ux)
            angle = math.atan2(s, uz)
            q = [math.cos(angle / 2), uy / s * math.sin(angle / 2), -ux / s * math.sin(angle / 2), 0.0]
            v = 0.0
            init = True
        elif init and prev_t is not None and 0 < (t - prev_t) / 1e9 < 0.1:
            dt = (t - prev_t) / 1e9
            q = mul(q, [1.0, gx * dt / 2, gy * dt / 2, gz * dt / 2])
            n = math.sqrt(sum(c * c for c in q))
            q = [c / n for c in q]
            w, x, y, z = q
            # third row of the rotation matrix of q
            wz = 2 * (x * z - w * y) * ax + 2 * (y * z + w * x) * ay + (1 - 2 * (x * x + y * y)) * az
            v += (wz - g) * dt
        out.append(v if init else math.nan)
        prev_t = t
    return out


# ---- camera geometry: the numpy version the kernels in processors/keypoints.py replaced

def interp_ref(times_ns: np.ndarray, values: np.ndarray, t: float) -> float:
    """Linear interpolation over finite samples; NaN when ``t`` is not bracketed within 50 ms."""
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return math.nan
    tt, vv = times_ns[ok].astype(np.float64), values[ok]
    if t < tt[0] or t > tt[-1]:
        return math.nan
    k = int(np.searchsorted(tt, t))
    if k > 0 and (tt[min(k, len(tt) - 1)] - tt[k - 1]) > 50e6:
        return math.nan
    return float(np.interp(t, tt, vv))


def angle_deg_ref(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Angle at b (degrees) between b->a and b->c."""
    u, v = a - b, c - b
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if not (nu > 0 and nv > 0):
        return math.nan
    return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / (nu * nv)))))


def frame_at_ref(times_ns: np.ndarray, pts: np.ndarray, t: float) -> np.ndarray:
    """All joints at time ``t`` (8, 2): linear between the two frames around it; a joint missing
    in either frame falls back to its nearest confident frames (``_interp``)."""
    k = int(np.searchsorted(times_ns, t))
    if 0 < k < len(times_ns) and times_ns[k] - times_ns[k - 1] <= 50e6:
        w = (t - times_ns[k - 1]) / (times_ns[k] - times_ns[k - 1])
        out = pts[k - 1] + w * (pts[k] - pts[k - 1])
    else:
        out = np.full(pts.shape[1:], np.nan)
    bad = ~np.isfinite(out)
    if bad.any():
        for j, c in zip(*np.nonzero(bad), strict=True):
            out[j, c] = interp_ref(times_ns, pts[:, j, c], t)
    return out


def _line_angle_ref(top: np.ndarray, bottom: np.ndarray) -> float:
    """Angle from vertical (degrees, + forward) of the line from ``bottom`` up to ``top``."""
    d = top - bottom
    return math.degrees(math.atan2(d[0], d[1])) if np.all(np.isfinite(d)) else math.nan


def fall_ref(times_ns: np.ndarray, pts: np.ndarray, foot: str, ic_ns: float, to_ns: float,
             toes: np.ndarray | None = None) -> tuple[float, float]:
    """(fall angle at TO, median waist bend over the fall): the support point is the toe where
    known, else the ankle; the fall starts at the first stance frame with the hips at or ahead of it."""
    side = 0 if foot == "left" else 1
    support = pts[:, [2, 6], :]
    if toes is not None:  # per foot: its toe if ever seen (gaps interpolated), else its ankle
        support = support.copy()
        for k in range(2):
            if np.isfinite(toes[:, k]).all(axis=1).any():
                support[:, k] = toes[:, k]
    at_to, sup_to = frame_at_ref(times_ns, pts, to_ns), frame_at_ref(times_ns, support, to_ns)[side]

    def bend(frame: np.ndarray, sup: np.ndarray) -> float:
        hip, sh = 0.5 * (frame[0] + frame[4]), 0.5 * (frame[3] + frame[7])
        return _line_angle_ref(sh, hip) - _line_angle_ref(hip, sup)

    hips = 0.5 * (pts[:, 0] + pts[:, 4])
    inside = np.nonzero((times_ns >= ic_ns) & (times_ns < to_ns))[0]
    ahead = [i for i in inside if hips[i, 0] - support[i, side, 0] >= 0]
    frames = inside[inside >= ahead[0]] if ahead else inside[:0]
    fell = bool(ahead) or 0.5 * (at_to[0, 0] + at_to[4, 0]) - sup_to[0] >= 0  # no fall, no bend over it
    bends = [bend(pts[i], support[i, side]) for i in frames] + ([bend(at_to, sup_to)] if fell else [])
    bends = [b for b in bends if math.isfinite(b)]
    fall = _line_angle_ref(0.5 * (at_to[0] + at_to[4]), sup_to)
    if not math.isfinite(fall):  # the stance's last frame with the joints, within 50 ms of TO
        late = np.nonzero((times_ns <= to_ns) & (times_ns >= max(ic_ns, to_ns - 50e6)))[0]
        angles = [_line_angle_ref(hips[i], support[i, side]) for i in late]
        fall = next((a for a in reversed(angles) if math.isfinite(a)), math.nan)
    return fall, float(np.median(bends)) if bends else math.nan


def stance_geometry_ref(times_ns: np.ndarray, pts: np.ndarray, foot: str, ic_ns: float, to_ns: float,
                    stride_start_ns: float | None, leg_length_m: float,
                    toes: np.ndarray | None = None) -> dict[str, float | None]:
    """Camera metrics for one stance of ``foot``; None where the keypoints cannot support one."""
    hips = 0.5 * (joint(pts, "left", "hip") + joint(pts, "right", "hip"))
    ankle = joint(pts, foot, "ankle")
    knee = joint(pts, foot, "knee")
    hip_s = joint(pts, foot, "hip")
    mid = 0.5 * (ic_ns + to_ns)
    out: dict[str, float | None] = {}
    f = (0 if foot == "left" else 4)  # joint offset of the support side
    o = (4 if foot == "left" else 0)
    at_ic = frame_at_ref(times_ns, pts, ic_ns)
    at_mid = frame_at_ref(times_ns, pts, mid)

    hip_ic = 0.5 * (at_ic[0] + at_ic[4])
    ankle_ic = at_ic[f + 2]
    over = ankle_ic[0] - hip_ic[0]
    out["overstride_m"] = over
    out["overstride_ratio"] = over / leg_length_m
    out["knee_flexion_ic_deg"] = 180.0 - angle_deg_ref(at_ic[f], at_ic[f + 1], ankle_ic)
    m = (times_ns >= ic_ns) & (times_ns <= to_ns)
    u, v = hip_s[m] - knee[m], ankle[m] - knee[m]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    flex = 180.0 - np.degrees(np.arccos(np.clip(cos[np.isfinite(cos)], -1.0, 1.0)))
    out["knee_flexion_min_deg"] = float(flex.min()) if len(flex) else math.nan
    fall, bend = fall_ref(times_ns, pts, foot, ic_ns, to_ns, toes)
    out["fall_angle_deg"] = fall
    out["waist_bend_deg"] = bend
    hip_m, ankle_m = 0.5 * (at_mid[0] + at_mid[4]), at_mid[f + 2]
    swing_m = at_mid[o + 2]
    out["pull_height_m"] = swing_m[1] - ankle_m[1]
    out["pull_under_hip_m"] = swing_m[0] - hip_m[0]
    if stride_start_ns is not None:
        w = (times_ns >= stride_start_ns) & (times_ns <= ic_ns) & np.isfinite(hips[:, 1])
        span = (times_ns[w][-1] - times_ns[w][0]) if w.sum() >= 2 else 0
        covered = span > 0.6 * (ic_ns - stride_start_ns)
        out["vertical_oscillation_m"] = float(np.ptp(hips[w, 1])) if covered else math.nan
    else:
        out["vertical_oscillation_m"] = math.nan
    return {k: (None if v is None or not math.isfinite(v) else round(float(v), 4)) for k, v in out.items()}


def slope_ref(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x (closed form; np.polyfit costs ten times more)."""
    xm = x.mean()
    dx = x - xm
    den = float(dx @ dx)
    return float(dx @ (y - y.mean())) / den if den > 0 else math.nan


def fall_velocity_at_ref(times_ns: np.ndarray, z: np.ndarray, t_ns: float, window_ns: float = 70e6,
                     until_ns: float | None = None) -> float:
    """Downward velocity (m/s, + down) at ``t_ns`` of a point in free fall before it, from the
    frames up to ``until_ns`` (default ``t_ns``): gravity known, so extrapolating is exact."""
    end = t_ns if until_ns is None else until_ns
    m = (times_ns <= end) & (times_ns >= end - window_ns) & np.isfinite(z)
    if m.sum() < 2:
        return math.nan
    t = (times_ns[m] - t_ns) / 1e9
    return -slope_ref(t, z[m] + 0.5 * G * t * t)


def point_velocity_at_ref(times_ns: np.ndarray, z: np.ndarray, t_ns: float, window_ns: float = 40e6,
                      until_ns: float | None = None) -> float:
    """Downward velocity (m/s, + down) from the last samples before ``t_ns`` (straight line)."""
    end = t_ns if until_ns is None else until_ns
    m = (times_ns <= end) & (times_ns >= end - window_ns) & np.isfinite(z)
    if m.sum() < 2:
        return math.nan
    t = (times_ns[m] - t_ns) / 1e9
    return -slope_ref(t, z[m])


def landing_velocities_ref(times_ns: np.ndarray, pts: np.ndarray, foot: str, ic_ns: float,
                       until_ns: float | None = None) -> tuple[float, float]:
    """(body fall velocity from the hips, foot landing velocity from the ankle), m/s, + down,
    from the frames up to ``until_ns`` (default: IC)."""
    hips_z = 0.5 * (joint(pts, "left", "hip")[:, 1] + joint(pts, "right", "hip")[:, 1])
    ankle_z = joint(pts, foot, "ankle")[:, 1]
    return (fall_velocity_at_ref(times_ns, hips_z, ic_ns, until_ns=until_ns),
            point_velocity_at_ref(times_ns, ankle_z, ic_ns, until_ns=until_ns))


# ---- trunk accelerometer

def vertical_force_ref(times: list[int], acc: list[list[float]], tau_s: float) -> list[float]:
    """Specific force along the running-mean (then exponential-mean) gravity direction, in its
    own length: the twin of processors/pelvis.py's vertical_force_kernel."""
    out = []
    mean = None
    t0 = prev = 0.0
    for t, (ax, ay, az) in zip(times, acc, strict=True):
        t = float(t)
        if not all(math.isfinite(v) for v in (ax, ay, az)):
            out.append(math.nan)
            continue
        if mean is None:
            mean, t0 = [ax, ay, az], t
        else:
            dt, elapsed = (t - prev) / 1e9, (t - t0) / 1e9
            k = dt / tau_s if elapsed >= tau_s else (dt / (elapsed + dt) if elapsed + dt > 0.0 else 0.0)
            k = min(max(k, 0.0), 1.0) if k == k else 0.0
            mean = [m + k * (v - m) for m, v in zip(mean, (ax, ay, az), strict=True)]
        prev = t
        g2 = sum(m * m for m in mean)
        out.append((ax * mean[0] + ay * mean[1] + az * mean[2]) / g2 if g2 > 0 else math.nan)
    return out


def pose_score_ref(metrics: dict, weights: dict | None = None) -> tuple[float | None, dict[str, float]]:
    """The pose score spelled out: magnitudes first, then each weighted rule."""
    from poserun.processors.score import DEFAULT_WEIGHTS, RULES, rule_score

    w = DEFAULT_WEIGHTS if weights is None else weights
    derived = {}
    for name, (target, kind) in {"waist_bend_deg": ("waist_bend_forward_deg", "forward"),
                                 "pull_under_hip_m": ("pull_under_hip_abs_m", "abs")}.items():
        v = metrics.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            derived[target] = abs(float(v)) if kind == "abs" else (float(v) if v > 0 else 0.0)
    breakdown, total, weight = {}, 0.0, 0.0
    for rule, (metric, good, bad) in RULES.items():
        value = derived[metric] if metric in derived else metrics.get(metric)
        rw = float(w.get(rule, 0.0))
        if rw <= 0 or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        s = rule_score(float(value), good, bad)
        breakdown[rule] = round(s, 3)
        total += rw * s
        weight += rw
    return (None, breakdown) if weight == 0 else (round(100.0 * total / weight, 1), breakdown)


# ---- camera contact events: the plain-Python statement of camera_events_kernel's rules

def camera_events_ref(times: list[int], z: list[list[float]], zt: list[list[float]], touch: float, lift: float,
                      drift: float, min_stance_ns: float, min_swing_ns: float,
                      back_to_ground: bool, sole: bool = False, swing: float = 0.03,
                      ring: int = 16) -> list[tuple[float, ...]]:
    """Both feet (``z[i] = [left, right]``): IC when ``z`` comes down through its ground level +
    ``touch`` or, with ``sole``, at the touchdown of a descent of at least ``swing`` that stopped
    within ``swing`` of the ground level: the last of the ``ring`` samples before the stop that is
    ``touch`` above it, carried on along that step's slope to the stop's height; TO when ``zt``
    rises through its own ground level + ``lift`` (optionally carried back along the slope to the
    ground level); a ground level is the lowest height seen, rising at ``drift`` m/s; no IC before
    the foot has stood (within ``touch`` of ``zt``'s ground for the minimum stance) and lifted off
    once (that lift a TO: the next IC at least ``min_swing_ns`` later), or the other foot has, whose
    ground levels it then takes."""
    out: list[tuple[float, ...]] = []
    feet = [{"ground": {"z": None, "t": None}, "prev": {"z": None, "t": None}, "inside": False, "ic": 0.0,
             "last_to": -1e30, "armed": False, "low_since": None, "seen": [], "top": -math.inf,
             "falling": False} for _ in range(2)]

    def touchdown(seen: list[tuple[float, float]], low: float, low_t: float) -> float:
        newer = (low_t, low)
        lvl = low + touch
        for tj, zj in reversed(seen[-ring:]):
            if zj >= lvl > newer[1] and newer[0] > tj:
                rate = (zj - newer[1]) / (newer[0] - tj)
                return min(tj + (zj - lvl) / rate + touch / rate, low_t)
            newer = (tj, zj)
        return low_t

    def level(f: dict, key: str, t: float, v: float) -> float:
        g = f["ground"][key]
        if g is None:
            g = v
        else:
            p = f["prev"][key]
            if p is not None and t > p[0]:
                g += drift * (t - p[0]) / 1e9
            g = min(g, v)
        f["ground"][key] = g
        return g

    for i, t_i in enumerate(times):
        t = float(t_i)
        for k in range(2):
            f, other = feet[k], feet[1 - k]
            zi, wi = z[i][k], zt[i][k]
            was_in = f["inside"]
            if not f["armed"] and other["armed"] and f["prev"]["z"] is not None and f["prev"]["t"] is not None:
                f["ground"] = dict(other["ground"])
                f["armed"] = True
            if math.isfinite(zi):
                g = level(f, "z", t, zi)
                p = f["prev"]["z"]
                if p is not None and not was_in and f["armed"]:
                    if sole:
                        stopped = f["falling"] and zi >= p[1]
                        if stopped and f["top"] - p[1] >= swing and p[1] <= g + swing:
                            ic = touchdown(f["seen"], p[1], p[0])
                            if ic - f["last_to"] >= min_swing_ns:
                                f["inside"], f["ic"] = True, ic
                                out.append((1.0, ic, ic, float(k)))
                    elif zi <= g + touch < p[1]:
                        cross = p[0] + (p[1] - (g + touch)) / (p[1] - zi) * (t - p[0])
                        if cross - f["last_to"] >= min_swing_ns:
                            f["inside"], f["ic"] = True, cross
                            out.append((1.0, cross, cross, float(k)))
                f["falling"] = p is not None and zi < p[1]
                f["top"] = max(f["top"], zi)
                f["seen"] = [*f["seen"][-ring + 1:], (t, zi)]
                f["prev"]["z"] = (t, zi)
            if math.isfinite(wi):
                g = level(f, "t", t, wi)
                p = f["prev"]["t"]
                if not f["armed"]:
                    if wi <= g + touch:
                        f["low_since"] = t if f["low_since"] is None else f["low_since"]
                    elif wi > g + lift:
                        if f["low_since"] is not None and t - f["low_since"] >= min_stance_ns:
                            f["armed"], f["last_to"] = True, t  # the lift is a TO: the next IC a swing later
                        f["low_since"] = None
                if p is not None and was_in and p[1] < g + lift <= wi:
                    cross = p[0] + (g + lift - p[1]) / (wi - p[1]) * (t - p[0])
                    if back_to_ground and t > p[0]:
                        cross = max(cross - lift / ((wi - p[1]) / (t - p[0])), f["ic"])
                    if cross - f["ic"] >= min_stance_ns:
                        f["inside"], f["last_to"], f["top"] = False, cross, -math.inf
                        out.append((2.0, cross, f["ic"], float(k)))
                f["prev"]["t"] = (t, wi)
    return out


# ---- shank accelerometer

def shank_events_ref(times: list[int], acc: list[list[float]], tau_s: float, impact: float,
                     min_stance_ns: float, max_stance_ns: float, min_swing_ns: float
                     ) -> list[tuple[float, float, float, float]]:
    """The twin of processors/shank.py: first the per-sample signals, then the swing/impact/stance
    walk over them; (kind, time, ic, peak) rows."""
    g0 = 9.80665

    def vertex(y0: float, y1: float, y2: float) -> float:
        den = y0 - 2.0 * y1 + y2
        if den == 0.0 or not math.isfinite(den):
            return 0.0
        return min(0.5, max(-0.5, 0.5 * (y0 - y2) / den))

    # 1. the signals: gravity as a running then exponential mean, the dynamic size, the lift along gravity
    samples = []  # (t, period, dyn, up, usable)
    mean: list[float] | None = None
    t0 = prev = 0.0
    for t, (ax, ay, az) in zip(times, acc, strict=True):
        if not all(math.isfinite(v) for v in (ax, ay, az)):
            continue
        t = float(t)
        period = t - prev if mean is not None else 0.0
        if mean is None:
            mean, t0 = [ax, ay, az], t
        else:
            dt, elapsed = (t - prev) / 1e9, (t - t0) / 1e9
            k = dt / tau_s if elapsed >= tau_s else (dt / (elapsed + dt) if elapsed + dt > 0.0 else 0.0)
            k = min(max(k, 0.0), 1.0) if k > 0.0 else 0.0
            mean = [m + k * (v - m) for m, v in zip(mean, (ax, ay, az), strict=True)]
        gn = math.sqrt(mean[0] ** 2 + mean[1] ** 2 + mean[2] ** 2)
        if gn < 1e-6:
            prev = t
            continue
        up = (ax * mean[0] + ay * mean[1] + az * mean[2]) / gn - gn
        settled = t - t0 >= tau_s * 0.5e9
        if settled:
            dyn = math.sqrt((ax - mean[0]) ** 2 + (ay - mean[1]) ** 2 + (az - mean[2]) ** 2)
        else:
            dyn = abs(math.sqrt(ax * ax + ay * ay + az * az) - g0)
        samples.append((t, period, dyn, up, bool(samples) and (settled or 0.5 * g0 <= gn <= 2.0 * g0)))
        prev = t

    # 2. the walk
    events: list[tuple[float, float, float, float]] = []
    mode = "swing"
    last_to = -1e30
    trough: list[float] | None = None  # [t, value, value before, value after]
    peak = peak_t = ic = 0.0
    low: list[float] = []  # [t, value, value before, value after] of the deepest deceleration
    prev_dyn = prev_up = 0.0
    for t, period, dyn, up, usable in samples:
        if usable:
            if mode == "swing":
                if trough is None or dyn < prev_dyn:
                    trough = [t, dyn, prev_dyn, math.nan]
                elif math.isnan(trough[3]):
                    trough[3] = dyn
                if dyn >= impact > prev_dyn and t - last_to >= min_swing_ns:
                    mode, peak, peak_t = "impact", dyn, t
            elif mode == "impact":
                if dyn > peak:
                    peak, peak_t = dyn, t
                else:
                    assert trough is not None
                    ic = trough[0]
                    if ic != peak_t:
                        ic += vertex(trough[2], trough[1], trough[3]) * period
                    mode, low = "stance", []
                    events.append((1.0, ic, ic, peak))
            else:
                since = t - ic
                if since >= min_stance_ns:
                    if not low or up < low[1]:
                        low = [t, up, prev_up, math.nan]
                    elif math.isnan(low[3]):
                        low[3] = up
                if since >= max_stance_ns and low:
                    step = vertex(low[2], low[1], low[3]) if math.isfinite(low[3]) else 0.0
                    to = low[0] + step * period
                    last_to, mode, trough = to, "swing", None
                    events.append((2.0, to, ic, low[1]))
        prev_dyn, prev_up = dyn, up
    return events
