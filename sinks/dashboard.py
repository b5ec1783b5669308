"""The live coach dashboard: a team board in the browser, served by poserun itself.

``websockets`` serves both the page (plain HTTP GET, no build step, no
third-party front-end code) and the live socket. A new browser gets the
whole team's state at once, then updates at ``update_hz`` (10 per second,
one message for all changed athletes, so 100 athletes stay smooth); the
page reconnects by itself. Bound to 127.0.0.1 by default; bound elsewhere it
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
from http import HTTPStatus
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from poserun.sinks.base import Record

log = logging.getLogger(__name__)
TILE_FIELDS = ("cadence_spm", "support_time_s", "ball_load_fraction", "fall_angle_deg", "pose_score",
               "strike_zone", "flight_time_s", "overstride_m")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}


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
        self.tiles: dict[str, dict[str, Any]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=alerts)
        self._forced: dict[str, deque[float]] = {}
        self._dirty: set[str] = set()
        self._new_alerts: list[dict[str, Any]] = []
        self._clients: set[ServerConnection] = set()
        self.history: dict[str, deque[dict[str, Any]]] = {}  # per athlete, the last stances (charts)
        self.detail: dict[str, dict[str, Any]] = {}  # per athlete, the last stance's pictures
        self._watching: dict[ServerConnection, str] = {}
        self._fresh: dict[str, list[dict[str, Any]]] = {}  # history points not pushed yet
        self._server: Server | None = None
        self._pusher: asyncio.Task[None] | None = None
        self.bad_messages = 0
        self.page = files("poserun.sinks.web").joinpath("dashboard.html").read_bytes()

    # ------------------------------------------------------------ records
    async def write_batch(self, records: list[Record]) -> None:
        now = time.monotonic()
        for rec in records:
            who = str(rec.get("athlete"))
            tile = self.tiles.setdefault(who, {"athlete": who, "name": self.names.get(who, ""), "stances": 0,
                                               "forced_last_min": 0, "sources": [], "session": rec.get("session")})
            if rec.get("type") == "landing" and rec.get("forced_landing"):
                times = self._forced.setdefault(who, deque())
                times.append(now)
                alert = {"athlete": who, "name": tile["name"], "reason": "forced landing", "foot": rec.get("foot"),
                         "severity": rec.get("forced_landing_severity"), "t": time.time()}
                self.alerts.appendleft(alert)
                self._new_alerts.append(alert)
                tile["flash"] = tile.get("flash", 0) + 1
            elif rec.get("type") == "stance":
                tile["stances"] += 1
                for k in TILE_FIELDS:
                    if rec.get(k) is not None:
                        tile[k] = rec[k]
                tile["sources"] = rec.get("sources", [])
                point = {"t": rec.get("ic_ns"), "foot": rec.get("foot"), "support": rec.get("support_time_s"),
                         "cadence": rec.get("cadence_spm"), "flight": rec.get("flight_time_s")}
                self.history.setdefault(who, deque(maxlen=240)).append(point)
                self._fresh.setdefault(who, []).append(point)
                self.detail[who] = {k: rec.get(k) for k in ("pressure_map", "pose_ic", "symmetry_pct", "foot",
                                                             "strike_zone", "support_time_s", "knee_flexion_ic_deg",
                                                             "overstride_m", "fall_angle_deg")}
            tile["seen"] = time.time()
            self._dirty.add(who)
        for who, times in self._forced.items():
            while times and now - times[0] > 60.0:
                times.popleft()
            if self.tiles[who]["forced_last_min"] != len(times):
                self.tiles[who]["forced_last_min"] = len(times)
                self._dirty.add(who)

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

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
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
        if path in ("/", "/index.html"):
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                               ("Content-Length", str(len(self.page)))])
            return Response(HTTPStatus.OK.value, "OK", headers, self.page)
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def _client(self, ws: ServerConnection) -> None:
        self._clients.add(ws)
        try:
            await ws.send(json.dumps({"type": "state", "tiles": list(self.tiles.values()),
                                      "alerts": list(self.alerts)}))
            async for message in ws:  # browsers ask to watch one athlete; anything else is checked
                try:
                    msg = json.loads(message)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                    if msg.get("type") == "watch" and isinstance(msg.get("athlete"), str):
                        who = msg["athlete"][:64]
                        self._watching[ws] = who
                        await ws.send(json.dumps({"type": "detail", "athlete": who,
                                                  "history": list(self.history.get(who, ())),
                                                  "last": self.detail.get(who), "reset": True}))
                    elif msg.get("type") == "unwatch":
                        self._watching.pop(ws, None)
                    elif msg.get("type") == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    else:
                        raise ValueError("unknown message")
                except (ValueError, TypeError):
                    self.bad_messages += 1
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)
            self._watching.pop(ws, None)

    async def _push(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            if not (self._dirty or self._new_alerts) or not self._clients:
                self._dirty.clear()
                self._new_alerts.clear()
                self._fresh.clear()
                continue
            msg = json.dumps({"type": "update", "tiles": [self.tiles[w] for w in sorted(self._dirty)],
                              "alerts": self._new_alerts})
            self._dirty.clear()
            self._new_alerts = []
            fresh, self._fresh = self._fresh, {}
            for ws in list(self._clients):
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    await asyncio.wait_for(ws.send(msg), 1.0)  # a slow browser is skipped, not waited for
                    who = self._watching.get(ws)
                    if who is not None and who in fresh:
                        await asyncio.wait_for(ws.send(json.dumps({
                            "type": "detail", "athlete": who, "history": fresh[who],
                            "last": self.detail.get(who)})), 1.0)

    def connection_stats(self) -> dict[str, object]:
        """The board's part of the service's stats (``sinks.dashboard``)."""
        return {"clients": len(self._clients), "bad_messages": self.bad_messages,
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
        log.info("dashboard at http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
