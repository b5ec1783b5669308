"""The live coach dashboard: a team board in the browser, served by poserun itself.

``websockets`` serves both the page (plain HTTP GET, no build step, no
third-party front-end code) and the live socket. The sink keeps the latest
state per athlete (a record supersedes what it changes) and stamps each
changed field with the board's next version; ``update_hz`` times a second
(10) a tick closes that version. A new browser gets the whole team's state
at once; after that each browser is sent, per tick, only the athletes and
fields that changed since the version it was last sent, so a browser that
fell behind gets the current state of what changed, never a backlog. The
page acknowledges each update it has drawn; with ``WINDOW`` updates
unacknowledged (or its socket's buffer full) a browser is sent nothing more
until it catches up, so what the sink holds per browser is a few numbers and
its socket's buffer (the 32 KiB write limit and one message), never a queue
of updates. Every message carries the server's clock at send (``now_ns``)
and each athlete's newest record's ``emitted_ns``: the page tells how old
its data is without trusting its own clock. The page reconnects by itself.

Bound to 127.0.0.1 by default; bound elsewhere it
requires a token (``?token=...``) on both the page and the socket. The socket
takes a browser only from the board's own page (its ``Origin`` is the ``Host`` it
asked) or from ``allowed_origins``; without a token, only requests addressed to a
loopback name (or an allowed origin's host) are served, so a web page elsewhere
cannot read the board through DNS rebinding. Refusals are HTTP 403, counted. An
explicit port that is taken is an error; port 0 takes any free one. Messages
from browsers are size-limited, parsed defensively, counted and never crash
the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from poserun.sinks import coaching

try:  # (the rep tracker: "resting" from the runs of stances, or the coach's rep commands)
    from poserun.processors.reps import RepTracker
except ImportError:  # pragma: no cover - an older install: the board's own rule (sinks/coaching.py)
    RepTracker = None  # type: ignore[assignment,misc]
from poserun.sinks.athlete_view import athlete_detail, history_point
from poserun.sinks.base import Record
from poserun.sinks.store import store_url
from poserun.wire import topics
from poserun.wire.errors import WireError

log = logging.getLogger(__name__)
#: The stance figures a tile shows, each with the decimals the board keeps (one more than the page
#: shows; None: not a number), so that a figure that did not visibly change is not sent again.
TILE_FIELDS: dict[str, int | None] = {
    "cadence_spm": 1, "support_time_s": 4, "ball_load_fraction": 3, "fall_angle_deg": 2, "pose_score": 1,
    "strike_zone": None, "flight_time_s": 4, "overstride_m": 3}
#: The status fields a tile shows (sinks/coaching.py), sent as changes like the figures.
STATUS_FIELDS = ("level", "state", "fault", "cue", "rule", "lr")
#: How often (s) every athlete's state is judged again without a record (stale, resting change with
#: time alone); an athlete with new records is judged at the tick that sends them.
STATUS_EVERY_S = 0.5
#: A rep's figures the athlete view's rep table shows, and how many of the latest reps.
REP_FIELDS = ("rep", "source", "stances", "cadence_spm", "support_time_s", "forced_share", "pose_score")
REPS = 12
#: Alerts are grouped per athlete and reason over this many seconds.
ALERT_WINDOW_S = 60.0
#: Updates a browser that acknowledges them may have unacknowledged; then it is sent nothing until
#: it acknowledges one, and then the current state of what changed meanwhile.
WINDOW = 2
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def origin_of(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` as (scheme, host, port), or None when it is not one (``null``, a path)."""
    try:
        u = urlsplit(value.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme not in DEFAULT_PORTS or not u.hostname or u.path not in ("", "/") or u.query or u.fragment \
            or u.username is not None:
        return None
    return u.scheme, u.hostname.lower(), port or DEFAULT_PORTS[u.scheme]


def host_of(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header as (host, port or None), or None when malformed."""
    try:
        u = urlsplit(f"//{value.strip()}")
        port = u.port
    except ValueError:
        return None
    if not u.hostname or u.path or u.username is not None:
        return None
    return u.hostname.lower(), port


def _severity_words(severity: object) -> str:
    """A forced landing's severity said: how much faster the foot came down than the body fell."""
    if isinstance(severity, int | float) and not isinstance(severity, bool):
        return f"foot {float(severity):.1f}x faster than the body at contact"
    return "foot driven down faster than the body fell"


def _board_value(key: str, value: Any) -> Any:
    """A stance figure as the board keeps it: rounded to its decimals (``TILE_FIELDS``)."""
    decimals = TILE_FIELDS.get(key)
    if decimals is not None and isinstance(value, float):
        return round(value, decimals)
    return value


@dataclass(eq=False)
class _Browser:
    """What the sink holds for one open socket: a few numbers and one event, whatever the browser does."""

    ws: ServerConnection
    sent: int = 0  # the board's version this browser has (the last one it was sent)
    acks: bool = False  # it acknowledges updates (the board's page does): then at most WINDOW in flight
    acked: int = 0  # the newest version it acknowledged
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))  # the last versions sent
    watching: str | None = None  # the athlete whose view it shows
    points_sent: int = 0  # that athlete's history points sent to it (the running count)
    sending: bool = False
    updates: int = 0  # update messages sent
    coalesced: int = 0  # ticks at which it was still behind: their changes went out in a later update
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def window_full(self) -> bool:
        return self.acks and len(self.recent) == WINDOW and all(v > self.acked for v in self.recent)


