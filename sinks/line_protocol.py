"""A stance record as one point of the InfluxDB line protocol (sans-I/O: a record in, a line out).

``poserun_stance,session=S,athlete=A,foot=left support_time_s=0.2546,heel_contact=true,... 1796164891304``

Tags: session, athlete, foot. Fields: every number of the stance (``None`` and NaN/inf left out),
its booleans (``true``/``false``) and the numbers of its dict fields flattened with ``_``
(``symmetry_pct_support_time_s``, ``pose_score_breakdown_R4_no_forced_landing``). Strings (strike
zone, sources), lists (pressure map, pose) and the record's own clocks (``ic_ns``, ``to_ns``,
``emitted_ns``: nanosecond integers a float store would round) are not fields. The timestamp is
the record's ``emitted_ns`` (the service's wall clock) in milliseconds.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

TAGS = ("session", "athlete", "foot")
NOT_FIELDS = frozenset({"type", "id", "ic_ns", "to_ns", "emitted_ns", *TAGS})


class BadRecord(ValueError):
    """A stance that cannot be a point (no athlete or foot, no number at all, no timestamp)."""


def _escape_key(text: str) -> str:
    """Measurement, tag key, tag value and field key escaping: comma, equals sign, space (a line
    break cannot be escaped: :class:`BadRecord`)."""
    if "\n" in text or "\r" in text:
        raise BadRecord(f"a line break in {text!r}")
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    """A measurement escapes only comma and space (an escaped ``=`` there would be stored with its
    backslash)."""
    if "\n" in text or "\r" in text:
        raise BadRecord(f"a line break in {text!r}")
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Real):  # (numpy's numbers too)
        f = float(value)
        return repr(f) if math.isfinite(f) else None  # (the protocol has no NaN or infinity)
    return None


def fields(record: dict[str, Any]) -> dict[str, str]:
    """The record's field set: key -> the protocol's text for the value, sorted by key."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if key in NOT_FIELDS:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                text = _number(v)
                if text is not None:
                    out[f"{key}_{sub}"] = text
            continue
        text = _number(value)
        if text is not None:
            out[key] = text
    return dict(sorted(out.items()))


def stance_point(record: dict[str, Any], measurement: str = "poserun_stance",
                 timestamp_ms: int | None = None) -> str:
    """One line (without the newline) for a stance record; ``timestamp_ms`` overrides the record's
    ``emitted_ns``. Raises :class:`BadRecord` saying what is missing."""
    tags = []
    for key in TAGS:
        value = record.get(key)
        if key == "session" and value is None:
            continue  # (a record that did not pass through the service has no session)
        if not isinstance(value, str) or not value:
            raise BadRecord(f"a stance without a {key} (got {value!r})")
        tags.append(f"{key}={_escape_key(value)}")
    if timestamp_ms is None:
        emitted = record.get("emitted_ns")
        if isinstance(emitted, bool) or not isinstance(emitted, int):
            raise BadRecord(f"a stance without emitted_ns (got {emitted!r})")
        timestamp_ms = emitted // 1_000_000
    values = fields(record)
    if not values:
        raise BadRecord("a stance without a single number")
    body = ",".join(f"{_escape_key(k)}={v}" for k, v in values.items())
    return f"{_escape_measurement(measurement)},{','.join(tags)} {body} {timestamp_ms}"
