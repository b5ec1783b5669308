"""``poserun demo``: the whole mission on one machine, one command.

A simulated team publishes over MQTT; the fusion service turns it into records; the sinks
show each part of the mission: a team table on the terminal, the coach's board in the
browser, haptic cues to a virtual band (``poserun haptic-sim``'s, run here on a thread) whose
every buzz the terminal prints, ``/metrics`` for Prometheus, and the session store. At the
end (Ctrl-C or ``--duration``) the session report is written from the store and its path
printed. Every URL is printed at start.

Broker choice: ``--broker URL`` if given; else a broker answering on
127.0.0.1:1883; else a private one started for the demo in its own process
(``mosquitto`` when installed, else the embedded amqtt broker, with the team
kept small enough for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from poserun.services.broker import check_port_free, local_broker
from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.haptic_sim import Band, run_band
from poserun.services.mqtt import broker_answers
from poserun.services.sim.team import SimTeam
from poserun.services.warmup import warm_up
from poserun.settings import AthleteSettings, Settings, load_settings
from poserun.sinks.base import SinkRunner, build_sink
from poserun.sinks.store import Database
from poserun.sinks.store import store_url as store_url_of
from poserun.wire import topics

log = logging.getLogger(__name__)
EMBEDDED_MAX_ATHLETES = 4
BOARD_PORT = 8765  # the board's port without a config, when free
METRICS_PORT = 9464  # /metrics without a config, when free (the Prometheus sink's default)
OUT_DIR = "poserun-demo"  # the demo's session store and reports, without --out
DRAIN_S = 5.0  # at the end of a --duration run, the longest wait for frames still on their way


def choose_broker(url: str | None) -> tuple[str | None, str]:
    """(url, or None for a broker of the demo's own; a sentence saying why)."""
    if url:
        return url, f"using the broker you named: {url}"
    if broker_answers("127.0.0.1", 1883, timeout=0.5):
        return "mqtt://127.0.0.1:1883", "using the MQTT broker answering on 127.0.0.1:1883"
    return None, "no broker answers on 127.0.0.1:1883"


async def run_demo(settings: Settings, *, broker: str | None = None, duration: float | None = None,
                   out: TextIO | None = None, stop: asyncio.Event | None = None,
                   embedded: bool = False, out_dir: str | Path = OUT_DIR) -> dict[str, Any]:
    """Run the demo until ``stop`` (Ctrl-C) or ``duration``; returns the service's last snapshot
    with the band's summary (``band``) and the report's path (``report``, None if not written)."""
    out = out or sys.stdout
    url, why = (None, "--embedded-broker") if embedded else choose_broker(broker)
    with contextlib.ExitStack() as stack:
        athletes = settings.sim.athletes
        if url is None:
            url, kind = stack.enter_context(local_broker(amqtt=embedded))
            name = "a private mosquitto" if kind == "mosquitto" else "the embedded amqtt broker"
            why += f": started {name} at {url} in its own process"
            if kind == "amqtt" and athletes > EMBEDDED_MAX_ATHLETES:
                why += f"; team cut from {athletes} to {EMBEDDED_MAX_ATHLETES} athletes for it"
                athletes = EMBEDDED_MAX_ATHLETES
        settings = settings.model_copy(update={
            "broker": settings.broker.model_copy(update={"url": url}),
            "sim": settings.sim.model_copy(update={"athletes": athletes}),
        })
        session = settings.session.id
        team = SimTeam(session, settings.sim, settings.athletes)
        listed = {a.id for a in settings.athletes}
        settings = settings.model_copy(update={"athletes": [
            *settings.athletes,
            *(AthleteSettings(id=s.athlete_id, name=s.name, body_mass_kg=s.body_mass_kg,
                              leg_length_m=s.leg_length_m, profile=s.profile.name)
              for s in team.specs if s.athlete_id not in listed),
        ]})
        context = {
            "broker": settings.broker,
            "settings": settings,
            "athlete_names": {s.athlete_id: s.name for s in team.specs},
            "athlete_profiles": {s.athlete_id: s.profile.name for s in team.specs},
        }
        runners = [SinkRunner(build_sink(s.type, s.options, context), s.queue_size)
                   for s in settings.sinks]
        service = FusionService(settings, runners, session=session)
        context["stats"] = service.snapshot
        out.write(
            f"poserun demo\n  broker   {why}\n  session  {session}: {athletes} simulated athletes "
            f"({', '.join(sorted({s.profile.name for s in team.specs}))})\n"
            f"  sensors  {', '.join(settings.sim.sensors)} "
            f"(IMU {settings.sim.imu_hz:g} Hz, insole {settings.sim.insole_hz:g} Hz, "
            f"camera {settings.sim.camera_fps:g} fps)\n"
            f"  look     mosquitto_sub -L {url}/{topics.subscription(session, 'records')} -v\n"
            f"  stop     Ctrl-C\n\n"
        )
        out.flush()
        stop = stop or asyncio.Event()
        ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        out.write("  warm-up  ")
        out.flush()
        report = await asyncio.to_thread(warm_up, progress=lambda line: (out.write(f"{line.strip()}; "), out.flush()))
        out.write(f"kernels {'compiled' if report.cold else 'loaded'} in {report.seconds:.1f} s\n")
        out.flush()
        fusion = asyncio.create_task(service.run(stop, ready))
        up = asyncio.create_task(ready.wait())
        await asyncio.wait({fusion, up}, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        if fusion.done():
            fusion.result()  # raise the start-up error (or return: Ctrl-C during warm-up)
        band, band_stop, band_ready = Band(), threading.Event(), threading.Event()
        band_thread = threading.Thread(target=run_band, args=(settings.broker,), daemon=True, kwargs={
            "session": session, "stop": band_stop, "out": out, "ready": band_ready, "band": band})
        gw_stop = threading.Event()
        store_url = store_url_of(settings)
        report_path = Path(out_dir) / f"{session}.html"
        t0 = time.monotonic()
        try:
            band_thread.start()
            await asyncio.to_thread(band_ready.wait, 10.0)
            out.write(_urls(runners, store_url, report_path))
            out.flush()
            gateway = asyncio.create_task(asyncio.to_thread(
                run_sim_gateway, settings, duration=duration, stop=gw_stop, team=team))
            stopper = asyncio.create_task(stop.wait())
            # until Ctrl-C, the end of the run, or the service failing
            await asyncio.wait({gateway, stopper, fusion}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            t0 = time.monotonic()
            gw_stop.set()
            sent = 0
            with contextlib.suppress(Exception):
                published = await gateway
                sent = published.frames  # (bundles hold several; truth messages are no frames)
            # the run ended by itself: let the service take the last frames (up to DRAIN_S), not Ctrl-C
            drain_until = time.monotonic() + DRAIN_S
            while not stop.is_set() and not fusion.done() \
                    and service.snapshot()["totals"].get("frames", 0) < sent and time.monotonic() < drain_until:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            gw_stop.set()
            band_stop.set()
            await fusion  # the sinks are flushed and closed here (the store before its report)
            await asyncio.to_thread(band_thread.join, 5.0)
        snap = service.snapshot()
        out.write(f"stopped in {time.monotonic() - t0:.2f} s: {snap['totals'].get('frames', 0)} "
                  f"frames, {snap['records']} records, rejected {snap['rejected'] or 'none'}\n")
        snap["band"] = summary = band.summary()
        lat = summary["ic_to_band_ms"]
        out.write(f"  band     {summary['buzzes']} cues "
                  f"({', '.join(f'{k} {v}' for k, v in summary['by_reason'].items()) or 'none'})"
                  + (f"; initial contact to band p50 {lat['p50']} ms, p99 {lat['p99']} ms" if lat["p50"] else "")
                  + "\n")
        snap["report"] = await asyncio.to_thread(_write_report, store_url, session, report_path, out)
        out.flush()
        return snap


def _urls(runners: list[SinkRunner], store_url: str | None, report_path: Path) -> str:
    """The lines that say where to look: the board, /metrics, the store and the report to come."""
    lines = []
    for runner in runners:
        sink: Any = runner.sink
        if sink.name == "dashboard":
            lines.append(f"  board    open {sink.url} in a browser")
        elif sink.name == "prometheus":
            lines.append(f"  metrics  http://{sink.host}:{sink.port}/metrics (Prometheus scrapes this)")
        elif sink.name == "haptic":
            lines.append("  band     a virtual haptic band: each cue it gets is printed here as 'buzz ...'")
    if store_url is not None:
        lines.append(f"  store    {store_url} (poserun sessions --db {store_url})")
        lines.append(f"  report   written at the end (Ctrl-C) to {report_path}")
    return "\n".join(lines) + "\n\n"


def _write_report(store_url: str | None, session: str, path: Path, out: TextIO) -> str | None:
    """The session's report from the store, its path printed; a sentence instead when it cannot be."""
    if store_url is None:
        out.write("  report   none: the config has no store sink\n")
        return None
    from poserun.services.report import build_report

    try:
        db = Database(store_url, create=False)
        try:
            build_report(db, session, path)
        finally:
            db.close()
    except ValueError as exc:  # no store yet, or no records in it
        out.write(f"  report   not written: {exc}\n")
        return None
    out.write(f"  report   {path.resolve()}\n")
    return str(path)


def free_or_any(port: int) -> int:
    """``port`` when free, else 0 (any free port): the demo's own board and /metrics always start,
    while a port a config names is that port or an error."""
    try:
        check_port_free(port)
    except OSError:
        return 0
    return port


def demo_settings(path: str | None, athletes: int | None, session: str | None = None,
                  out_dir: str | Path = OUT_DIR) -> Settings:
    """The demo's settings: a config file if given, else the whole mission: a team table on the
    terminal, the board (port 8765), haptic cues, /metrics (port 9464; any free port when one is
    taken) and a session store in ``out_dir`` (``demo.sqlite``).

    The session id is ``session`` if given, else the config's if it names one, else a new one per
    run (``demo-YYYYMMDD-HHMMSS-xxxx``), so two demos on one broker never mix their data.
    """
    store = f"sqlite:///{(Path(out_dir) / 'demo.sqlite').resolve()}"
    over: dict[str, Any] = {} if path else {"sinks": [
        {"type": "console"},
        {"type": "dashboard", "options": {"port": free_or_any(BOARD_PORT)}},
        {"type": "haptic"},
        {"type": "prometheus", "options": {"port": free_or_any(METRICS_PORT)}},
        {"type": "store", "options": {"url": store}},
    ]}
    if athletes is not None:
        over["sim"] = {"athletes": athletes}
    if session is not None:
        over["session"] = {"id": session}
    settings = load_settings(path, overrides=over)
    if session is None and "id" not in settings.session.model_fields_set:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        settings = settings.model_copy(update={"session": settings.session.model_copy(
            update={"id": f"demo-{stamp}-{secrets.token_hex(2)}"})})
    return settings
