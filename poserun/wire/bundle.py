"""The bundle: several sources' frames of one athlete in one MQTT message (docs/protocol.md, section 3, "Bundles").

An athlete-worn hub that collects the feet's IMUs and insoles sends one message per frame period
instead of one per sensor: the broker, the network and poserun then handle a fifth of the messages
for the same data. Each entry is an ordinary frame (binary or JSON) with a one-byte source id, so
every check a frame gets on its own topic it gets here too. Layout (little-endian)::

    0  2  magic b"PB"
    2  1  version (1)
    3  1  entry count N (1-64)
    then N entries:  1 source id (BUNDLE_SOURCES) | 4 uint32 frame length L | L bytes: the frame

Sans-I/O: bytes in, ``(source, frame bytes)`` out; :class:`FrameError` (``bad_bundle``) for anything
that does not add up, so a malformed bundle costs only itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from poserun.wire.errors import FrameError, Reason

MAGIC = b"PB"
VERSION = 1
MAX_ENTRIES = 64
_HEAD = struct.Struct("<2sBB")
_ENTRY = struct.Struct("<BI")
#: The source ids of bundle entries: part of the protocol, never renumbered (0 is not a source).
BUNDLE_SOURCES: tuple[str, ...] = (
    "", "imu_foot_left", "imu_foot_right", "imu_shank_left", "imu_shank_right", "imu_pelvis",
    "insole_left", "insole_right", "keypoints", "force_left", "force_right",
)
SOURCE_ID = {s: i for i, s in enumerate(BUNDLE_SOURCES) if s}


def is_bundle(payload: bytes | bytearray | memoryview) -> bool:
    return bytes(payload[:2]) == MAGIC


def pack(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A bundle of ``(source, frame payload)`` entries, in order (at most one frame per source is usual;
    several of one source are allowed and taken in order)."""
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise ValueError(f"a bundle holds 1-{MAX_ENTRIES} frames, not {len(entries)}")
    parts = [_HEAD.pack(MAGIC, VERSION, len(entries))]
    for source, frame in entries:
        sid = SOURCE_ID.get(source)
        if sid is None:
            raise ValueError(f"{source!r} is not a source a bundle can carry")
        parts.append(_ENTRY.pack(sid, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def unpack(payload: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
    """The entries of a bundle, or :class:`FrameError` when its structure does not add up (the frames
    themselves are checked where they are decoded)."""
    buf = bytes(payload) if type(payload) is not bytes else payload
    if len(buf) < _HEAD.size:
        raise FrameError(Reason.BAD_BUNDLE, f"{len(buf)} bytes, a bundle's header needs {_HEAD.size}")
    magic, version, count = _HEAD.unpack_from(buf)
    if magic != MAGIC:
        raise FrameError(Reason.BAD_BUNDLE, "bad magic (a bundle starts with b'PB')")
    if version != VERSION:
        raise FrameError(Reason.UNKNOWN_VERSION, f"bundle version {version}, this decoder speaks {VERSION}")
    if not 1 <= count <= MAX_ENTRIES:
        raise FrameError(Reason.BAD_BUNDLE, f"{count} entries (1-{MAX_ENTRIES})")
    out: list[tuple[str, bytes]] = []
    at = _HEAD.size
    for k in range(count):
        if at + _ENTRY.size > len(buf):
            raise FrameError(Reason.BAD_BUNDLE, f"entry {k} of {count}: truncated header")
        sid, length = _ENTRY.unpack_from(buf, at)
        at += _ENTRY.size
        if not 0 < sid < len(BUNDLE_SOURCES):
            raise FrameError(Reason.BAD_BUNDLE, f"entry {k}: unknown source id {sid}")
        if length == 0 or at + length > len(buf):
            raise FrameError(Reason.BAD_BUNDLE, f"entry {k}: {length} bytes, {len(buf) - at} left")
        out.append((BUNDLE_SOURCES[sid], buf[at:at + length]))
        at += length
    if at != len(buf):
        raise FrameError(Reason.BAD_BUNDLE, f"{len(buf) - at} bytes after the last of {count} entries")
    return out