class DashboardSink:
    name = "dashboard"

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 update_hz: float = 10.0, alerts: int = 50, allowed_origins: list[str] | None = None,
                 context: dict[str, Any] | None = None) -> None:
        ctx = context if context is not None else {}
        if host not in LOOPBACK and not token:
            raise ValueError("the dashboard binds beyond this machine only with a token (options: token)")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0-65535 (0: any free port), not {port!r}")
        if isinstance(allowed_origins, str) or not isinstance(allowed_origins, list | tuple | None):
            raise ValueError("allowed_origins must be a list of origins, e.g. [https://coach.example.org]")
        self.allowed_origins: set[tuple[str, str, int]] = set()
        for o in allowed_origins or ():
            parsed = origin_of(o) if isinstance(o, str) else None
            if parsed is None:
                raise ValueError(f"allowed_origins: {o!r} is not an origin: use scheme://host[:port], e.g. "
                                 "https://coach.example.org or http://10.0.0.5:8765 (no path)")
            self.allowed_origins.add(parsed)
        self.host, self.port, self.token = host, port, token
        self.refused = {"origin": 0, "host": 0, "token": 0}  # requests answered 403 / 401, by reason
        self.period = 1.0 / max(0.5, min(update_hz, 60.0))
        self.names: dict[str, str] = dict(ctx.get("athlete_names", {}))
        self.tiles: dict[str, dict[str, Any]] = {}  # per athlete, the latest value of each field
        self.version = 0  # the last version a tick closed; changes since are stamped version + 1
        self._stamps: dict[str, dict[str, int]] = {}  # per athlete and field, the version it last changed in
        self._changed: dict[str, int] = {}  # per athlete, the newest of its stamps
        self._pending = False  # something was stamped version + 1
        self._bodies: dict[int, str | None] = {}  # this version's updates by the version they start from
        self.alerts: deque[dict[str, Any]] = deque(maxlen=alerts)  # newest first
        self._alert_log: deque[tuple[int, dict[str, Any]]] = deque(maxlen=alerts)  # (version, alert), oldest first
        self._forced: dict[str, deque[float]] = {}
        self._browsers: set[_Browser] = set()
        self.history: dict[str, deque[dict[str, Any]]] = {}  # per athlete, the last stances (charts)
        self._points: dict[str, int] = {}  # per athlete, history points ever added
        self.stance: dict[str, Record] = {}  # per athlete, the last stance (its view: detail())
        self.targets: dict[str, Any] = dict(ctx.get("athlete_targets", {}))  # per athlete (Targets.as_dict())
        self.windows: dict[str, coaching.AthleteWindow] = {}  # per athlete, the last steps (the status)
        self._judge: set[str] = set()  # athletes whose window changed since their status was judged
        self._judged_at = 0.0
        self._lost: dict[str, str] = {}  # per athlete, the sensor-lost fault last alerted
        self.actions: Any = None  # poserun.sinks.coach_actions.CoachActions with a broker in the context
        self.actions_ready = False  # its first connection made (retried in the background until then)
        broker = self.broker = ctx.get("broker")
        self._cues: dict[str, deque[float]] = {}  # per athlete, when its band was sent a cue (the last minute)
        self.cues_seen = 0  # haptic commands seen on the broker
        self.cues_ready = asyncio.Event()  # set once subscribed to the bands' topic
        self._broker_tasks: list[asyncio.Task[None]] = []
        self._broker_stop = asyncio.Event()
        if broker is not None:
            try:
                from poserun.sinks.coach_actions import CoachActions
                self.actions = CoachActions(broker)
            except ImportError:  # (an install without the coach actions: the board only shows)
                self.actions = None
        self.store_url = store_url(ctx.get("settings"))
        self.js = files("poserun.sinks.web").joinpath("athlete.js").read_bytes()
        self._server: Server | None = None
        self._pusher: asyncio.Task[None] | None = None
        self.bad_messages = 0
        self.updates_sent = 0  # update messages, all browsers
        self.bytes_sent = 0  # every message's bytes, all browsers
        self.coalesced = 0  # ticks a browser was behind at, all browsers
        self.page = files("poserun.sinks.web").joinpath("dashboard.html").read_bytes()

    # ------------------------------------------------------------ records
    def _set(self, who: str, key: str, value: Any) -> None:
        """Give an athlete's field a new value; a change is stamped with the next version."""
        tile = self.tiles[who]
        if key in tile and tile[key] == value:
            return
        tile[key] = value
        self._stamps[who][key] = self._changed[who] = self.version + 1
        self._pending = True

    def _tile(self, who: str, rec: Record) -> dict[str, Any]:
        tile = self.tiles.get(who)
        if tile is None:
            tile = self.tiles[who] = {}
            self._stamps[who] = {}
            self._changed[who] = self.version + 1
            for key, value in (("athlete", who), ("name", self.names.get(who, "")), ("stances", 0),
                               ("forced_last_min", 0), ("flash", 0), ("sources", []),
                               ("session", rec.get("session")), ("level", "ok"), ("state", "running"),
                               ("fault", ""), ("cue", ""), ("rule", ""), ("lr", {}), ("rep", 0), ("rep_on", False),
                               ("targets", self.targets.get(who, {}))):
                self._set(who, key, value)
            self.windows[who] = coaching.AthleteWindow(self.targets.get(who))
            if RepTracker is not None:
                self.windows[who].rest = RepTracker()
        return tile

    async def write_batch(self, records: list[Record]) -> None:
        now = time.monotonic()
        for rec in records:
            who = str(rec.get("athlete"))
            tile = self._tile(who, rec)
            self.windows[who].add(rec, now)
            self._judge.add(who)
            if rec.get("type") == "landing" and rec.get("forced_landing"):
                times = self._forced.setdefault(who, deque())
                times.append(now)
                self._alert(who, "forced landing", len(times), _severity_words(rec.get("forced_landing_severity")))
                self._set(who, "flash", tile["flash"] + 1)
                self._set(who, "forced_last_min", len(times))
            elif rec.get("type") == "coach" and rec.get("action") == "rep":  # (the service numbers reps)
                if isinstance(rec.get("rep"), int):
                    self._set(who, "rep", rec["rep"])
                self._set(who, "rep_on", bool(rec.get("on")))
            elif rec.get("type") == "stance":
                self._set(who, "stances", tile["stances"] + 1)
                self._set(who, "sources", list(rec.get("sources") or []))
                self.history.setdefault(who, deque(maxlen=240)).append(history_point(rec))
                self._points[who] = self._points.get(who, 0) + 1
                self.stance[who] = rec
            if rec.get("type") in ("landing", "stance"):  # (the data's age: a coach record is not data)
                emitted = rec.get("emitted_ns")
                self._set(who, "emitted_ns", emitted if isinstance(emitted, int) else time.time_ns())
                if rec.get("session") is not None:  # an athlete who moved on: actions go to its new session
                    self._set(who, "session", rec.get("session"))

    def _alert(self, who: str, reason: str, count: int, words: str) -> None:
        """One alert per athlete and reason: a new one replaces the group's last (the page keeps one
        line per group), with the count over ``ALERT_WINDOW_S``."""
        alert = {"athlete": who, "name": self.tiles[who]["name"], "reason": reason, "count": count,
                 "window_s": ALERT_WINDOW_S, "text": words, "t": time.time(), "key": f"{who}|{reason}"}
        for i, old in enumerate(self.alerts):
            if old["key"] == alert["key"]:
                del self.alerts[i]
                break
        self.alerts.appendleft(alert)
        self._alert_log.append((self.version + 1, alert))

    def judge(self, now: float | None = None, states: bool = True) -> None:
        """Judge again the status of the athletes whose window changed (the tile's figures become
        the window's medians), and with ``states`` every athlete's state (stale, resting: these
        change with time alone)."""
        now = time.monotonic() if now is None else now
        if states:
            wall = time.time_ns()
            watched = {b.watching for b in self._browsers}
            for who, w in self.windows.items():
                if w.rest is not None:
                    w.rest.advance(wall)
                    if who in watched:  # the per-rep table, for the athletes a page shows
                        self._set(who, "reps", [{k: r.get(k) for k in REP_FIELDS} for r in w.rest.reps()[-REPS:]])
        for who, w in self.windows.items() if states else ((k, self.windows[k]) for k in self._judge):
            if who not in self._judge:
                self._set(who, "state", w.state(now))
                continue
            st = w.status(now)
            med = st["medians"]
            for k in TILE_FIELDS:
                if k in med:
                    self._set(who, k, _board_value(k, med[k]))
            zones = [s.get("strike_zone") for s in w.stances if isinstance(s.get("strike_zone"), str)]
            if zones:
                self._set(who, "strike_zone", max(sorted(set(zones)), key=zones.count))
            for k in STATUS_FIELDS:
                self._set(who, k, st[k])
            lost = st["fault"] if st["state"] == "sensor lost" else ""
            if lost and self._lost.get(who) != lost:
                self._alert(who, "sensor lost", 1, lost)
            self._lost[who] = lost
        self._judge.clear()

    def set_targets(self, who: str, targets: dict[str, Any]) -> None:
        """An athlete's targets, now (the board's editor): the status is judged against them at once."""
        self.targets[who] = dict(targets)
        if who in self.windows:
            self.windows[who].targets = dict(targets)
            self._set(who, "targets", dict(targets))
            self._judge.add(who)
            self.judge()

    # ------------------------------------------------------------- versions
    def tick(self) -> int:
        """Close the current version (when anything changed) and wake every browser that lacks it.
        The pusher calls this ``update_hz`` times a second; returns the board's version."""
        now = time.monotonic()
        self.judge(now, states=now - self._judged_at >= STATUS_EVERY_S)
        if now - self._judged_at >= STATUS_EVERY_S:
            self._judged_at = now
        for who, times in self._forced.items():
            while times and now - times[0] > 60.0:
                times.popleft()
            self._set(who, "forced_last_min", len(times))
        if self._pending:
            self.version += 1
            self._pending = False
            self._bodies.clear()
        for b in self._browsers:
            if b.sent < self.version or self._detail_due(b):
                if b.wake.is_set() or b.sending or b.window_full():
                    b.coalesced += 1
                    self.coalesced += 1
                b.wake.set()
        return self.version

    def delta(self, since: int) -> dict[str, Any] | None:
        """What changed after version ``since`` up to the current one: per athlete only the fields that
        changed (each at its latest value), and the alerts; None when nothing did."""
        body = self._body(since)
        return None if body is None else json.loads("{" + body + "}")

    def _body(self, since: int) -> str | None:
        """:meth:`delta` as the JSON members of an update message, made once per version and start."""
        if since in self._bodies:
            return self._bodies[since]
        v = self.version
        tiles = []
        for who, newest in self._changed.items():
            if newest <= since:
                continue
            tile = self.tiles[who]
            changed = {k: tile[k] for k, at in self._stamps[who].items() if since < at <= v}
            if changed:
                changed["athlete"] = who
                tiles.append(changed)
        latest = {a["key"]: a for at, a in self._alert_log if since < at <= v}  # a group's newest only
        alerts = list(latest.values())
        body = None if not (tiles or alerts) else f'"tiles":{_JSON.encode(tiles)},"alerts":{_JSON.encode(alerts)}'
        self._bodies[since] = body
        return body

    def state(self) -> dict[str, Any]:
        """The whole board as a new browser gets it: every tile and the alerts (newest first)."""
        return {"type": "state", "seq": self.version, "now_ns": time.time_ns(), "tiles": list(self.tiles.values()),
                "alerts": list(self.alerts)}

    def detail(self, who: str) -> dict[str, Any] | None:
        """The athlete view of ``who``'s last stance (sinks/athlete_view.py), built when a browser
        watching it is sent one, not for every stance; None before its first stance."""
        rec = self.stance.get(who)
        return None if rec is None else athlete_detail(rec, self.history.get(who, ()), self.targets.get(who))

    def _detail_due(self, b: _Browser) -> bool:
        return b.watching is not None and self._points.get(b.watching, 0) > b.points_sent

    async def _send(self, b: _Browser, message: str) -> None:
        b.sending = True
        try:
            await b.ws.send(message)  # waits while the socket's buffer is full: the browser is behind
        finally:
            b.sending = False
        self.bytes_sent += len(message.encode())

    async def _sender(self, b: _Browser) -> None:
        """One browser's updates: woken by each tick and each acknowledgement, it sends what changed
        since the version this browser has, when its window and socket allow."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await b.wake.wait()
                b.wake.clear()
                if b.window_full():
                    continue  # its acknowledgement wakes it again
                if self.version > b.sent:
                    v, body = self.version, self._body(b.sent)
                    b.sent = v
                    if body is not None:
                        b.recent.append(v)
                        b.updates += 1
                        self.updates_sent += 1
                        await self._send(b, f'{{"type":"update","seq":{v},"now_ns":{time.time_ns()},{body}}}')
                if self._detail_due(b):
                    who = b.watching
                    assert who is not None
                    total = self._points.get(who, 0)
                    points = list(self.history.get(who, ()))[-min(total - b.points_sent, 240):]
                    b.points_sent = total
                    await self._send(b, _JSON.encode({"type": "detail", "athlete": who, "history": points,
                                                      "last": self.detail(who)}))

    def act(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A browser's coach action (buzz, metronome, tag, rep, targets), handed to the coach actions;
        their reply goes back to that browser. Accepted targets are the board's at once."""
        if self.actions is None or not self.actions_ready:
            self.bad_messages += 1
            said = ("this board has no broker for coach actions" if self.actions is None
                    else "the broker is not reachable yet: the board keeps trying")
            return {"type": "acted", "ok": False, "error": said, "sent": 0, "ref": msg.get("ref")}
        sessions = {who: str(t.get("session")) for who, t in self.tiles.items() if t.get("session")}
        reply: dict[str, Any] = self.actions.handle(msg, sessions)
        if not reply.get("ok"):
            self.bad_messages += 1
        elif msg.get("action") == "targets" and isinstance(msg.get("targets"), dict):
            for who in reply.get("athletes") or ():
                self.set_targets(who, msg["targets"])
        return reply

    def browsers(self) -> list[dict[str, int]]:
        """Per open socket: the version it has, unacknowledged updates, updates sent, ticks coalesced,
        and the bytes waiting in its socket's buffer."""
        out = []
        for b in self._browsers:
            transport = b.ws.transport
            out.append({"sent": b.sent, "acked": b.acked, "unacked": sum(v > b.acked for v in b.recent) if b.acks
                        else 0, "updates": b.updates, "coalesced": b.coalesced,
                        "buffered": transport.get_write_buffer_size() if transport is not None else 0})
        return out

    # ------------------------------------------------------------- server
    def _authorised(self, path: str) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlparse(path).query).get("token", [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))  # (str: ASCII only)

    def _host_allowed(self, host: str | None) -> bool:
        """Without a token, only requests addressed to this machine by a loopback name (or to an
        allowed origin's host): a DNS-rebinding page elsewhere names its own host."""
        if self.token:
            return True
        parsed = host_of(host) if host else None
        return parsed is not None and (parsed[0] in LOOPBACK or any(parsed[0] == h for _s, h, _p in
                                                                    self.allowed_origins))

    def _origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """A browser's socket: from the board's own page (Origin = Host) or an allowed origin. A
        client without an Origin header (not a browser) is let through; the token still applies."""
        if origin is None:
            return True
        parsed = origin_of(origin)
        if parsed is None:
            return False
        if parsed in self.allowed_origins:
            return True
        asked = host_of(host) if host else None
        return asked is not None and asked[0] == parsed[1] and (asked[1] or DEFAULT_PORTS[parsed[0]]) == parsed[2]

    def _refuse(self, connection: ServerConnection, reason: str, status: HTTPStatus, text: str,
                said: str) -> Response:
        self.refused[reason] += 1
        if self.refused[reason] <= 3:  # the first few of each reason, then only counted
            log.warning("dashboard: refused %s (%s)", said, reason)
        return connection.respond(status, text)

    def _http(self, connection: ServerConnection, request: Request) -> Response | Awaitable[Response] | None:
        path = urlparse(request.path).path
        host = request.headers.get("Host")
        if not self._host_allowed(host):
            return self._refuse(connection, "host", HTTPStatus.FORBIDDEN,
                                "this board answers only on this machine (http://127.0.0.1:PORT/)\n",
                                f"a request for host {host!r}")
        if path == "/ws":
            origin = request.headers.get("Origin")
            if not self._origin_allowed(origin, host):
                return self._refuse(connection, "origin", HTTPStatus.FORBIDDEN,
                                    "this origin may not open the board's socket (options: allowed_origins)\n",
                                    f"a WebSocket from origin {origin!r}")
        if not self._authorised(request.path):
            return self._refuse(connection, "token", HTTPStatus.UNAUTHORIZED, "a token is needed: ?token=...\n",
                                "a request without the right token")
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        if path == "/athlete.js":
            headers = Headers([("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "no-store"),
                               ("Content-Length", str(len(self.js)))])
            return Response(HTTPStatus.OK.value, "OK", headers, self.js)
        if path == "/report":
            return self._report(connection, request.path)
        if path in ("/", "/index.html"):
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                               ("Content-Length", str(len(self.page)))])
            return Response(HTTPStatus.OK.value, "OK", headers, self.page)
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def _report(self, connection: ServerConnection, raw: str) -> Response:
        """The session's report (services/report.py ``render_report``) from the store, when this
        service has a store sink; rendered on a thread, so the board's loop (and every browser's
        updates) goes on meanwhile."""
        if not self.store_url:
            return connection.respond(HTTPStatus.NOT_FOUND, "this service has no store sink: no report\n")
        try:
            from poserun.services import report
            from poserun.sinks.store import Database
        except ImportError:
            return connection.respond(HTTPStatus.NOT_FOUND, "this install cannot render reports\n")
        render = getattr(report, "render_report", None)
        if render is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "this install cannot render reports\n")
        session = parse_qs(urlparse(raw).query).get("session", [""])[0][:120] or next(
            (str(t["session"]) for t in self.tiles.values() if t.get("session")), "")
        if not session:
            return connection.respond(HTTPStatus.NOT_FOUND, "no session yet\n")
        try:
            def rendered() -> bytes:
                db = Database(self.store_url, create=False)
                try:
                    return str(render(db, session)).encode()
                finally:
                    db.close()

            body = await asyncio.to_thread(rendered)
        except Exception as exc:  # a store that is down, a session not stored yet: said, not raised
            log.warning("dashboard: report for %s failed: %s", session, exc)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"no report for {session!r}: {exc}\n")
        headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                           ("Content-Length", str(len(body)))])
        return Response(HTTPStatus.OK.value, "OK", headers, body)

    async def _client(self, ws: ServerConnection) -> None:
        b = _Browser(ws, sent=self.version)
        self._browsers.add(b)
        try:
            await self._send(b, _JSON.encode(self.state()))
            b.task = asyncio.create_task(self._sender(b))
            async for message in ws:  # browsers acknowledge updates, ask to watch one athlete; all checked
                try:
                    msg = json.loads(message)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                    kind = msg.get("type")
                    if kind == "ack":
                        seq = msg.get("seq")
                        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= b.sent:
                            raise ValueError("not a version this browser was sent")
                        b.acks, b.acked = True, max(b.acked, seq)
                        if b.sent < self.version or self._detail_due(b):
                            b.wake.set()
                    elif kind == "watch" and isinstance(msg.get("athlete"), str):
                        who = msg["athlete"][:64]
                        b.watching, b.points_sent = who, self._points.get(who, 0)
                        await self._send(b, _JSON.encode({"type": "detail", "athlete": who,
                                                          "history": list(self.history.get(who, ())),
                                                          "last": self.detail(who), "reset": True}))
                    elif kind == "act":
                        await self._send(b, _JSON.encode(self.act(msg)))
                    elif kind == "unwatch":
                        b.watching = None
                    elif kind == "ping":
                        await self._send(b, '{"type":"pong"}')
                    else:
                        raise ValueError("unknown message")
                except (ValueError, TypeError):
                    self.bad_messages += 1
        except ConnectionClosed:
            pass
        finally:
            self._browsers.discard(b)
            if b.task is not None:
                b.task.cancel()

    async def _push(self) -> None:
        """Tick on a fixed schedule (``update_hz``), not drifting by the time a tick takes."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.period
            if due < loop.time() - self.period:  # the loop was held up: tick now, no burst to catch up
                due = loop.time()
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.tick()

    def connection_stats(self) -> dict[str, object]:
        """The board's part of the service's stats (``sinks.dashboard``)."""
        return {"clients": len(self._browsers), "bad_messages": self.bad_messages, "updates_sent": self.updates_sent,
                "bytes_sent": self.bytes_sent, "coalesced": self.coalesced,
                **{f"refused_{k}": v for k, v in self.refused.items()}}

    async def start(self) -> None:
        """Listen on ``host:port``: an explicit port that is taken is an error (port 0: any free one)."""
        try:
            self._server = await serve(self._client, self.host, self.port, process_request=self._http,
                                       max_size=4096, compression=None)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                said = (f"the dashboard's port {self.port} on {self.host} is already in use (another poserun "
                        "or board?): stop that program, or set the dashboard sink's port option to a free port "
                        "(0: any free port)")
            else:
                said = f"the dashboard cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            err = OSError(said)  # (one line for the CLI; the errno kept)
            err.errno = exc.errno
            raise err from None
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        self._pusher = asyncio.create_task(self._push())
        if self.broker is not None:  # the board shows at once; the broker's parts come when it answers
            if self.actions is not None:
                self._broker_tasks.append(asyncio.create_task(self._retrying("coach actions", self._start_actions)))
            self._broker_tasks.append(asyncio.create_task(self._retrying("the bands' cues", self._watch_cues)))
        log.info("dashboard at http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    async def _retrying(self, what: str, start: Any) -> None:
        """``start()`` until it succeeds (1 s doubling to 30 s between tries): a broker that is down
        when the board starts costs the board nothing but these parts, for as long as it is down."""
        delay = 1.0
        while not self._broker_stop.is_set():
            try:
                await start()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dashboard: %s wait for the broker (%s); again in %.0f s", what, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._broker_stop.wait(), delay)
                delay = min(30.0, 2 * delay)

    async def _start_actions(self) -> None:
        await self.actions.start()
        self.actions_ready = True

    async def _watch_cues(self) -> None:
        """Every haptic command on the broker (the bands' own topic): the board says which athlete's
        band buzzed and why, as an alert with its count over the last minute."""
        from poserun.services.mqtt_stream import LoopSubscriber

        sub = LoopSubscriber(self.broker, [topics.subscription(None, "haptic")], self._cue, qos=0, role="board",
                             max_backlog_bytes=1 << 20)
        await sub.run(self._broker_stop, self.cues_ready)

    def _cue(self, topic: str, payload: bytes, _recv_ns: int) -> None:
        try:
            t = topics.parse(topic)
            cmd = json.loads(payload)
            if t.athlete is None or not isinstance(cmd, dict) or t.athlete not in self.tiles:
                raise ValueError("not a command for an athlete on this board")
        except (ValueError, TypeError, WireError):
            self.bad_messages += 1
            return
        reason = str(cmd.get("reason", "?"))[:40]
        if reason == "metronome":  # a beat a step: the metronome's state is the tile's, not an alert
            return
        self.cues_seen += 1
        now = time.monotonic()
        times = self._cues.setdefault(t.athlete, deque())
        times.append(now)
        while times and now - times[0] > ALERT_WINDOW_S:
            times.popleft()
        self._alert(t.athlete, "buzzed", len(times), f"band buzzed: {reason.replace('_', ' ')}")

    async def close(self) -> None:
        self._broker_stop.set()
        for task in self._broker_tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5.0)
        if self.actions is not None:
            await self.actions.close()
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
