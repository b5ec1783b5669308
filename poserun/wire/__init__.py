"""The poserun wire protocol: topics, frames (binary and JSON), device meta.

Pure functions and small value classes; no sockets. Spec: docs/protocol.md.
"""

from poserun.wire.cursor import SourceCursor, Verdict
from poserun.wire.errors import FrameError, Reason, TopicError, WireError
from poserun.wire.frame import Frame, decode, encode, encode_json, make_frame
from poserun.wire.streams import SOURCES, StreamKind, source_kind

__all__ = [
    "SOURCES", "Frame", "FrameError", "Reason", "SourceCursor", "StreamKind", "TopicError",
    "Verdict", "WireError", "decode", "encode", "encode_json", "make_frame", "source_kind",
]
