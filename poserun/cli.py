"""The ``poserun`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from poserun import __version__
from poserun.settings import ConfigError, Settings, json_schema, load_settings

log = logging.getLogger("poserun")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if getattr(args, "broker", None):
        over["broker"] = {"url": args.broker}
    if getattr(args, "session", None):
        over["session"] = {"id": args.session}
    sim: dict[str, Any] = {}
    for name in ("athletes", "speed", "seed", "imu_hz", "insole_hz", "camera_fps", "frame_ms",
                 "forced_share"):
        value = getattr(args, name, None)
        if value is not None:
            sim[name] = value
    if getattr(args, "truth", False):
        sim["truth"] = True
    if getattr(args, "json_frames", False):
        sim["json_frames"] = True
    if getattr(args, "sensors", None):
        sim["sensors"] = args.sensors.split(",")
    if getattr(args, "profiles", None):
        sim["profiles"] = args.profiles.split(",")
    if sim:
        over["sim"] = sim
    nats: dict[str, Any] = {}
    if getattr(args, "nats", None):
        nats["servers"] = [u.strip() for u in args.nats.split(",") if u.strip()]
    for name in ("partitions", "replicas"):
        if getattr(args, name, None) is not None:
            nats[name] = getattr(args, name)
    if nats:
        over["nats"] = nats
    return over


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None), overrides=_overrides(args))


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


# ------------------------------------------------------------------ commands

def cmd_demo(args: argparse.Namespace) -> int:
    from poserun.services.demo import demo_settings, run_demo

    settings = demo_settings(args.config, args.athletes, args.session, args.out)
    asyncio.run(run_demo(settings, broker=args.broker, duration=args.duration,
                         embedded=args.embedded_broker, out_dir=args.out))
    return 0


def cmd_gateway_sim(args: argparse.Namespace) -> int:
    from poserun.services.gateway_sim import run_sim_gateway

    settings = _settings(args)
    stop = _stop_on_signals()
    if args.pregenerate and not args.duration:
        raise SystemExit("poserun gateway sim: --pregenerate needs --duration")
    stats = run_sim_gateway(settings, duration=args.duration, stop=stop, pregenerate=args.pregenerate)
    print(json.dumps({"messages": stats.messages, "frames": stats.frames, "bytes": stats.bytes, "truth": stats.truth,
                      "sim_seconds": round(stats.sim_seconds, 3),
                      "wall_seconds": round(stats.wall_seconds, 3),
                      "max_lag_s": round(stats.max_lag_s, 3)}))
    return 0


def cmd_gateway_replay(args: argparse.Namespace) -> int:
    from poserun.services.replay import GATEWAY_CHANNELS, replay

    settings = _settings(args)
    stop = _stop_on_signals()
    channels = tuple(args.channels.split(",")) if args.channels else GATEWAY_CHANNELS
    if args.truth and "truth" not in channels:
        channels += ("truth",)
    stats = replay(settings.broker, args.file, speed=args.replay_speed, session=args.as_session, stop=stop,
                   channels=channels)
    print(json.dumps({"messages": stats.messages, "bytes": stats.bytes, "skipped": stats.skipped,
                      "channels": list(channels), "seconds": round(stats.seconds, 3)}))
    return 0


def cmd_gateway_moticon(args: argparse.Namespace) -> int:
    from poserun.services.gateway_moticon import parse_listen, run_moticon_gateway
    from poserun.services.moticon_parse import parse_fields

    settings = _settings(args)
    stats = run_moticon_gateway(settings.broker, args.session or settings.session.id, args.athlete,
                                listen=parse_listen(args.listen), frame_ms=args.frame_ms, rate_hz=args.rate_hz,
                                fields=parse_fields(args.fields), duration=args.duration,
                                stop=_stop_on_signals(), ready_file=args.ready_file)
    print(json.dumps(stats.as_dict()))
    return 0


def _camera_options(args: argparse.Namespace, settings: Any) -> Any:
    from poserun.services.gateway_camera import camera_options

    try:
        return camera_options(settings, athlete=args.athlete, regions=args.region or [], marks=args.marks,
                              marks_m=args.marks_m, view=args.view, moving=args.moving, origin=args.origin)
    except ValueError as exc:
        raise SystemExit(f"poserun: {exc}") from None


def cmd_gateway_camera(args: argparse.Namespace) -> int:
    from poserun.services.camera_pose import CameraExtraMissing
    from poserun.services.gateway_camera import run_camera_gateway
    from poserun.services.mqtt import BrokerUnavailable

    settings = _settings(args)
    options = _camera_options(args, settings)
    try:
        stats = run_camera_gateway(settings.broker, args.session or settings.session.id, args.source, options,
                                   speed=args.video_speed, duration=args.duration, stop=_stop_on_signals(),
                                   ready_file=args.ready_file, gateway_id=args.gateway_id)
    except BrokerUnavailable:
        raise  # (main says how to start one, as for every command)
    except (CameraExtraMissing, OSError, ValueError) as exc:
        print(f"poserun gateway camera: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats.as_dict()))
    return 0


def cmd_gateway_phone(args: argparse.Namespace) -> int:
    import os
    import secrets

    from poserun.services.gateway_phone import PhoneGateway, lan_address

    settings = _settings(args)
    secret = args.secret or os.environ.get("POSERUN_PHONE_SECRET")
    if not secret:
        secret = secrets.token_hex(16)
        print("no --secret or POSERUN_PHONE_SECRET: a new one for this run (the links change next time)",
              file=sys.stderr)
    try:
        gw = PhoneGateway(settings.broker, args.session or settings.session.id, [a.id for a in settings.athletes],
                          secret, host=args.host, port=args.port, wear=args.wear)
    except ValueError as exc:
        print(f"poserun gateway phone: {exc}", file=sys.stderr)
        return 2
    stop_flag = _stop_on_signals()

    async def main() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(gw.run(stop, ready, duration=args.duration, ready_file=args.ready_file))
        await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            shown = lan_address() if args.host in ("0.0.0.0", "::") else args.host
            for athlete, link in gw.links(f"http://{shown}:{gw.port}").items():
                print(f"{athlete}: {link}", file=sys.stderr)
        while not task.done():
            if stop_flag.is_set():
                stop.set()
            await asyncio.wait([task], timeout=0.2)
        task.result()

    asyncio.run(main())
    print(json.dumps(gw.stats.as_dict()))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from poserun.services.recorder import record

    settings = _settings(args)
    stop = _stop_on_signals()
    ready = threading.Event()
    if args.ready_file:
        def announce() -> None:
            ready.wait()
            Path(args.ready_file).write_text("ready\n")
        threading.Thread(target=announce, daemon=True).start()
    stats = record(settings.broker, args.file, session=args.session, duration=args.duration,
                   idle_stop=args.idle_stop, stop=stop, ready=ready, count=args.count)
    print(json.dumps({"messages": stats.messages, "bytes": stats.bytes,
                      "seconds": round(stats.seconds, 3), "file": str(args.file)}))
    return 0


def _serve(args: argparse.Namespace, run: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]],
           snapshot: Callable[[], dict[str, Any] | None]) -> None:
    """Run a service until SIGINT, SIGTERM or ``--duration``: its ``--ready-file`` once ``run`` sets
    ready, a stats line every ``--stats-interval`` seconds (0: none, and no polling)."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        ready = asyncio.Event()
        task = asyncio.create_task(run(stop, ready))
        if args.ready_file:
            async def announce() -> None:
                await ready.wait()
                Path(args.ready_file).write_text("ready\n")
            announcer = asyncio.create_task(announce())
            task.add_done_callback(lambda _: announcer.cancel())
        while args.stats_interval > 0 and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), args.stats_interval)
            snap = snapshot() if not task.done() else None
            if snap is not None:
                _print_stats(snap, args.stats_file, brief=True)
        await task

    asyncio.run(main())


