"""A simulated team: athletes, their device meta, and frames cut on each source's clock.

Pure and deterministic for a given :class:`SimSettings` (no sockets, no
wall clock): :meth:`SimTeam.step` returns the MQTT messages of the next time
slice, so tests get the same bytes the gateway publishes, and ground truth
in-process.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from poserun.services.sim.profiles import get_profile
from poserun.services.sim.runner import INSOLE_CELLS, AthleteSpec, SimRunner, Stance
from poserun.settings import AthleteSettings, SimSettings
from poserun.wire import bundle as wire_bundle
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.streams import StreamKind, source_kind, source_side

CAMERA_SCALE = 0.004  # metres per pixel
CAMERA_ORIGIN = (960.0, 1000.0)  # pixel of the hip line (x) and the ground (y)
NAMES = (
    "Abebe", "Bekele", "Chen", "Dibaba", "Eliud", "Farah", "Gebre", "Hassan", "Ingrid", "Jepchirchir",
    "Kipchoge", "Lagat", "Meseret", "Nurmi", "Obiri", "Paula", "Quenehen", "Radcliffe", "Sifan",
    "Tirunesh", "Ueno", "Viren", "Wanjiru", "Xiang", "Yifter", "Zatopek",
)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
    at_ns: int = 0  # simulator time at which the message is due (when its last sample is taken)
    frames: int = 1  # sensor frames in it: a bundle's entries; 0 for meta and truth


@dataclass
class _Source:
    name: str
    kind: StreamKind
    rate: float
    next_index: int = 0
    seq: int = 0


def team_athletes(sim: SimSettings, listed: list[AthleteSettings]) -> list[AthleteSpec]:
    """Athlete specs: those listed in the config first, then generated ones up to ``sim.athletes``."""
    rng = np.random.default_rng(sim.seed)
    specs = []
    for i in range(sim.athletes):
        conf = listed[i] if i < len(listed) else None
        profile_name = (conf.profile if conf and conf.profile else sim.profiles[i % len(sim.profiles)])
        profile = get_profile(profile_name)
        if profile.forced_share:
            profile = profile.with_(forced_share=sim.forced_share)
        mass = conf.body_mass_kg if conf else float(rng.uniform(52, 82))
        leg = conf.leg_length_m if conf else float(rng.uniform(0.82, 0.98))
        specs.append(AthleteSpec(
            athlete_id=conf.id if conf else f"a{i + 1:02d}",
            name=(conf.name if conf and conf.name else f"{NAMES[i % len(NAMES)]} {i + 1}"),
            profile=profile,
            speed_mps=float(rng.uniform(3.2, 4.2)),
            body_mass_kg=mass,
            leg_length_m=leg,
            seed=sim.seed * 1000 + i,
        ))
    return specs


def device_meta(source: str, rate: float) -> wm.ImuMeta | wm.InsoleMeta | wm.KeypointMeta:
    kind = source_kind(source)
    side = source_side(source)
    if source == "imu_pelvis":
        return wm.ImuMeta(source=source, rate_hz=rate, placement="sacrum", device="poserun-sim sacrum IMU")
    if kind is StreamKind.IMU:
        return wm.ImuMeta(source=source, rate_hz=rate, placement="foot", side=side,
                          device="poserun-sim foot IMU")
    if kind is StreamKind.INSOLE:
        return wm.InsoleMeta(
            source=source, rate_hz=rate, side=side or "left", device="poserun-sim 16-cell insole",
            cell_regions=[c[0] for c in INSOLE_CELLS],
            cell_positions=[(c[1], c[2]) for c in INSOLE_CELLS], foot_length_m=0.27,
        )
    return wm.KeypointMeta(
        source=source, rate_hz=rate, schema="coco17", dims="xyc", unit="px",
        device="poserun-sim side camera",
        camera=wm.CameraMeta(scale_m_per_px=CAMERA_SCALE, origin_px=CAMERA_ORIGIN,
                             y_axis="down", view="sagittal_right", moving=True),
    )


class SimTeam:
    """The whole simulated team on one clock (seconds since the session start)."""

    def __init__(self, session: str, sim: SimSettings,
                 listed: list[AthleteSettings] | None = None) -> None:
        self.session = session
        self.sim = sim
        self.specs = team_athletes(sim, listed or [])
        self.runners = {s.athlete_id: SimRunner(s) for s in self.specs}
        rates = {StreamKind.IMU: sim.imu_hz, StreamKind.INSOLE: sim.insole_hz,
                 StreamKind.KEYPOINTS: sim.camera_fps}
        self.sources = {
            a.athlete_id: [_Source(s, source_kind(s), rates[source_kind(s)]) for s in sim.sensors]
            for a in self.specs
        }
        self.t = 0.0
        self.frame_s = sim.frame_ms / 1000.0
        self._slice = 0
        # athletes whose config lists their devices: the generated ACL lets each device's gateway write
        # only its sources' topics, not the bundle topic (docs/operations.md), so they go one by one
        self._per_device = {a.id for a in listed or [] if a.devices}

    def meta_messages(self) -> list[Message]:
        out = []
        for athlete, sources in self.sources.items():
            for src in sources:
                out.append(Message(topics.meta_topic(self.session, athlete, src.name),
                                   wm.dump(device_meta(src.name, src.rate)), retain=True, qos=1, frames=0))
        return out

    def step(self, slices: int = 10) -> tuple[list[Message], dict[str, list[Stance]]]:
        """Advance ``slices`` frame periods; return the frames and the stances completed."""
        t0 = self._slice * self.frame_s
        self._slice += slices
        t1 = self._slice * self.frame_s
        edges_ns = np.round(np.arange(self._slice - slices, self._slice + 1) * self.sim.frame_ms * 1e6).astype(np.int64)
        messages: list[Message] = []
        truth: dict[str, list[Stance]] = {}
        for spec in self.specs:
            runner = self.runners[spec.athlete_id]
            runner.advance(t1)
            own: list[tuple[str, Message]] = []
            hub = self.sim.bundle and spec.athlete_id not in self._per_device
            for src in self.sources[spec.athlete_id]:
                frames = self._frames(spec.athlete_id, runner, src, edges_ns)
                if hub and not (self.sim.clock_offsets_ms.get(src.name) or self.sim.clock_drift_ppm.get(src.name)):
                    own += [(src.name, m) for m in frames]
                else:  # (a sensor on a clock of its own, or a listed device, is on a gateway of its own)
                    messages.extend(frames)
            messages.extend(self._bundles(spec.athlete_id, own))
            truth[spec.athlete_id] = runner.completed(t1)
            runner.forget_before(t0 - 2.0)
        self.t = t1
        return messages, truth

    def _bundles(self, athlete: str, frames: list[tuple[str, Message]]) -> list[Message]:
        """An athlete's frames as a hub sends them: those whose last sample falls in one frame period
        (k-1, k] x ``frame_ms`` go together in one bundle when the last of them is taken (one frame alone
        goes as it is). The period ends on its edge, where the insoles' samples fall: the insole frame,
        whose contact starts the haptic cue, never waits for the IMUs' (which wait up to a sample). A
        period cut by the end of a ``step`` goes as two messages (the frames due at its edge come with
        the next step)."""
        slots: dict[int, list[tuple[str, Message]]] = {}
        frame_ns = round(self.sim.frame_ms * 1e6)
        for source, m in frames:
            slots.setdefault(-(-m.at_ns // frame_ns), []).append((source, m))
        out = []
        topic = topics.bundle_topic(self.session, athlete)
        for _slot, group in sorted(slots.items()):
            group.sort(key=lambda sm: sm[1].at_ns)
            if len(group) == 1:
                out.append(group[0][1])
            else:
                out.append(Message(topic, wire_bundle.pack([(src, m.payload) for src, m in group]),
                                   at_ns=group[-1][1].at_ns, frames=len(group)))
        return out

    def _frames(self, athlete: str, runner: SimRunner, src: _Source,
                edges_ns: np.ndarray) -> list[Message]:
        # sample k is taken at round(k * 1e9 / rate) ns; frames group samples by slice edges
        end_index = int(np.ceil(edges_ns[-1] * src.rate / 1e9 - 1e-9))
        idx = np.arange(src.next_index, end_index, dtype=np.int64)
        times_ns = np.round(idx * (1e9 / src.rate)).astype(np.int64)
        keep = times_ns < edges_ns[-1]
        idx, times_ns = idx[keep], times_ns[keep]
        if not len(idx):
            return []
        src.next_index = int(idx[-1]) + 1
        t = times_ns / 1e9
        side = source_side(src.name) or "left"
        if src.name == "imu_pelvis":
            data = runner.pelvis_imu(t)
        elif src.kind is StreamKind.IMU:
            data = runner.imu(side, t)
        elif src.kind is StreamKind.INSOLE:
            data = runner.insole(side, t)
        else:
            data = runner.keypoints(t, scale=CAMERA_SCALE, origin=CAMERA_ORIGIN,
                                    frame_speed=runner.spec.speed_mps)
        taken_ns = times_ns  # on the simulator's clock: when each sample is taken
        offset = self.sim.clock_offsets_ms.get(src.name, 0.0) * 1e6
        drift = self.sim.clock_drift_ppm.get(src.name, 0.0) * 1e-6
        if offset or drift:  # this sensor's gateway clock: ahead by an offset, and drifting
            times_ns = times_ns + np.round(offset + drift * times_ns).astype(np.int64)
            edges_ns = edges_ns + np.round(offset + drift * edges_ns).astype(np.int64)
        period = 1e9 / src.rate * (1.0 + drift)
        uniform = not drift and float(period).is_integer()
        cuts = np.searchsorted(times_ns, edges_ns[1:-1])
        topic = topics.data_topic(self.session, athlete, src.name)
        data32 = data.astype(np.float32)
        out = []
        bounds = np.concatenate(([0], cuts, [len(times_ns)]))
        for a, b in itertools.pairwise(bounds):
            if a == b:
                continue
            ts = times_ns[a:b]
            stamps = None if uniform or b - a == 1 else ts
            period_ns = 0 if stamps is not None else round(period)
            if self.sim.json_frames:
                fr = wf.make_frame(src.kind, src.seq, int(ts[0]), data32[a:b],
                                   period_ns=period_ns, timestamps_ns=stamps)
                payload = wf.encode_json(fr)
            else:
                payload = wf.pack(src.kind, src.seq, int(ts[0]), data32[a:b],
                                  period_ns=period_ns, timestamps_ns=stamps)
            src.seq = (src.seq + 1) & 0xFFFFFFFF
            # a gateway sends a frame as soon as its last sample is taken
            out.append(Message(topic, payload, at_ns=int(taken_ns[b - 1])))
        return out

    def truth_messages(self, truth: dict[str, list[Stance]]) -> list[Message]:
        out = []
        for athlete, stances in truth.items():
            for st in stances:
                out.append(Message(topics.athlete_topic(self.session, athlete, "truth"),
                                   wm.dump(truth_event(st, self.runners[athlete])), qos=1,
                                   at_ns=round(st.to * 1e9), frames=0))
        return out


def truth_event(st: Stance, runner: SimRunner) -> wm.TruthEvent:
    return wm.TruthEvent(
        foot=st.foot, step=st.step, ic_ns=round(st.ic * 1e9), to_ns=round(st.to * 1e9),
        foot_landing_velocity_mps=round(st.v_land, 4), body_fall_velocity_mps=round(st.v_body, 4),
        forced_landing=st.forced, overstride_m=round(st.overstride, 4),
        strike_zone=runner.p.strike, source="sim",  # type: ignore[arg-type]
    )
