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