def cmd_process(args: argparse.Namespace) -> int:
    from poserun.services.fusion import FusionService
    from poserun.services.fusion_pool import FusionPool, WorkerFailed
    from poserun.sinks.base import SinkRunner, build_sink, sink_context

    settings = _settings(args)
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    service: FusionService | FusionPool
    if args.workers > 1:  # the team split by athlete over processes (services/fusion_pool.py)
        service = FusionPool(settings, args.workers, session=args.session)
    else:
        context = sink_context(settings)
        runners = [SinkRunner(build_sink(s.type, s.options, context), s.queue_size)
                   for s in settings.sinks]
        service = FusionService(settings, runners, session=args.session)
        context["stats"] = service.snapshot  # sinks that report the pipeline's health read it at will

    try:
        _serve(args, service.run, service.snapshot)
    except WorkerFailed as exc:  # (a worker could not start: its own log line says why)
        _print_stats(service.snapshot(), args.stats_file, brief=False)
        print(f"poserun process: {exc}", file=sys.stderr)
        return 2
    _print_stats(service.snapshot(), args.stats_file, brief=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _need("nats", "nats", "worker")
    from poserun.services.fusion_worker import FusionWorker, run_worker
    from poserun.sinks.base import SinkRunner, build_sink, sink_context

    settings = _settings(args)
    if any(s.type == "mqtt" for s in settings.sinks):
        log.warning("an mqtt sink in a worker: records already reach MQTT subscribers through the records stream; "
                    "pointed at the NATS MQTT listener it would store each record twice (docs/scaling.md)")
    context = sink_context(settings)
    runners = [SinkRunner(build_sink(s.type, s.options, context), s.queue_size) for s in settings.sinks]
    made: list[FusionWorker] = []

    def wire(worker: FusionWorker) -> None:
        made.append(worker)
        context["stats"] = worker.snapshot

    _serve(args, lambda stop, ready: run_worker(settings, runners, worker_id=args.id, session=None, stop=stop,
                                                ready=ready, on_worker=wire),
           lambda: made[0].snapshot() if made else None)
    if made:
        _print_stats(made[0].snapshot(), args.stats_file, brief=False)
    return 0


def cmd_jetstream_setup(args: argparse.Namespace) -> int:
    _need("nats", "nats", "jetstream setup")
    from poserun.services.fusion_worker import setup_streams

    settings = _settings(args)
    print(json.dumps(asyncio.run(setup_streams(settings))))
    return 0


def _print_stats(snap: dict[str, Any], path: str | None, *, brief: bool) -> None:
    shown = {k: v for k, v in snap.items() if not (brief and k == "sources")}
    line = json.dumps({"stats": shown}, separators=(",", ":"))
    if path:  # whole or not at all: a reader never catches it half written
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(snap, indent=1) + "\n")
        os.replace(tmp, path)
    print(line, file=sys.stderr, flush=True)


