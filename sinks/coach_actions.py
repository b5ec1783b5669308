"""The board's coach actions: a browser's ``act`` message in, one coach message per athlete out.

The dashboard sink owns one :class:`CoachActions` and hands it every ``{"type": "act", ...}``
message of an authenticated socket (the board's token already authenticates it)::

    actions = CoachActions(context["broker"])        # the sink context's BrokerSettings
    await actions.start()                            # connects; BrokerUnavailable if it cannot
    reply = actions.handle(msg, sessions)            # sessions: {athlete id: session id}
    await ws.send_json(reply)                        # {"type": "acted", "ok": ..., "sent": n, ...}
    await actions.close()                            # sends what waits (briefly), disconnects

``msg`` is ``{"type": "act", "action": "buzz"|"metronome"|"tag"|"rep"|"targets", "athletes":
[ids], ...}`` with the action's fields (``pattern``; ``on`` and ``cadence_spm``; ``label``; ``on``;
``targets``: docs/protocol.md, coach actions) and optionally ``ref`` (a string or integer echoed in
the reply, to match replies to clicks). :meth:`CoachActions.handle` never raises: a bad message
(unknown action, no athletes, more than :data:`MAX_ATHLETES`, an invalid or unknown athlete id,
a cadence outside 60-300 steps/min, a label over 120 characters, bad targets, any field the
action does not take) gets ``{"type": "acted", "ok": false, "error": "<why>", "sent": 0}`` and is
counted in :attr:`CoachActions.bad`; nothing is sent for it (all athletes or none). A good one is
published at once, QoS 1, on ``poserun/v1/{session}/{athlete}/coach`` for each athlete, stamped
with this machine's wall clock (``t_ns``, the click); it returns ``{"type": "acted", "ok": true,
"sent": n, "action": ..., "athletes": [...], "t_ns": ...}``. While the broker is away the messages
wait in the connection's outbox and go when it returns, unless older than ``max_age_s`` (a late
buzz is a wrong one; dropped and counted in the connection's stats).

``sessions`` says which session each athlete runs in (the board knows from the records it
shows); an athlete not in it is refused ("no session known"), since the topic needs it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.wire import topics
from poserun.wire.coach import ACTIONS, CoachCommand, command_from_dict, encode_coach
from poserun.wire.errors import CoachError

log = logging.getLogger(__name__)
MAX_ATHLETES = 100
QOS = 1
_ACTION_FIELDS = {"buzz": ("pattern",), "metronome": ("on", "cadence_spm"), "tag": ("label",), "rep": ("on",),
                  "targets": ("targets",)}
_MESSAGE_KEYS = {"type", "action", "athletes", "ref"}


class CoachActions:
    """Validates the board's act messages and publishes them as coach messages (module docstring)."""

    def __init__(self, broker: BrokerSettings, *, max_age_s: float = 10.0, outbox: int = 10_000,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.broker = broker
        self.conn = MqttConnection(broker, "coach", outbox=outbox, max_age_s=max_age_s)
        self.clock = clock
        self.bad = 0  # refused act messages
        self.sent = 0  # coach messages handed to the connection
        self.by_action: Counter[str] = Counter()  # accepted act messages per action
        self.last_error = ""
        self._open = False

    async def start(self) -> None:
        """Connect to the broker (:class:`~poserun.services.mqtt.BrokerUnavailable` if the first
        attempt fails); later losses are the connection's business."""
        await self.conn.start()
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self.conn.close(timeout=2.0)

    def stats(self) -> dict[str, object]:
        return {"bad": self.bad, "sent": self.sent, "by_action": dict(self.by_action), "last_error": self.last_error,
                **{f"mqtt_{k}": v for k, v in self.conn.stats.as_dict().items()}}

    def handle(self, msg: dict[str, Any], sessions: dict[str, str]) -> dict[str, Any]:
        """Validate one act message and publish it to each athlete; the reply for the browser."""
        ref = msg.get("ref") if isinstance(msg, dict) else None
        try:
            cmd, athletes = self._check(msg, sessions)
        except CoachError as exc:
            return self._refuse(exc.detail, ref)
        if not self._open:
            return self._refuse("coach actions are not connected (start() first)", ref)
        payload = encode_coach(cmd)
        for athlete in athletes:
            self.conn.publish(topics.coach_topic(sessions[athlete], athlete), payload, qos=QOS)
            self.sent += 1
        self.by_action[cmd.action] += 1
        reply: dict[str, Any] = {"type": "acted", "ok": True, "sent": len(athletes), "action": cmd.action,
                                 "athletes": athletes, "t_ns": cmd.t_ns}
        if ref is not None:
            reply["ref"] = ref
        return reply

    def _refuse(self, why: str, ref: Any) -> dict[str, Any]:
        self.bad += 1
        self.last_error = why
        log.info("coach action refused: %s", why)
        reply: dict[str, Any] = {"type": "acted", "ok": False, "error": why, "sent": 0}
        if isinstance(ref, str | int) and not isinstance(ref, bool):
            reply["ref"] = ref
        return reply

    def _check(self, msg: Any, sessions: dict[str, str]) -> tuple[CoachCommand, list[str]]:
        if not isinstance(msg, dict):
            raise CoachError("an act message is a JSON object")
        if msg.get("type") != "act":
            raise CoachError("not an act message")
        action = msg.get("action")
        if action not in ACTIONS:
            raise CoachError(f"unknown action {action!r:.40}: use one of {', '.join(ACTIONS)}")
        extra = sorted(set(msg) - _MESSAGE_KEYS - set(_ACTION_FIELDS[action]))
        if extra:
            raise CoachError(f"{action}: unexpected field(s) {', '.join(map(str, extra))[:80]}")
        ref = msg.get("ref")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, str | int) or len(str(ref)) > 64):
            raise CoachError("ref must be a string or integer of at most 64 characters")
        athletes = msg.get("athletes")
        if not isinstance(athletes, list) or not athletes:
            raise CoachError("athletes must be a non-empty list of athlete ids")
        if len(athletes) > MAX_ATHLETES:
            raise CoachError(f"{len(athletes)} athletes: at most {MAX_ATHLETES} in one action")
        bad = [a for a in athletes if not isinstance(a, str) or not topics.valid_id(a)]
        if bad:
            raise CoachError(f"invalid athlete id {bad[0]!r:.70}")
        unique = list(dict.fromkeys(athletes))
        unknown = [a for a in unique if not topics.valid_id(sessions.get(a, ""))]
        if unknown:
            raise CoachError(f"no session known for {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""))
        fields = {k: msg[k] for k in _ACTION_FIELDS[action] if k in msg}
        cmd = command_from_dict({"v": 1, "action": action, "t_ns": self.clock(), "by": "board", **fields})
        return cmd, unique
