"""The live coach dashboard: a team board in the browser, served by poserun itself.

``websockets`` serves both the page (plain HTTP GET, no build step, no
third-party front-end code) and the live socket. A new browser gets the
whole team's state at once, then updates at ``update_hz`` (10 per second,
one message for all changed athletes, so 100 athletes stay smooth); the
page reconnects by itself. Bound to 127.0.0.1 by default; bound elsewhere it
requires a token (``?token=...``) on both the page and the socket. Messages
from browsers are size-limited, parsed defensively, counted and never crash
the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections import deque
from http import HTTPStatus
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from poserun.sinks.base import Record

log = logging.getLogger(__name__)
TILE_FIELDS = ("cadence_spm", "support_time_s", "ball_load_fraction", "fall_angle_deg", "pose_score",
               "strike_zone", "flight_time_s", "overstride_m")


class DashboardSink:
    name = "dashboard"

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 update_hz: float = 10.0, alerts: int = 50, context: dict[str, Any] | None = None) -> None:
        ctx = context if context is not None else {}
        if host not in ("127.0.0.1", "localhost", "::1") and not token:
            raise ValueError("the dashboard binds beyond this machine only with a token (options: token)")
        self.host, self.port, self.token = host, port, token
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
        return hmac.compare_digest(given, self.token)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlparse(request.path).path
        if not self._authorised(request.path):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a token is needed: ?token=...\n")
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

    async def start(self) -> None:
        try:
            self._server = await serve(self._client, self.host, self.port, process_request=self._http,
                                       max_size=4096, compression=None)
        except OSError:  # the port is taken: any free one will do (the URL is printed and logged)
            self._server = await serve(self._client, self.host, 0, process_request=self._http,
                                       max_size=4096, compression=None)
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