def cmd_analyze(args: argparse.Namespace) -> int:
    from poserun.services.analyze import analyze_files, format_summary, output_format, write_records
    from poserun.services.gateway_camera import VIDEO_SUFFIXES

    if args.output:
        fmt = output_format(args.output)  # a wrong suffix fails before the work, not after
        if fmt == "parquet":
            _need("pyarrow", "store", "analyze -o FILE.parquet")
    settings = load_settings(args.config)
    videos = [p for p in args.recordings if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        if len(videos) != len(args.recordings):
            raise SystemExit("poserun analyze: give videos or recordings, not both in one run")
        return _analyze_videos(args, settings)
    camera = {"--report": args.report, "--athlete": args.athlete, "--region": args.region, "--marks": args.marks,
              "--marks-m": args.marks_m, "--view": args.view != "auto", "--moving": args.moving,
              "--origin": args.origin, "--session": args.session}
    if any(camera.values()):
        raise SystemExit(f"poserun analyze: {', '.join(k for k, v in camera.items() if v)} are for videos, "
                         "not recordings")
    bar = _progress_bar(sys.stderr) if not args.quiet else None
    result = analyze_files(args.recordings, settings, progress=bar)
    if bar is not None:
        bar("", 0, 0)  # end the bar's line
    if args.output:
        n = write_records(result.records, args.output)
        print(f"{n} records -> {args.output}", file=sys.stderr)
    else:
        for r in result.records:
            sys.stdout.write(json.dumps(r, separators=(",", ":")) + "\n")
    print(format_summary(result.summary()), file=sys.stderr)
    for path, snap in result.files.items():
        if snap["rejected"]:
            print(f"{path}: refused {snap['rejected']}", file=sys.stderr)
        for who, counts in snap.get("warnings", {}).items():
            print(f"{path}: {who}: warnings {counts}", file=sys.stderr)
    return 0


def _camera_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--athlete", help="the one athlete this camera films (the whole image)")
    p.add_argument("--region", action="append", metavar="ATHLETE=X0,Y0,X1,Y1",
                   help="an athlete's part of the image, as fractions of its width and height (a lane; repeat "
                        "per athlete)")
    p.add_argument("--marks", metavar="X1,Y1,X2,Y2",
                   help="two image points (px) a known distance apart on the athletes' plane: the scale")
    p.add_argument("--marks-m", type=float, help="the distance between the --marks, in metres")
    p.add_argument("--view", choices=["auto", "sagittal_right", "sagittal_left"], default="auto",
                   help="which way the athletes run in the image (default auto: where the toes point)")
    p.add_argument("--moving", action="store_true", help="the camera follows the athlete (panning, treadmill)")
    p.add_argument("--origin", metavar="X,Y", help="the pixel of the ground under the hip line (default: the "
                                                   "bottom centre of the image)")


def _analyze_videos(args: argparse.Namespace, settings: Any) -> int:
    """``poserun analyze VIDEO...``: per video, the records (stdout or ``-o``) and an HTML report."""
    from poserun.services.analyze import write_records
    from poserun.services.camera_pose import CameraExtraMissing
    from poserun.services.video_analysis import analyze_video, format_video_summary, video_session, write_video_report

    if args.report and len(args.recordings) > 1:
        raise SystemExit("poserun analyze: --report names one file: analyze one video at a time with it")
    from poserun.wire import topics

    if args.session and not topics.valid_id(args.session):
        raise SystemExit(f"poserun analyze: session id {args.session!r} is invalid: use 1-64 letters, digits, '_', "
                         "'.' or '-', starting with a letter or digit")
    options = _camera_options(args, settings)
    records: list[dict[str, Any]] = []
    rc = 0
    for video in args.recordings:
        bar = _progress_bar(sys.stderr) if not args.quiet else None
        try:
            analysis = analyze_video(video, settings, options, session=args.session or video_session(video),
                                     progress=(lambda n, total, v=video, b=bar: b(v, n, total)) if bar else None)
        except CameraExtraMissing as exc:
            print(f"poserun analyze: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # this video; the others' records are still written
            print(f"poserun analyze: {exc}", file=sys.stderr)
            rc = 2
            continue
        if bar is not None:
            bar("", 0, 0)
        report = write_video_report(analysis, args.report or f"{Path(video).stem}-report.html")
        print(format_video_summary(analysis), file=sys.stderr)
        print(f"report -> {report}", file=sys.stderr)
        records += analysis.records
        refused = analysis.keypoint_frames()[1]
        if refused:
            print(f"poserun analyze: {video}: the processor refused {refused} messages: "
                  f"{analysis.snapshot.get('rejected')}", file=sys.stderr)
            rc = rc or 1
    if args.output:
        n = write_records(records, args.output)
        print(f"{n} records -> {args.output}", file=sys.stderr)
    else:
        for r in records:
            sys.stdout.write(json.dumps(r, separators=(",", ":")) + "\n")
    return rc


def _progress_bar(stream: Any) -> Any:
    """A one-line progress bar on a terminal (nothing when ``stream`` is not one); ``("", 0, 0)`` ends it."""
    if not stream.isatty():
        return None
    shown = [False]

    def bar(name: str, n: int, total: int) -> None:
        if not name:
            if shown[0]:
                stream.write("\n")
            return
        share = n / total if total else 0.0
        filled = int(30 * share)
        stream.write(f"\r{Path(name).name[:30]:<30} [{'#' * filled}{'.' * (30 - filled)}] {100 * share:5.1f} % "
                     f"{n:,} messages")
        stream.flush()
        shown[0] = True

    return bar


#: options of ``poserun import`` that only some formats take (the others refuse them)
IMPORT_ONLY = {
    "--source": ("csv",), "--placement": ("csv",), "--side": ("csv",), "--axes": ("csv",), "--meta": ("csv",),
    "--rate": ("csv", "text"), "--unit": ("text",), "--markers": ("text", "trc", "qtm", "c3d"),
    "--up": ("csv", "text", "trc", "qtm", "c3d"), "--forward": ("csv", "text", "trc", "qtm", "c3d"),
    "--force": ("qtm",), "--force-threshold": ("qtm", "c3d"), "--running-only": ("bach2022",),
    "--body-mass": ("csv", "text", "trc", "qtm", "c3d"), "--leg-length": ("csv", "text", "trc", "qtm", "c3d"),
    "--height": ("csv", "text", "trc", "qtm", "c3d"),
}


def cmd_import(args: argparse.Namespace) -> int:
    from poserun.services import importer

    session = args.session or ("bach2022" if args.format == "bach2022" else "lab")
    for flag, formats in IMPORT_ONLY.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value not in (None, False) and args.format not in formats:
            raise importer.ImportError_(f"{flag} is for import {' or '.join(formats)}, not {args.format}")

    def say(text: str) -> None:
        print(f"poserun import: {text}", file=sys.stderr)

    if args.format == "bach2022":
        messages, athletes = importer.import_bach2022(
            args.input, session=session, running_only=args.running_only, frame_ms=args.frame_ms)
        n = importer.write_recording(args.output, messages, athletes=athletes,
                                     metadata={"session": session, "source": "Bach et al. 2022 (GPL-3.0)"})
        print(json.dumps({"messages": n, "file": str(args.output)}))
        return 0
    subject = {"body_mass_kg": args.body_mass, "leg_length_m": args.leg_length, "height_m": args.height}
    importer.athlete_entry(args.athlete, **subject)  # a bad subject is refused before any file is read
    extra: dict[str, Any] = {}
    if args.format in ("qtm", "c3d", "trc", "text"):
        if args.format == "trc":
            messages, info = importer.import_trc(args.input, session=session, athlete=args.athlete,
                                                 up=args.up or "+y", forward=args.forward or "+x",
                                                 markers=args.markers, frame_ms=args.frame_ms)
        elif args.format == "text":
            from poserun.services.import_text import import_text

            messages, info = import_text(args.input, session=session, athlete=args.athlete, up=args.up or "+z",
                                         forward=args.forward or "+y", rate=args.rate, unit=args.unit,
                                         markers=args.markers, frame_ms=args.frame_ms)
        else:
            from poserun.services.import_c3d import import_c3d
            from poserun.services.import_qtm import THRESHOLD_N, import_qtm

            common = {"session": session, "athlete": args.athlete, "up": args.up or "+z",
                      "forward": args.forward or "+y", "threshold_n": args.force_threshold or THRESHOLD_N,
                      "markers": args.markers, "frame_ms": args.frame_ms}
            messages, info = (import_qtm(args.input, args.force or [], **common) if args.format == "qtm"
                              else import_c3d(args.input, **common))
        found = f"{args.input}: {info['markers']} markers at {info['rate_hz']:g} Hz"
        if "plates" in info:
            found += f"; plates {info['plates'] or 'none'}; contacts {info['contacts'] or 'none'}"
        say(found)
        for note in info.get("notes", []):
            say(f"{args.input}: {note}")
        if info.get("warning"):
            say(f"warning: {args.input}: {info['warning']}")
        roles = info["roles"]
        say(f"marker roles ({'mapping file and names' if roles.mapped else 'from the names'}):\n{roles.report()}")
        extra["markers"] = roles.as_metadata()
    else:
        messages, extra = _import_sensor_csv(args, session, say)
    athlete = importer.athlete_entry(args.athlete, **subject, **extra)
    n = importer.write_recording(args.output, messages, athletes=[athlete],
                                 metadata={"session": session, "source": args.format})
    print(json.dumps({"messages": n, "file": str(args.output)}))
    return 0


def _import_sensor_csv(args: argparse.Namespace, session: str, say: Any) -> tuple[list[Any], dict[str, Any]]:
    """``poserun import csv``: the table, its meta from the options (services/import_sensor.py), frames."""
    from poserun.services import import_sensor as sensor
    from poserun.services import importer
    from poserun.wire import meta as wm

    times, table, _ = importer.read_csv_table(args.input)
    rate = args.rate or _rate(times)
    extra: dict[str, Any] = {}
    meta: Any
    if args.meta:
        meta = wm.parse_meta(Path(args.meta).read_bytes())
    else:
        source, placement, side, notes = sensor.sensor_source(args.source, args.placement, args.side)
        if source.startswith("imu_"):
            given = [c.strip() for c in args.channels.split(",")]
            if table.shape[1] != len(given):
                raise importer.ImportError_(f"{args.input}: {table.shape[1]} channel columns, --channels names "
                                            f"{len(given)} ({args.channels})")
            table, channels, pad_notes = sensor.pad_channels(table, given, placement)
            notes += pad_notes
            axes = sensor.imu_axes(args.axes, args.up, args.forward)
            if placement not in sensor.SIDED and len(given) < 3 and sensor.lateral_missing(axes, given):
                notes.append("no lateral accelerometer axis: the pelvis detector cannot tell left from right")
            accel_unit = args.accel_unit
            if accel_unit == "mg":
                table = table.copy()
                table[:, :3] /= 1000.0
                accel_unit = "g"
            unknown = args.side == "unknown" and placement in sensor.SIDED
            meta = sensor.imu_meta(source, placement or "pelvis", side, rate, channels, accel_unit,
                                   args.gyro_unit, axes,
                                   device="side not known: imported as this side" if unknown else None)
            if unknown:
                extra["sensor_side_unknown"] = [source]
        elif source.startswith("force_"):
            meta = wm.ForceMeta(source=source, rate_hz=rate, side=side)  # type: ignore[arg-type]
        else:
            raise ConfigError(f"import csv of {source} needs --meta FILE (a meta JSON)")
        for note in notes:
            say(f"{args.input}: {note}")
        extra["sensors"] = {source: {k: v for k, v in (("placement", placement), ("side", args.side or side))
                                     if v}}
    if isinstance(meta, wm.ImuMeta) and meta.placement in ("foot", "shank") and \
            (warning := importer.accel_unit_warning(table, meta.accel_unit)):
        say(f"warning: {args.input}: {warning}")
    if len(meta.channels) != table.shape[1]:
        raise importer.ImportError_(f"{args.input}: {table.shape[1]} channel columns, the {meta.kind} meta "
                                    f"needs {len(meta.channels)}")
    messages = [importer.meta_message(session, args.athlete, meta, int(times[0])),
                *importer.frames_from_table(session, args.athlete, meta.source, times, table,
                                            frame_ms=args.frame_ms)]
    return messages, extra


def _rate(times_ns: Any) -> float:
    import numpy as np

    if len(times_ns) < 2:
        raise ConfigError("cannot infer the sample rate from one sample: pass --rate")
    return float(1e9 / np.median(np.diff(times_ns)))


def cmd_haptic_sim(args: argparse.Namespace) -> int:
    from poserun.services.haptic_sim import run_band

    settings = _settings(args)
    stop = _stop_on_signals()
    band = run_band(settings.broker, session=args.session, duration=args.duration, stop=stop, quiet=args.quiet)
    print(json.dumps(band.summary()))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from poserun.sinks.store import Database

    db = Database(args.db, create=False)
    try:
        rows = db.sessions()
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'session':<28} {'name':<30} {'athletes':>8} {'records':>8} {'minutes':>8}")
    for r in rows:
        minutes = (r["last_ns"] - r["first_ns"]) / 60e9 if r["first_ns"] and r["last_ns"] else 0.0
        print(f"{r['session']:<28.28} {(r['name'] or ''):<30.30} {r['athletes']:>8} {r['records']:>8} "
              f"{minutes:>8.1f}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from poserun.services.export import export
    from poserun.sinks.store import Database

    if args.format == "parquet":
        _need("pyarrow", "store", "export --format parquet")
    db = Database(args.db, create=False)
    try:
        out = args.output or f"{args.session}.{args.format}"
        n = export(db, args.session, out, args.format)
    finally:
        db.close()
    print(json.dumps({"rows": n, "file": str(out)}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from poserun.services.report import build_report
    from poserun.sinks.store import Database

    db = Database(args.db, create=False)
    try:
        out = args.output or f"{args.session}-report.html"
        info = build_report(db, args.session, out)
    finally:
        db.close()
    print(json.dumps({**info, "file": str(out)}))
    return 0


def _need(module: str, extra: str, command: str) -> None:
    """A one-line error naming the extra to install when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ValueError(f"poserun {command} needs {module}, which this install lacks: "
                         f"pip install 'poserun[{extra}]'")


def cmd_warm_up(args: argparse.Namespace) -> int:
    from poserun.services.warmup import warm_up

    report = warm_up(jobs=args.jobs, progress=lambda line: print(line, flush=True))
    print(f"kernels {'compiled' if report.cold else 'loaded from the cache'} in {report.seconds:.1f} s",
          flush=True)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from poserun.sinks.base import build_sink, sink_classes

    settings = load_settings(args.file)
    known = sink_classes()
    unknown = [s.type for s in settings.sinks if s.type not in known]
    if unknown:
        raise ConfigError(f"{args.file}: sinks: unknown type(s) {unknown}; installed: "
                          f"{', '.join(sorted(known))}")
    context = {"broker": settings.broker, "settings": settings}
    for k, spec in enumerate(settings.sinks):  # each sink's options as the service would take them (no I/O yet)
        try:
            sink = build_sink(spec.type, dict(spec.options), context)
        except (ValueError, TypeError) as exc:
            said = " ".join(str(exc).split()).split(" For further information")[0][:300] or type(exc).__name__
            raise ConfigError(f"{args.file}: sinks[{k}] ({spec.type}): {said}") from None
        pool = getattr(sink, "_pool", None)  # (the store's worker, never used here)
        if pool is not None:
            pool.shutdown(wait=False)
    print(f"{args.file}: OK (session {settings.session.id}, {len(settings.athletes)} athletes, "
          f"{len(settings.sinks)} sinks, broker {settings.broker.url})")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    text = json_schema()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from poserun.services.broker import embedded_broker

    stop = _stop_on_signals()
    with embedded_broker(args.port) as url:
        print(f"embedded broker at {url} (Ctrl-C stops it)", flush=True)
        stop.wait()
    return 0


def cmd_access_acl(args: argparse.Namespace) -> int:
    from poserun.services import access

    settings = load_settings(args.config)
    found = access.accounts(settings, session=args.session)
    text = access.acl_text(found, origin=args.config, session=args.session)
    if not settings.athletes:
        print("poserun access: the config lists no athletes: only the service and recorder accounts "
              "(list the athletes, with their gateway, to give devices access)", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(text)
        print(f"{args.output}: {len(found)} accounts; reload mosquitto to apply (kill -HUP)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _access_passwords(args: argparse.Namespace, settings: Settings, found: list[Any], out: Path
                      ) -> tuple[Path, dict[str, str], str]:
    """The accounts' passwords (kept from the credentials file unless rotated), that file written
    again; returns its path, the passwords and a line on what changed."""
    from poserun.services import access

    creds = Path(args.credentials) if args.credentials else out.with_name(out.name + ".credentials.json")
    previous = access.read_credentials(creds)
    rotate = [u.strip() for u in args.rotate.split(",") if u.strip()] if args.rotate else []
    passwords, fresh = access.passwords(found, previous, rotate)
    url = args.broker or settings.broker.url
    access.write_private(creds, access.credentials_text(found, passwords, broker_url=url, session=args.session))
    kept = [a.user for a in found if a.user not in fresh]
    dropped = sorted(set(previous) - set(passwords))
    said = (f"new passwords: {', '.join(fresh) or 'none'}; kept: {', '.join(kept) or 'none'}"
            + (f"; removed: {', '.join(dropped)}" if dropped else ""))
    return creds, passwords, said


def cmd_access_passwd(args: argparse.Namespace) -> int:
    from poserun.services import access

    settings = load_settings(args.config)
    found = access.accounts(settings, session=args.session)
    out = Path(args.output)
    creds, passwords, said = _access_passwords(args, settings, found, out)
    access.write_private(out, access.passwd_text(passwords))
    print(f"{out}: {len(found)} accounts (mosquitto $7$ PBKDF2-SHA512 hashes); their passwords are in {creds} "
          f"(mode 0600: hand each device its own entry)")
    print(said)
    print(access.summary(found))
    print("reload mosquitto to apply (kill -HUP)")
    return 0


def cmd_access_dynsec(args: argparse.Namespace) -> int:
    from poserun.services import access

    settings = load_settings(args.config)
    found = access.accounts(settings, session=args.session)
    if args.admin:
        found.append(access.admin_account(args.admin, found))
    out = Path(args.output)
    creds, passwords, said = _access_passwords(args, settings, found, out)
    access.write_private(out, access.dynsec_text(found, passwords))
    print(f"{out}: {len(found)} clients, a role each (mosquitto's dynamic security plugin: a subscription "
          f"outside an account's topics is refused); their passwords are in {creds} "
          f"(mode 0600: hand each device its own entry)")
    print(said)
    print(access.summary(found))
    print("restart mosquitto to apply: the plugin reads this file at start only (a SIGHUP does not)"
          + (f"; or change it live with mosquitto_ctrl -u {args.admin} (and stop regenerating it)"
             if args.admin else ""))
    return 0


# ------------------------------------------------------------------- parser

def _common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        p.add_argument("--config", "-c", help="YAML config (see config/demo.yaml)")
    p.add_argument("--broker", help="mqtt://HOST:PORT (default from config: mqtt://127.0.0.1:1883)")


def _sim_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", help="session id (default from config)")
    p.add_argument("--athletes", type=int, help="number of simulated athletes (default 12)")
    p.add_argument("--duration", type=float, help="simulated seconds (default: until Ctrl-C)")
    p.add_argument("--speed", type=float, help="time scale: 1 real time, 10 ten times faster")
    p.add_argument("--seed", type=int, help="random seed (same seed, same bytes)")
    p.add_argument("--truth", action="store_true", help="publish ground truth on .../truth")
    p.add_argument("--json", dest="json_frames", action="store_true", help="JSON frames, not binary")
    p.add_argument("--sensors", help="comma list, e.g. imu_foot_left,imu_foot_right")
    p.add_argument("--profiles", help="comma list of technique profiles assigned in turn")
    p.add_argument("--imu-hz", type=float, help="IMU sample rate (default 400)")
    p.add_argument("--insole-hz", type=float, help="insole sample rate (default 100)")
    p.add_argument("--camera-fps", type=float, help="camera frame rate (default 60)")
    p.add_argument("--frame-ms", type=float, help="milliseconds of samples per frame (default 10)")
    p.add_argument("--forced-share", type=float, help="share of forced landings (forced_lander)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poserun", description=__doc__)
    parser.add_argument("--version", action="version", version=f"poserun {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulated team + fusion service + live table, one command")
    _common(p)
    p.add_argument("--session", help="session id (default: a new one per run, demo-YYYYMMDD-HHMMSS-xxxx)")
    p.add_argument("--athletes", type=int, help="team size (default 12; 4 on the embedded broker)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--embedded-broker", action="store_true",
                   help="start the embedded broker even if one answers on 127.0.0.1:1883")
    p.add_argument("--out", default="poserun-demo", metavar="DIR",
                   help="the reports (SESSION.html) and, without -c, the session store (demo.sqlite) "
                        "(default: poserun-demo)")
    p.set_defaults(func=cmd_demo)

    gw = sub.add_parser("gateway", help="sensor gateways").add_subparsers(dest="gateway", required=True)
    p = gw.add_parser("sim", help="publish a simulated team")
    _common(p)
    _sim_flags(p)
    p.add_argument("--pregenerate", action="store_true",
                   help="simulate the whole --duration before publishing (publication never waits on the "
                        "simulation; for latency measurements)")
    p.set_defaults(func=cmd_gateway_sim)
    p = gw.add_parser("replay", help="republish a recording's gateway channels (data, meta, status)")
    _common(p)
    p.add_argument("file", help="an MCAP recording (poserun record, poserun import)")
    p.add_argument("--speed", dest="replay_speed", type=float, default=1.0,
                   help="1 original timing, 0 as fast as possible")
    p.add_argument("--as-session", help="publish under another session id")
    p.add_argument("--truth", action="store_true", help="also republish recorded ground truth (.../truth)")
    p.add_argument("--channels",
                   help="comma list of channels to republish (default data,meta,status; also truth, records, "
                        "haptic: recorded outputs reach live sinks and bands)")
    p.set_defaults(func=cmd_gateway_replay)

    p = gw.add_parser("moticon", help="Moticon OpenGo insoles' live UDP output -> MQTT (docs/gateways.md)")
    _common(p)
    p.add_argument("--session", help="session id (default from config)")
    p.add_argument("--athlete", required=True, help="the athlete wearing the insoles")
    p.add_argument("--listen", default="0.0.0.0:8888", help="UDP HOST:PORT OpenGo sends to (default 0.0.0.0:8888)")
    p.add_argument("--frame-ms", type=float, default=10.0, help="milliseconds between frames (default 10)")
    p.add_argument("--rate-hz", type=float, default=100.0, help="the insoles' sample rate (default 100)")
    p.add_argument("--fields", help="comma list naming each number of a line (default: time, left.acc_x ... "
                                    "left.force, right.acc_x ... right.force; 'skip' ignores one)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--ready-file", help="write this file once meta and status are published")
    p.set_defaults(func=cmd_gateway_moticon)

    p = gw.add_parser("camera", help="a video file, webcam or stream -> MediaPipe-33 keypoints over MQTT "
                                     "(docs/gateways.md)")
    _common(p)
    p.add_argument("--session", help="session id (default from config)")
    p.add_argument("source", help="a video file, a webcam number (0) or a stream URL (rtsp://...)")
    _camera_flags(p)
    p.add_argument("--speed", dest="video_speed", type=float, default=1.0,
                   help="a file: 1 its own pace, 0 as fast as the pose model runs (default 1)")
    p.add_argument("--gateway-id", help="this camera's gateway id (default camera-{first athlete}): give each "
                                        "camera its own")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--ready-file", help="write this file once connected and the status is published (each "
                                        "athlete's meta follows when its scale is known)")
    p.set_defaults(func=cmd_gateway_camera)

    p = gw.add_parser("phone", help="athletes' phones as trunk IMUs and haptic bands, via a served page "
                                    "(docs/gateways.md)")
    _common(p)
    p.add_argument("--session", help="session id (default from config)")
    p.add_argument("--host", default="0.0.0.0", help="address to serve the page on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8770, help="port of the page and socket (default 8770; 0: any)")
    p.add_argument("--secret", help="secret the join tokens derive from (default: $POSERUN_PHONE_SECRET, "
                                    "else a new one per run)")
    p.add_argument("--wear", choices=["front", "back"], default="front",
                   help="phone upright at the waist, screen facing forward (front) or backward (back)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--ready-file", help="write this file once the page is served")
    p.set_defaults(func=cmd_gateway_phone)

    p = sub.add_parser("record", help="record a session's topics to an MCAP file")
    _common(p)
    p.add_argument("file", help="MCAP file to write")
    p.add_argument("--session", help="session id (default: every session)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--idle-stop", type=float,
                   help="stop after this many seconds without messages (ten times that if none ever came)")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--ready-file", help="write this file once subscribed (for scripts)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("process", help="run the fusion service")
    _common(p)
    p.add_argument("--session", help="only this session (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--stats-interval", type=float, default=10.0,
                   help="seconds between stats lines (0: none until the end)")
    p.add_argument("--stats-file", help="write the full counters here (JSON) at every stats line")
    p.add_argument("--workers", type=int, default=1,
                   help="split the team by athlete over this many fusion processes, to use more cores "
                        "(default 1; docs/benchmarks.md, Team scale)")
    p.add_argument("--ready-file", help="write this file once subscribed, kernels loaded (for scripts)")
    p.set_defaults(func=cmd_process)

    nats_help = "NATS URLs, comma separated (default from config: nats://127.0.0.1:4222)"
    p = sub.add_parser("worker", help="a fusion worker over NATS JetStream: takes partitions of athletes "
                                      "(docs/scaling.md; needs poserun[nats])")
    _common(p)
    p.add_argument("--nats", help=nats_help)
    p.add_argument("--partitions", type=int, help="partitions of athletes, if the worker makes the streams "
                                                  "(default from config: 4; an existing stream's count is taken)")
    p.add_argument("--replicas", type=int, help="replicas of streams, consumers and buckets, if the worker makes "
                                                "them (default from config: 3; 1 on a single server)")
    p.add_argument("--id", help="this worker's id in the leases (default HOST-PID)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (handing the partitions back)")
    p.add_argument("--stats-interval", type=float, default=10.0,
                   help="seconds between stats lines (0: none until the end)")
    p.add_argument("--stats-file", help="write the full counters here (JSON) at every stats line")
    p.add_argument("--ready-file", help="write this file once connected and registered, kernels loaded")
    p.set_defaults(func=cmd_worker)

    jet = sub.add_parser("jetstream", help="NATS JetStream for fusion workers (docs/scaling.md)"
                         ).add_subparsers(dest="jetstream_cmd", required=True)
    p = jet.add_parser("setup", help="make the streams, durable consumers and lease buckets that are missing")
    p.add_argument("--config", "-c", help="YAML config (its nats section)")
    p.add_argument("--nats", help=nats_help)
    p.add_argument("--partitions", type=int, help="partitions of athletes (default from config: 4)")
    p.add_argument("--replicas", type=int, help="replicas of streams, consumers and buckets (default from config: 3; "
                                                "1 on a single server)")
    p.set_defaults(func=cmd_jetstream_setup)

    p = sub.add_parser("analyze", help="the fusion processor over recordings or videos, offline: records and a "
                                       "summary (a report per video)")
    p.add_argument("recordings", nargs="+", help="MCAP recordings (poserun record, poserun import), or video files "
                                                 "(.mp4, .mov, ...: the camera's keypoints, needs poserun[camera])")
    _camera_flags(p)
    p.add_argument("--report", help="a video's HTML report (default: VIDEO-report.html in the current directory)")
    p.add_argument("--session", help="a video's session id in the records (default: from its file name)")
    p.add_argument("--config", "-c", help="YAML config (athletes, processor settings)")
    p.add_argument("-o", "--output", help="write the records to FILE.jsonl, .csv or .parquet (default: JSON lines "
                                          "on stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("import", help="convert lab data into a recording")
    p.add_argument("format", choices=["csv", "text", "trc", "qtm", "c3d", "bach2022"],
                   help="what INPUT is (csv: one sensor stream; text: a delimited marker export with Time or "
                        "Frame and NAME X/Y/Z columns; qtm: a Qualisys 3-D TSV export; c3d: markers and force "
                        "plates)")
    p.add_argument("input", help="file (csv, text, trc, qtm, c3d) or folder (bach2022)")
    p.add_argument("-o", "--output", required=True, help="MCAP file to write")
    p.add_argument("--session", help="session id in the recording (default lab, or bach2022)")
    p.add_argument("--athlete", default="athlete1", help="athlete id in the recording (all but bach2022)")
    p.add_argument("--source", help="csv: the source, e.g. imu_shank_left, force_left (or give --placement)")
    p.add_argument("--placement", choices=["foot", "shank", "pelvis", "sacrum", "trunk"],
                   help="csv IMU: where the sensor was worn (with --side, instead of --source)")
    p.add_argument("--side", choices=["left", "right", "unknown"],
                   help="csv IMU: the sensor's leg; unknown: imported as right, with a warning")
    p.add_argument("--rate", type=float, help="csv, text: sample rate in Hz (default: from the time column; "
                                              "text with a Frame column needs it)")
    p.add_argument("--channels", default="ax,ay,az,gx,gy,gz",
                   help="csv IMU channel names in column order; ax..az, gx..gz: 1 or 2 accelerometer axes are "
                        "padded with zeros")
    p.add_argument("--accel-unit", default="m/s^2", choices=["m/s^2", "g", "mg"], help="csv IMU accelerometer unit")
    p.add_argument("--gyro-unit", default="rad/s", choices=["rad/s", "deg/s"], help="csv IMU gyroscope unit")
    p.add_argument("--axes", help="csv IMU axes, e.g. x=forward,y=left,z=up (two are enough; or --up/--forward)")
    p.add_argument("--meta", help="csv: a device meta JSON file (insoles need one)")
    p.add_argument("--unit", choices=["mm", "cm", "m"],
                   help="text: marker unit when the file does not say (default mm)")
    p.add_argument("--up", help="axis pointing up, e.g. +z or -y (trc default +y, text/qtm/c3d +z); csv IMU: the "
                                "sensor axis pointing up")
    p.add_argument("--forward", help="running direction axis (trc default +x, text/qtm/c3d +y); csv IMU: the "
                                     "sensor axis pointing forward")
    p.add_argument("--markers", metavar="MAP", help="text, trc, qtm, c3d: a TOML or JSON file naming the marker of "
                                                    "each role per side (default: recognised from the names)")
    p.add_argument("--body-mass", type=float, metavar="KG", help="the subject's body mass in kg (used by analyze)")
    p.add_argument("--leg-length", type=float, metavar="M",
                   help="the subject's leg length (greater trochanter to floor) in m")
    p.add_argument("--height", type=float, metavar="M",
                   help="the subject's height in m (gives the leg length, 0.53 x height, when it is not given)")
    p.add_argument("--force", nargs="+", help="qtm: the force exports (NAME_f_1.tsv ...), one per plate or belt: "
                                              "contacts become truth")
    p.add_argument("--force-threshold", type=float,
                   help="qtm, c3d: vertical force (N) above which a foot is in contact (default 30)")
    p.add_argument("--running-only", action="store_true", help="bach2022: skip walking trials")
    p.add_argument("--frame-ms", type=float, default=10.0, help="milliseconds of samples per frame written")
    p.set_defaults(func=cmd_import)

    db_help = "the session store: sqlite:///FILE or postgresql://... (default sqlite:///poserun.db; must exist)"
    p = sub.add_parser("sessions", help="list the sessions in the session store")
    p.add_argument("--db", default="sqlite:///poserun.db", help=db_help)
    p.add_argument("--json", action="store_true", help="print JSON, not a table")
    p.set_defaults(func=cmd_sessions)
    p = sub.add_parser("export", help="export a stored session's records")
    p.add_argument("session", help="session id (see poserun sessions)")
    p.add_argument("--db", default="sqlite:///poserun.db", help=db_help)
    p.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="csv, or parquet (needs poserun[store])")
    p.add_argument("-o", "--output", help="file to write (default SESSION.FORMAT)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="a self-contained HTML report of a stored session")
    p.add_argument("session", help="session id (see poserun sessions)")
    p.add_argument("--db", default="sqlite:///poserun.db", help=db_help)
    p.add_argument("-o", "--output", help="HTML file to write (default SESSION-report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("haptic-sim", help="a virtual haptic band: logs each buzz and its latency from IC")
    _common(p)
    p.add_argument("--session", help="only this session (default: all)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_haptic_sim)

    sub.add_parser("validate", help="accuracy against ground truth, simulated and real (poserun validate -h)")

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    p = cfg.add_parser("check", help="validate a config file")
    p.add_argument("file", help="YAML config")
    p.set_defaults(func=cmd_config_check)
    p = cfg.add_parser("schema", help="print the config's JSON schema")
    p.add_argument("-o", "--output", help="write it to this file instead")
    p.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("broker", help="run the embedded MQTT broker (for machines without one)")
    p.add_argument("--port", type=int, default=1883, help="loopback port to listen on (refused if taken)")
    p.set_defaults(func=cmd_broker)

    acc = sub.add_parser("access", help="per-device broker access from the config: Mosquitto ACL and passwords, "
                         "or the dynamic security plugin's file"
                         ).add_subparsers(dest="access_cmd", required=True)
    p = acc.add_parser("acl", help="print (or write) the Mosquitto ACL file: one account per gateway and band")
    p.add_argument("--config", "-c", help="YAML config: the athletes and the gateway carrying each device")
    p.add_argument("--session", help="allow only this session's topics (default: any session)")
    p.add_argument("-o", "--output", help="write it to this file instead (then reload mosquitto)")
    p.set_defaults(func=cmd_access_acl)
    p = acc.add_parser("passwd", help="write the Mosquitto password file and the credentials to hand out")
    p.add_argument("--config", "-c", help="YAML config: the athletes and the gateway carrying each device")
    p.add_argument("--broker", help="the broker URL the devices use, written into the credentials (default: "
                                    "the config's broker.url)")
    p.add_argument("--session", help="the session named in the credentials' topics (default: any session)")
    p.add_argument("-o", "--output", required=True, help="the password file to write (mode 0600)")
    p.add_argument("--credentials", help="the credentials file, JSON, mode 0600 (default OUTPUT.credentials.json); "
                                         "passwords already in it are kept")
    p.add_argument("--rotate", metavar="USERS", help="comma list of accounts to give new passwords, or all")
    p.set_defaults(func=cmd_access_passwd)
    p = acc.add_parser("dynsec", help="write the dynamic security plugin's file (accounts, passwords, roles), "
                                      "which refuses a forbidden subscription, and the credentials to hand out")
    p.add_argument("--config", "-c", help="YAML config: the athletes and the gateway carrying each device")
    p.add_argument("--broker", help="the broker URL the devices use, written into the credentials (default: "
                                    "the config's broker.url)")
    p.add_argument("--session", help="allow only this session's topics (default: any session)")
    p.add_argument("-o", "--output", required=True, help="the plugin's JSON file to write (mode 0600; then "
                                                         "restart mosquitto)")
    p.add_argument("--credentials", help="the credentials file, JSON, mode 0600 (default OUTPUT.credentials.json); "
                                         "passwords already in it are kept")
    p.add_argument("--rotate", metavar="USERS", help="comma list of accounts to give new passwords, or all")
    p.add_argument("--admin", metavar="USER", help="add this client, allowed the plugin's control topics only "
                                                   "(mosquitto_ctrl dynsec); default: no admin")
    p.set_defaults(func=cmd_access_dynsec)

    p = sub.add_parser("warm-up", help="compile and cache every processor kernel (make runs it after installing)")
    p.add_argument("--jobs", type=int, help="processes to compile in when the cache is cold (default: one per core)")
    p.set_defaults(func=cmd_warm_up)
    return parser


AXIS_OPTIONS = ("--up", "--forward")  # take signed axes such as -x, which argparse would read as options


def join_signed_values(args: list[str]) -> list[str]:
    """``--forward -x`` as ``--forward=-x``: argparse refuses a value that starts with '-'."""
    out: list[str] = []
    k = 0
    while k < len(args):
        if args[k] in AXIS_OPTIONS and k + 1 < len(args) and re.fullmatch(r"-[xyzXYZ]", args[k + 1]):
            out.append(f"{args[k]}={args[k + 1]}")
            k += 2
        else:
            out.append(args[k])
            k += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_list = join_signed_values(list(sys.argv[1:] if argv is None else argv))
    if args_list[:1] == ["validate"]:  # its own options (argparse cannot forward leading --flags)
        from poserun.services.validate import main as validate

        def run() -> int:
            validate(args_list[1:])
            return 0

        verbose = 0
    else:
        args = build_parser().parse_args(args_list)

        def run() -> int:
            return int(args.func(args) or 0)

        verbose = args.verbose
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run()
    except ConfigError as exc:
        print(f"poserun: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        from poserun.services.mqtt import BrokerUnavailable

        if isinstance(exc, BrokerUnavailable):
            print(f"poserun: {exc}. Start one (e.g. 'poserun broker') or pass --broker URL.",
                  file=sys.stderr)
            return 3
        print(f"poserun: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
