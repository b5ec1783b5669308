"""Versioned MQTT topics: one namespace per session, athlete and source.

    poserun/v1/{session}/{athlete}/data/{source}     sensor frames (binary or JSON)
    poserun/v1/{session}/{athlete}/data/bundle       several sources' frames in one message
    poserun/v1/{session}/{athlete}/meta/{source}     device meta, retained JSON
    poserun/v1/{session}/{athlete}/meta_request/{source}  poserun asks the gateway for missing meta
    poserun/v1/{session}/{athlete}/truth             ground truth events (simulator, lab imports)
    poserun/v1/{session}/{athlete}/records           fused records out of poserun
    poserun/v1/{session}/{athlete}/haptic            haptic commands to the athlete's band
    poserun/v1/{session}/{athlete}/coach             coach actions from the board (poserun/wire/coach.py)
    poserun/v1/{session}/_gateway/{gateway}/status   gateway status, retained, with a last will
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from poserun.wire.errors import TopicError
from poserun.wire.streams import SOURCES

ROOT = "poserun"
PROTOCOL = "v1"
GATEWAY = "_gateway"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHANNELS = ("data", "meta", "meta_request", "truth", "records", "haptic", "coach", "status")
PER_ATHLETE = ("truth", "records", "haptic", "coach")  # channels whose topics end in the channel
_SOURCED = ("data", "meta", "meta_request")  # channels whose topics end in a source
BUNDLE = "bundle"  # the data topic of an athlete's bundles (poserun/wire/bundle.py): not a source


def valid_id(value: str) -> bool:
    """Session, athlete and gateway ids: 1-64 of ``A-Z a-z 0-9 _ . -``, not starting with a symbol."""
    return bool(_ID.match(value))


def check_id(value: str, what: str) -> str:
    if not valid_id(value):
        raise ValueError(
            f"{what} id {value!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed poserun topic. ``source`` is set for data and meta topics."""

    session: str
    athlete: str | None
    channel: str
    source: str | None = None
    gateway: str | None = None

    def __str__(self) -> str:
        base = f"{ROOT}/{PROTOCOL}/{self.session}"
        if self.channel == "status":
            return f"{base}/{GATEWAY}/{self.gateway}/status"
        if self.channel in _SOURCED:
            return f"{base}/{self.athlete}/{self.channel}/{self.source}"
        return f"{base}/{self.athlete}/{self.channel}"


def data_topic(session: str, athlete: str, source: str) -> str:
    return f"{ROOT}/{PROTOCOL}/{session}/{athlete}/data/{source}"


def bundle_topic(session: str, athlete: str) -> str:
    """Where an athlete's bundles go: several sources' frames in one message (docs/protocol.md)."""
    return f"{ROOT}/{PROTOCOL}/{session}/{athlete}/data/{BUNDLE}"


def meta_topic(session: str, athlete: str, source: str) -> str:
    return f"{ROOT}/{PROTOCOL}/{session}/{athlete}/meta/{source}"


def meta_request_topic(session: str, athlete: str, source: str) -> str:
    """Where poserun asks for a source's meta it lacks (empty payload); the gateway that holds the
    meta publishes it again (retained) on :func:`meta_topic`."""
    return f"{ROOT}/{PROTOCOL}/{session}/{athlete}/meta_request/{source}"


def requested_meta(topic: str) -> str | None:
    """The meta topic a meta request asks for (None: not a valid meta request topic)."""
    try:
        t = parse(topic)
    except TopicError:
        return None
    if t.channel != "meta_request" or t.athlete is None or t.source is None:
        return None
    return meta_topic(t.session, t.athlete, t.source)


def athlete_topic(session: str, athlete: str, channel: str) -> str:
    """``truth``, ``records``, ``haptic`` or ``coach`` topic of one athlete."""
    if channel not in PER_ATHLETE:
        raise ValueError(f"channel {channel!r} is not per-athlete")
    return f"{ROOT}/{PROTOCOL}/{session}/{athlete}/{channel}"


def coach_topic(session: str, athlete: str) -> str:
    """Where the board publishes coach actions for one athlete (QoS 1, docs/protocol.md)."""
    return athlete_topic(session, athlete, "coach")


def status_topic(session: str, gateway: str) -> str:
    return f"{ROOT}/{PROTOCOL}/{session}/{GATEWAY}/{gateway}/status"


def subscription(session: str | None = None, channel: str = "data") -> str:
    """The MQTT filter for one channel of one session (``None``: every session)."""
    sess = session if session is not None else "+"
    if channel in _SOURCED:
        return f"{ROOT}/{PROTOCOL}/{sess}/+/{channel}/+"
    if channel == "status":
        return f"{ROOT}/{PROTOCOL}/{sess}/{GATEWAY}/+/status"
    return f"{ROOT}/{PROTOCOL}/{sess}/+/{channel}"


def athlete_subscription(session: str | None, athlete: str, channel: str = "data") -> str:
    """The MQTT filter for one channel of one athlete (a sourced channel: every source)."""
    sess = session if session is not None else "+"
    return f"{ROOT}/{PROTOCOL}/{sess}/{athlete}/{channel}" + ("/+" if channel in _SOURCED else "")


def session_filter(session: str | None = None) -> str:
    """Everything of one session (``None``: all sessions)."""
    return f"{ROOT}/{PROTOCOL}/{session if session is not None else '+'}/#"


def parse(topic: str) -> Topic:
    """Parse a topic; :class:`TopicError` for anything outside the namespace."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != ROOT:
        raise TopicError(f"not a poserun topic: {topic[:120]!r}")
    if parts[1] != PROTOCOL:
        raise TopicError(f"unknown protocol {parts[1][:20]!r} in {topic[:120]!r}")
    session = parts[2]
    if not valid_id(session):
        raise TopicError(f"bad session id in {topic[:120]!r}")
    if parts[3] == GATEWAY:
        if len(parts) == 6 and parts[5] == "status" and valid_id(parts[4]):
            return Topic(session, None, "status", gateway=parts[4])
        raise TopicError(f"bad gateway topic {topic[:120]!r}")
    athlete = parts[3]
    if not valid_id(athlete):
        raise TopicError(f"bad athlete id in {topic[:120]!r}")
    channel = parts[4]
    if channel in _SOURCED:
        if len(parts) != 6 or not (parts[5] in SOURCES or (parts[5] == BUNDLE and channel == "data")):
            raise TopicError(f"unknown source in {topic[:120]!r}")
        return Topic(session, athlete, channel, parts[5])
    if channel in PER_ATHLETE and len(parts) == 5:
        return Topic(session, athlete, channel)
    raise TopicError(f"unknown channel in {topic[:120]!r}")
