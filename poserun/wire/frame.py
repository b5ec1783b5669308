"""The sensor frame: a compact binary form and an equivalent JSON form.

Binary layout (little-endian, 32-byte header, see docs/protocol.md)::

    0  2  magic b"PR"
    2  1  protocol version (1)
    3  1  stream kind (1 imu, 2 insole, 3 keypoints, 4 force)
    4  1  flags (bit 0: per-sample timestamps follow the header)
    5  1  reserved, 0
    6  2  channel count (uint16)
    8  4  sequence number (uint32, per source, wraps)
    12 4  sample count (uint32)
    16 8  t0_ns: timestamp of the first sample, gateway clock (int64)
    24 8  period_ns: sample period (int64); 0 when per-sample timestamps are sent
    32 .. [samples x int64 timestamps]  then  samples x channels float32

Decoding never raises anything but :class:`FrameError`; the body is a
read-only zero-copy ``numpy.frombuffer`` view of the payload.
Non-finite policy: a frame with any NaN or infinity is rejected whole
(``non_finite``); a missing keypoint is sent with confidence 0 instead.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from poserun.processors.checks import all_finite
from poserun.wire.errors import FrameError, Reason
from poserun.wire.streams import StreamKind

MAGIC = b"PR"
VERSION = 1
HEADER = struct.Struct("<2sBBBBHIIqq")
HEADER_SIZE = HEADER.size  # 32
FLAG_TIMESTAMPS = 0x01
MAX_FRAME_BYTES = 256 * 1024
MAX_CHANNELS = 1024
MAX_PERIOD_NS = 10_000_000_000
INT64_MAX = 2**63 - 1
_KINDS = {int(k) for k in StreamKind}
_KIND_OF = {int(k): k for k in StreamKind}
_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")


@dataclass(slots=True)
class Frame:
    """One decoded batch of samples from one source.

    ``data`` has shape (samples, channels), dtype float32; ``timestamps_ns``
    is set only when the gateway sent per-sample times.
    """

    kind: StreamKind
    seq: int
    t0_ns: int
    period_ns: int
    data: np.ndarray
    timestamps_ns: np.ndarray | None = None
    version: int = VERSION

    @property
    def samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def last_ns(self) -> int:
        """Timestamp of the last sample (t0 for an empty frame)."""
        if self.timestamps_ns is not None:
            return int(self.timestamps_ns[-1]) if self.samples else self.t0_ns
        return self.t0_ns + max(self.samples - 1, 0) * self.period_ns

    def times_ns(self) -> np.ndarray:
        """Per-sample timestamps (int64 ns), computed from the period if needed."""
        if self.timestamps_ns is not None:
            return self.timestamps_ns
        t0, period = self.t0_ns, self.period_ns
        return np.arange(t0, t0 + (self.data.shape[0] - 1) * period + 1, period, dtype=_I64)


def make_frame(
    kind: StreamKind,
    seq: int,
    t0_ns: int,
    data: np.ndarray,
    *,
    period_ns: int = 0,
    timestamps_ns: np.ndarray | None = None,
) -> Frame:
    """Build and validate a frame from arrays (what a gateway does before encoding)."""
    arr = np.ascontiguousarray(data, dtype=_F32)
    if arr.ndim != 2:
        raise FrameError(Reason.BAD_FIELD, "data must be 2-D (samples, channels)")
    ts = None if timestamps_ns is None else np.ascontiguousarray(timestamps_ns, dtype=_I64)
    frame = Frame(StreamKind(kind), int(seq), int(t0_ns), int(period_ns), arr, ts)
    _validate(frame)
    return frame


def encode(frame: Frame) -> bytes:
    """The binary form of a frame."""
    flags = FLAG_TIMESTAMPS if frame.timestamps_ns is not None else 0
    head = HEADER.pack(
        MAGIC, frame.version, int(frame.kind), flags, 0, frame.channels,
        frame.seq & 0xFFFFFFFF, frame.samples, frame.t0_ns,
        0 if flags else frame.period_ns,
    )
    parts = [head]
    if frame.timestamps_ns is not None:
        parts.append(np.asarray(frame.timestamps_ns, dtype=_I64).tobytes())
    parts.append(np.asarray(frame.data, dtype=_F32).tobytes())
    return b"".join(parts)


def pack(
    kind: StreamKind,
    seq: int,
    t0_ns: int,
    data: np.ndarray,
    *,
    period_ns: int = 0,
    timestamps_ns: np.ndarray | None = None,
) -> bytes:
    """Encode arrays straight to the binary form (a gateway's fast path, no checks).

    ``data`` must be float32 (samples, channels) holding finite values;
    :func:`make_frame` + :func:`encode` is the checked path.
    """
    samples, channels = data.shape
    flags = 0 if timestamps_ns is None else FLAG_TIMESTAMPS
    head = HEADER.pack(MAGIC, VERSION, int(kind), flags, 0, channels, seq & 0xFFFFFFFF,
                       samples, t0_ns, period_ns)
    if timestamps_ns is None:
        return head + data.astype(_F32, copy=False).tobytes()
    return head + timestamps_ns.astype(_I64, copy=False).tobytes() + data.astype(_F32, copy=False).tobytes()


def decode(payload: bytes | bytearray | memoryview, *, max_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Decode a binary or JSON frame; raise :class:`FrameError` with a reason."""
    size = len(payload)
    if size > max_bytes:
        raise FrameError(Reason.OVERSIZED, f"{size} bytes > limit {max_bytes}")
    if type(payload) is bytes and payload.startswith(MAGIC):
        return decode_binary(payload)
    if size >= 2 and bytes(payload[:2]) == MAGIC:
        return decode_binary(payload)
    if size and _first_non_space(payload) == ord("{"):
        return decode_json(payload)
    raise FrameError(Reason.NOT_A_FRAME, "payload starts with neither b'PR' nor '{'")


def _first_non_space(payload: bytes | bytearray | memoryview) -> int:
    for b in bytes(payload[:64]):
        if b not in b" \t\r\n":
            return b
    return -1


def decode_binary(payload: bytes | bytearray | memoryview) -> Frame:
    """Decode the binary form (zero-copy body).

    The common frame (period, no per-sample times, every field in range) takes
    a fast path; anything else goes through the field-by-field checks that name
    what is wrong."""
    buf = bytes(payload) if type(payload) is not bytes else payload
    if len(buf) >= HEADER_SIZE:
        magic, version, kind, flags, _res, channels, seq, samples, t0, period = HEADER.unpack_from(buf)
        if (magic == MAGIC and version == VERSION and flags == 0 and kind in _KIND_OF
                and 0 < channels <= MAX_CHANNELS and samples > 0 and t0 >= 0 and 0 < period <= MAX_PERIOD_NS
                and t0 + (samples - 1) * period <= INT64_MAX and len(buf) == HEADER_SIZE + 4 * samples * channels):
            data = np.frombuffer(buf, _F32, samples * channels, HEADER_SIZE).reshape(samples, channels)
            if not all_finite(data):
                raise FrameError(Reason.NON_FINITE, "NaN or infinity in the samples (policy: reject the frame)")
            return Frame(_KIND_OF[kind], seq, t0, period, data, None, version)
    return _decode_binary_checked(buf)


def _decode_binary_checked(buf: bytes) -> Frame:
    if len(buf) < HEADER_SIZE:
        raise FrameError(Reason.TRUNCATED, f"{len(buf)} bytes, header needs {HEADER_SIZE}")
    magic, version, kind, flags, _res, channels, seq, samples, t0, period = HEADER.unpack_from(
        buf
    )
    if magic != MAGIC:
        raise FrameError(Reason.NOT_A_FRAME, "bad magic")
    if version != VERSION:
        raise FrameError(Reason.UNKNOWN_VERSION, f"version {version}, this decoder speaks {VERSION}")
    if kind not in _KINDS:
        raise FrameError(Reason.UNKNOWN_STREAM, f"stream kind {kind}")
    if flags & ~FLAG_TIMESTAMPS:
        raise FrameError(Reason.BAD_FIELD, f"unknown flags 0x{flags:02x}")
    has_ts = bool(flags & FLAG_TIMESTAMPS)
    ts_bytes = 8 * samples if has_ts else 0
    expected = HEADER_SIZE + ts_bytes + 4 * samples * channels
    if len(buf) < expected:
        raise FrameError(
            Reason.TRUNCATED, f"{len(buf)} bytes, header promises {expected} "
            f"({samples} samples x {channels} channels)"
        )
    if len(buf) > expected:
        raise FrameError(
            Reason.COUNT_MISMATCH, f"{len(buf)} bytes, header promises {expected} "
            f"({samples} samples x {channels} channels)"
        )
    ts = (
        np.frombuffer(buf, dtype=_I64, count=samples, offset=HEADER_SIZE) if has_ts else None
    )
    data = np.frombuffer(buf, dtype=_F32, count=samples * channels,
                         offset=HEADER_SIZE + ts_bytes).reshape(samples, channels)
    frame = Frame(StreamKind(kind), seq, t0, period, data, ts, version)
    _validate(frame)
    return frame


def _validate(frame: Frame) -> None:
    """Checks shared by both forms and by :func:`make_frame`."""
    if frame.version != VERSION:
        raise FrameError(Reason.UNKNOWN_VERSION, f"version {frame.version}")
    if not 1 <= frame.channels <= MAX_CHANNELS:
        raise FrameError(Reason.BAD_FIELD, f"channel count {frame.channels} not in 1..{MAX_CHANNELS}")
    if frame.samples < 1:
        raise FrameError(Reason.BAD_FIELD, "a frame needs at least one sample")
    if not 0 <= frame.seq <= 0xFFFFFFFF:
        raise FrameError(Reason.BAD_FIELD, f"sequence {frame.seq} outside uint32")
    if frame.t0_ns < 0:
        raise FrameError(Reason.BAD_FIELD, f"t0_ns {frame.t0_ns} is negative")
    if frame.timestamps_ns is None:
        if not 0 < frame.period_ns <= MAX_PERIOD_NS:
            raise FrameError(Reason.BAD_FIELD, f"period_ns {frame.period_ns} not in 1..{MAX_PERIOD_NS}")
        if frame.t0_ns + (frame.samples - 1) * frame.period_ns > INT64_MAX:
            raise FrameError(Reason.BAD_FIELD, "the last sample's time is beyond int64")
    else:
        ts = frame.timestamps_ns
        if ts.shape != (frame.samples,):
            raise FrameError(Reason.COUNT_MISMATCH, f"{ts.shape[0]} timestamps for {frame.samples} samples")
        if frame.period_ns != 0:
            raise FrameError(Reason.BAD_FIELD, "period_ns must be 0 with per-sample timestamps")
        if int(ts[0]) != frame.t0_ns:
            raise FrameError(Reason.BAD_FIELD, "t0_ns differs from the first timestamp")
        if ts.shape[0] > 1 and bool(np.any(np.diff(ts) <= 0)):
            raise FrameError(Reason.TIME_BACKWARDS, "per-sample timestamps must strictly increase")
    if not all_finite(frame.data):
        raise FrameError(Reason.NON_FINITE, "NaN or infinity in the samples (policy: reject the frame)")


# ---------------------------------------------------------------- JSON form

def to_json_obj(frame: Frame) -> dict[str, Any]:
    """The JSON form as a dict (same fields as the binary header)."""
    obj: dict[str, Any] = {
        "v": frame.version,
        "kind": frame.kind.label,
        "seq": frame.seq,
        "t0_ns": frame.t0_ns,
        "samples": frame.samples,
        "channels": frame.channels,
    }
    if frame.timestamps_ns is not None:
        obj["t_ns"] = [int(t) for t in frame.timestamps_ns]
    else:
        obj["period_ns"] = frame.period_ns
    obj["data"] = frame.data.astype(float).tolist()
    return obj


def encode_json(frame: Frame) -> bytes:
    """The JSON form as UTF-8 bytes. Float32 values round-trip exactly."""
    return json.dumps(to_json_obj(frame), separators=(",", ":")).encode()


def _int_field(obj: dict[str, Any], name: str, *, required: bool = True) -> int:
    value = obj.get(name)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(Reason.BAD_FIELD, f"field {name!r} must be an integer, got {value!r:.40}")
    if not -(2**63) <= value < 2**63:
        raise FrameError(Reason.BAD_FIELD, f"field {name!r} outside int64")
    return value


def decode_json(payload: bytes | bytearray | memoryview) -> Frame:
    """Decode the JSON form."""
    try:
        obj = json.loads(bytes(payload))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameError(Reason.BAD_JSON, f"not valid JSON: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise FrameError(Reason.BAD_JSON, "a JSON frame must be an object")
    version = obj.get("v")
    if version != VERSION or isinstance(version, bool):
        raise FrameError(Reason.UNKNOWN_VERSION, f"version {version!r:.40}")
    kind_label = obj.get("kind")
    try:
        kind = StreamKind.from_label(kind_label) if isinstance(kind_label, str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise FrameError(Reason.UNKNOWN_STREAM, f"kind {kind_label!r:.40}")
    seq = _int_field(obj, "seq")
    t0 = _int_field(obj, "t0_ns")
    samples = _int_field(obj, "samples")
    channels = _int_field(obj, "channels")
    data = obj.get("data")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise FrameError(Reason.BAD_FIELD, "field 'data' must be a list of sample rows")
    if len(data) != samples or any(len(row) != channels for row in data):
        raise FrameError(Reason.COUNT_MISMATCH, f"data is not {samples} rows of {channels} values")
    for row in data:
        for value in row:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise FrameError(Reason.BAD_FIELD, f"sample value {value!r:.40} is not a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise FrameError(Reason.NON_FINITE, "NaN or infinity in the samples")
    try:
        arr = np.array(data, dtype=np.float64).reshape(samples, channels)
    except (ValueError, OverflowError) as exc:
        raise FrameError(Reason.BAD_FIELD, f"samples: {exc}"[:200]) from None
    with np.errstate(over="ignore"):
        arr32 = arr.astype(_F32)
    ts = None
    period = 0
    if "t_ns" in obj:
        raw_ts = obj["t_ns"]
        if not isinstance(raw_ts, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and -(2**63) <= t < 2**63 for t in raw_ts
        ):
            raise FrameError(Reason.BAD_FIELD, "field 't_ns' must be a list of int64")
        ts = np.array(raw_ts, dtype=_I64)
        if "period_ns" in obj and obj["period_ns"] not in (0, None):
            raise FrameError(Reason.BAD_FIELD, "send either 'period_ns' or 't_ns', not both")
    else:
        period = _int_field(obj, "period_ns")
    frame = Frame(kind, seq, t0, period, arr32, ts, version)
    _validate(frame)
    return frame
