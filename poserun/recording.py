"""Recordings: everything a session published, in MCAP, byte for byte.

Why MCAP: it is an open, documented container made for exactly this
(timestamped messages of pub/sub topics), indexed and chunked with
compression, with readers in Python, C++, Go, Rust and TypeScript and
viewers such as Foxglove; a recording is useful beyond poserun.

How poserun uses it (docs/recording.md):

* one MCAP channel per MQTT topic; ``message_encoding`` is
  ``poserun-frame`` for sensor frames (binary or JSON, as published), ``poserun-bundle`` for bundles
  (several sources' frames in one message, poserun/wire/bundle.py) and
  ``json`` for meta, status, truth, records and haptic topics;
* channel metadata ``retain`` (``true``/``false``) and ``qos``;
* message ``log_time`` = receive time (ns, recorder's wall clock; for
  imports, the frame's last sample time), ``publish_time`` the same,
  ``sequence`` = arrival order;
* the payload is the MQTT payload unchanged, so replay reproduces the
  original frames exactly;
* file metadata record ``poserun`` (protocol version, session, source of
  the recording) and, for lab imports, ``poserun.athletes`` (JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from poserun import __version__
from poserun.wire import topics

PROFILE = "poserun"
FRAME_ENCODING = "poserun-frame"
BUNDLE_ENCODING = "poserun-bundle"  # several sources' frames (poserun/wire/bundle.py)


@dataclass
class TransferStats:
    """What a recorder or a replay moved: messages, payload bytes, wall seconds; ``skipped``:
    messages a replay left out (channels not asked for)."""

    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    topic: str
    payload: bytes
    log_time_ns: int
    retain: bool = False
    qos: int = 0


def default_retain(topic: str) -> bool:
    """Meta and status topics are retained by the protocol."""
    try:
        return topics.parse(topic).channel in ("meta", "status")
    except ValueError:
        return False


class RecordingWriter:
    """Append messages to an MCAP file; call :meth:`close` to write its index."""

    def __init__(self, path: str | Path, *, metadata: dict[str, str] | None = None,
                 compression: str = "zstd") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(self.path, "wb")
        comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                "none": CompressionType.NONE}[compression]
        self._w = Writer(self._fh, compression=comp)
        self._w.start(profile=PROFILE, library=f"poserun {__version__}")
        self._channels: dict[tuple[str, bool, int], int] = {}
        self.count = 0
        self._w.add_metadata("poserun", {"protocol": topics.PROTOCOL, "version": __version__,
                                         **(metadata or {})})

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        self._w.add_metadata(name, data)

    def write(self, topic: str, payload: bytes, log_time_ns: int, *, retain: bool | None = None,
              qos: int = 0) -> None:
        keep = default_retain(topic) if retain is None else retain
        key = (topic, keep, qos)
        channel = self._channels.get(key)
        if channel is None:
            try:
                parsed = topics.parse(topic)
                encoding = "json" if parsed.channel != "data" else \
                    BUNDLE_ENCODING if parsed.source == topics.BUNDLE else FRAME_ENCODING
            except ValueError:
                encoding = "json"
            channel = self._w.register_channel(
                topic=topic, message_encoding=encoding, schema_id=0,
                metadata={"retain": "true" if keep else "false", "qos": str(qos)},
            )
            self._channels[key] = channel
        self._w.add_message(channel_id=channel, log_time=log_time_ns, data=payload,
                            publish_time=log_time_ns, sequence=self.count)
        self.count += 1

    def close(self) -> None:
        if self._fh.closed:
            return
        self._w.finish()
        self._fh.close()


MAGIC = b"\x89MCAP0\r\n"


class NotARecording(ValueError):
    """The file is not an MCAP recording."""


def _open_recording(path: str | Path) -> IO[bytes]:
    """Open ``path`` for reading, with a one-line error for a missing file or one that is not MCAP."""
    p = Path(path)
    if not p.is_file():
        raise NotARecording(f"{p}: no such recording")
    fh = open(p, "rb")
    head = fh.read(len(MAGIC))
    if head != MAGIC:
        fh.close()
        raise NotARecording(f"{p}: not an MCAP recording (poserun record and poserun import write them; "
                            "docs/recording.md)")
    fh.seek(0)
    return fh


def read_messages(path: str | Path) -> Iterator[RecordedMessage]:
    """Messages in the order they were written (arrival order)."""
    with _open_recording(path) as fh:
        reader = make_reader(fh)
        try:
            for _schema, channel, message in reader.iter_messages(log_time_order=False):
                meta = channel.metadata or {}
                yield RecordedMessage(channel.topic, bytes(message.data), message.log_time,
                                      meta.get("retain") == "true", int(meta.get("qos", "0")))
        except McapError as exc:
            raise NotARecording(f"{path}: damaged recording ({exc})") from None


def message_count(path: str | Path) -> int:
    """How many messages the recording holds (from its summary; 0 when it has none)."""
    with _open_recording(path) as fh:
        try:
            summary = make_reader(fh).get_summary()
        except McapError as exc:
            raise NotARecording(f"{path}: damaged recording ({exc})") from None
    return int(summary.statistics.message_count) if summary and summary.statistics else 0


def read_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    with _open_recording(path) as fh:
        try:
            return {m.name: dict(m.metadata) for m in make_reader(fh).iter_metadata()}
        except McapError as exc:
            raise NotARecording(f"{path}: damaged recording ({exc})") from None


def athletes_metadata(path: str | Path) -> list[dict[str, Any]]:
    raw = read_metadata(path).get("poserun.athletes", {}).get("json")
    return json.loads(raw) if raw else []
