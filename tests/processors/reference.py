"""Slow, obvious twins of the kernels, written for clarity, not speed."""

from __future__ import annotations


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
