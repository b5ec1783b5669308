"""A physically grounded simulated runner: every stream of one athlete agrees.

The body is a spring-mass runner: during stance the vertical ground force is
a skewed half-sine whose impulse carries the centre of mass from its landing
to its take-off velocity, in flight the body falls ballistically. Each foot
follows smooth knot curves (see :mod:`spline`) for forward position, height
and pitch, whose second derivative *is* the foot IMU's acceleration, so the
accelerometer integrates back to the true foot velocity. Insole cells share
the stance force along the foot by the centre of pressure of the strike
pattern, and keypoints come from a stick figure driven by the same hip and
ankle trajectories (the ankle keypoint rolling over the toes in push-off so
that the leg reaches; see :meth:`SimRunner._add_roll`). Ground truth per
stance is exact by construction.

Pure numpy; time in seconds on the simulator clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from poserun.services.sim.profiles import REFERENCE_SPEED_MPS, Profile
from poserun.services.sim.spline import KnotCurve
from poserun.wire.meta import COCO17

G = 9.81
ANKLE_HEIGHT = 0.08  # ankle joint above the ground when the foot is flat
FOOT = {"heel": (-0.06, -0.08), "ball": (0.13, -0.08), "toe": (0.19, -0.08)}
FORCED_RATIO = 1.3
ROLL_RELEASE_S = 0.08  # after TO, the ankle keypoint's push-off roll is let back to the foot curve

#: 16-cell insole layout: (region, along foot from heel 0..1, across -0.5..0.5)
INSOLE_CELLS: tuple[tuple[str, float, float], ...] = (
    ("heel", 0.08, -0.15), ("heel", 0.08, 0.15), ("heel", 0.16, 0.0),
    ("midfoot", 0.36, -0.15), ("midfoot", 0.40, 0.2), ("midfoot", 0.50, 0.1),
    ("ball", 0.66, -0.3), ("ball", 0.68, -0.1), ("ball", 0.68, 0.1), ("ball", 0.66, 0.3),
    ("ball", 0.76, -0.2), ("ball", 0.76, 0.15),
    ("toes", 0.88, -0.25), ("toes", 0.90, -0.05), ("toes", 0.90, 0.15), ("toes", 0.86, 0.32),
)
_ALONG = np.array([c[1] for c in INSOLE_CELLS])
_HEEL_CELLS = np.array([c[0] == "heel" for c in INSOLE_CELLS])


@dataclass(frozen=True)
class AthleteSpec:
    athlete_id: str
    name: str
    profile: Profile
    speed_mps: float = REFERENCE_SPEED_MPS
    body_mass_kg: float = 68.0
    leg_length_m: float = 0.90
    variation: float = 0.02  # coefficient of variation stride to stride
    seed: int = 0


@dataclass(frozen=True)
class Stance:
    """One planned stance with its exact truth."""

    step: int
    foot: str
    ic: float
    to: float
    next_ic: float  # IC of the following (other-foot) step
    v_land: float  # foot downward velocity at IC, m/s (positive down)
    v_body: float  # centre-of-mass downward velocity at IC, m/s (positive down)
    forced: bool
    overstride: float
    x_contact: float
    ic_pitch: float  # rad
    f_peak: float  # N, body part of the vertical force
    p_skew: float
    com_z_ic: float
    com_vz_ic: float  # signed, up positive

    @property
    def tc(self) -> float:
        return self.to - self.ic


def _skewed_sine(s: np.ndarray, p: float) -> np.ndarray:
    return np.sin(np.pi * np.clip(s, 0.0, 1.0) ** p)


_SHAPE_GRID = np.linspace(0.0, 1.0, 2001)


def _shape_integral(p: float) -> float:
    y = _skewed_sine(_SHAPE_GRID, p)
    return float(np.sum((y[1:] + y[:-1]) * 0.5) / (len(_SHAPE_GRID) - 1))


class SimRunner:
    """One simulated athlete. Call :meth:`advance` before sampling a time range."""

    def __init__(self, spec: AthleteSpec, *, start: float = 0.0) -> None:
        self.spec = spec
        self.p = spec.profile
        self.rng = np.random.default_rng(spec.seed)
        self.noise = np.random.default_rng(spec.seed + 7919)
        self.m = spec.body_mass_kg
        self.L = spec.leg_length_m
        self._thigh = self._shank = 0.51 * (self.L - ANKLE_HEIGHT)
        self._reset(start, 0.92 * self.L)
        self._reset(start, self._fitted_hip_height())

    def _reset(self, start: float, z_ref: float) -> None:
        """Start the plan afresh at ``start`` with the hips' reference height ``z_ref``."""
        self.rng = np.random.default_rng(self.spec.seed)
        self.z_ref = z_ref
        self.stances: deque[Stance] = deque()
        self.feet = {f: (KnotCurve(), KnotCurve(), KnotCurve()) for f in ("left", "right")}
        self._rolls: dict[str, deque[tuple[float, float, tuple[float, float], KnotCurve]]] = {
            f: deque() for f in ("left", "right")}
        self._truth_cursor = 0
        self._step = 0
        self._t = start + 0.2
        self._z = self.z_ref
        self._vz = -0.6
        self._last_step_time = 60.0 / self.p.cadence_spm
        self._pending: dict[str, Stance] = {}
        self._init_feet(start)

    def _fitted_hip_height(self, steps: int = 12) -> float:
        """The hips' reference height: 0.92 leg lengths (the hips a little under standing height,
        the knees bent), lowered when a trial plan of ``steps`` steps leaves a stance whose hips are
        out of the leg's reach: at IC from the ankle (a long overstride), at TO from the toes (thigh +
        shank at the profile's knee flexion at TO, plus the foot rolled to its largest pitch, 70
        degrees), with 1 cm to spare: the body is then carried lower, as an overstrider's is. Only
        the height's level moves, not its motion (the forces and the oscillation stay)."""
        for _ in range(steps):
            self._plan_step()
        reach = self._reach()
        excess = 0.0
        for st in list(self.stances)[2:]:
            toe_x, toe_z = _rot(0.0, *FOOT["toe"])
            ankle = _ankle_on_toe((st.x_contact + toe_x, ANKLE_HEIGHT + toe_z), math.radians(70.0))
            ahead = self.spec.speed_mps * st.to - ankle[0]
            if ahead >= reach:
                raise ValueError(f"profile {self.p.name!r}: the hips pass the toes by {ahead:.2f} m at TO")
            allowed = ankle[1] + math.sqrt(reach * reach - ahead * ahead)
            excess = max(excess, float(self._com_stance(st, np.array([st.tc]))[1][0]) - allowed)
            # and at IC the ankle, the overstride ahead, must be within the same reach of the hips
            excess = max(excess, st.com_z_ic - ANKLE_HEIGHT - math.sqrt(reach * reach - st.overstride**2))
        return self.z_ref - (excess + 0.01 if excess > 0.0 else 0.0)

    # ----------------------------------------------------------- planning
    def _vary(self, value: float, cv: float | None = None) -> float:
        return value * (1.0 + (cv if cv is not None else self.spec.variation) * self.rng.standard_normal())

    def _init_feet(self, start: float) -> None:
        # before the first planned stance both feet hang in swing-like poses
        for foot, lift in (("left", 0.15), ("right", 0.0)):
            x, z, th = self.feet[foot]
            x.add(start - 1.0, self.spec.speed_mps * (start - 1.0) - 0.2)
            z.add(start - 1.0, lift)
            th.add(start - 1.0, 0.3)

    def advance(self, t_end: float) -> None:
        """Plan steps until the feet curves cover ``t_end`` (with a stride of margin)."""
        while self._t < t_end + 1.5:
            self._plan_step()

    def _plan_step(self) -> None:
        p, spec = self.p, self.spec
        foot = "left" if self._step % 2 == 0 else "right"
        step_t = max(0.2, self._vary(60.0 / p.cadence_spm))
        # the profile's support time is at the reference speed; faster, the body sweeps the same
        # contact length sooner (support time ~ 1 / speed), so the leg reaches the toes at any speed
        tc = min(self._vary(p.duty * 60.0 / p.cadence_spm * REFERENCE_SPEED_MPS / spec.speed_mps), 0.92 * step_t)
        ic = self._t
        to = ic + tc
        tf = step_t - tc
        v_body = -self._vz
        forced = bool(self.rng.random() < p.forced_share)
        lo, hi = p.forced_ratio if forced else p.landing_ratio
        v_land = v_body * self.rng.uniform(lo, hi)
        forced = v_land > FORCED_RATIO * v_body
        overstride = self._vary(p.overstride_m, 0.08)
        hip_x = spec.speed_mps * ic
        stance = Stance(
            step=self._step, foot=foot, ic=ic, to=to, next_ic=ic + step_t, v_land=v_land,
            v_body=v_body, forced=forced, overstride=overstride, x_contact=hip_x + overstride,
            ic_pitch=math.radians(self._vary(p.ic_pitch_deg, 0.1) if p.ic_pitch_deg else 0.0),
            f_peak=0.0, p_skew=math.log(0.5) / math.log(p.force_peak_at),
            com_z_ic=self._z, com_vz_ic=self._vz,
        )
        # take-off velocity: symmetric flight, gently pulled back to the reference height
        b = G * tf / 2.0 + 0.3 * (self.z_ref - self._z) / max(tf, 0.05)
        impulse = self.m * (b - self._vz + G * tc)
        f_peak = impulse / (tc * _shape_integral(stance.p_skew))
        stance = replace(stance, f_peak=f_peak)
        z_to, _vz_to = self._com_stance_end(stance, b)
        self._z = z_to + b * tf - 0.5 * G * tf * tf
        self._vz = b - G * tf
        self._add_foot_stance(stance)
        self.stances.append(stance)
        self._pending[foot] = stance
        self._step += 1
        self._t = ic + step_t

    def _com_stance_end(self, st: Stance, b: float) -> tuple[float, float]:
        t = np.linspace(0.0, st.tc, 400)
        _, z, _ = self._com_stance(st, t)
        return float(z[-1]), b

    def _com_stance(self, st: Stance, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COM (acceleration, height, velocity) at local stance times ``u`` (numerical)."""
        grid = np.linspace(0.0, st.tc, 801)
        acc = st.f_peak * _skewed_sine(grid / st.tc, st.p_skew) / self.m - G
        dt = grid[1] - grid[0]
        vel = st.com_vz_ic + np.concatenate(([0.0], np.cumsum((acc[1:] + acc[:-1]) * 0.5 * dt)))
        pos = st.com_z_ic + np.concatenate(([0.0], np.cumsum((vel[1:] + vel[:-1]) * 0.5 * dt)))
        return np.interp(u, grid, acc), np.interp(u, grid, pos), np.interp(u, grid, vel)

    def _add_foot_stance(self, st: Stance) -> None:
        """Knots for this foot from its IC to its TO, then the swing to its next IC."""
        p, v = self.p, self.spec.speed_mps
        x, z, th = self.feet[st.foot]
        tau = 0.010 if p.strike != "heel" else 0.008
        vx_ic = (0.05 if p.strike == "ball" else 0.2) * v
        flat_pitch = math.radians(3.0) if p.strike == "ball" else 0.0
        t_flat = st.ic + (0.04 if p.strike != "heel" else 0.06)
        heel_off = st.ic + p.heel_off * st.tc
        x_ic = st.x_contact - vx_ic * tau / 2.0
        depth = st.v_land * tau / 2.0
        # push-off (the foot IMU's motion): the foot plantarflexes fastest as the toes leave the
        # ground (the rate peaks at TO), an S-shaped ramp from the heel lifting to toe-off
        push_rate = 2.0 * (math.radians(p.toe_off_pitch_deg) - flat_pitch) / max(st.to - heel_off, 0.02)
        for curve, knots in (
            (x, [(st.ic, x_ic, vx_ic), (st.ic + tau, st.x_contact, 0.0), (st.to, st.x_contact, 0.0)]),
            (z, [(st.ic, 0.0, -st.v_land), (st.ic + tau, -depth, 0.0), (heel_off, -depth, 0.0),
                 (st.to, 0.035, 0.5)]),
            (th, [(st.ic, st.ic_pitch, 0.0), (t_flat, flat_pitch, 0.0), (heel_off, flat_pitch, 0.0),
                  (st.to, math.radians(p.toe_off_pitch_deg), push_rate),
                  (st.to + 0.06, math.radians(p.toe_off_pitch_deg + 12), 0.0)]),
        ):
            for t, pos, vel in knots:
                if t > curve.end:
                    curve.add(t, pos, vel)
        self._add_roll(st, heel_off, flat_pitch, depth)
        # the swing (after TO) gets its landing knots when the next stance of this foot is
        # planned; here the swing peak, placed when the other foot's IC is known
        swing_peak = st.to + 0.45 * (st.next_ic + (st.next_ic - st.ic) - st.to)
        z.add(swing_peak, p.pull_height_m * (1.0 + 0.05 * self.rng.standard_normal()), 0.0)

    def _add_roll(self, st: Stance, heel_off: float, flat_pitch: float, depth: float) -> None:
        """The ankle keypoint's push-off: the foot rolls over its toes (they stay put, the heel and
        ankle rise) from heel-off to TO, pitching at least as the profile's toe-off pitch (an S-shaped
        ramp) and as far as the leg needs to reach the toes with the knee no straighter than the
        profile's ``knee_flexion_to_deg``. The foot IMU's curves keep the profile's own push-off."""
        p = self.p
        toe_x, toe_z = _rot(flat_pitch, *FOOT["toe"])
        toe = (st.x_contact + toe_x, ANKLE_HEIGHT - depth + toe_z)
        times = [heel_off + k / 6 * (st.to - heel_off) for k in range(7)]
        pitches = [flat_pitch]
        for k, t in enumerate(times[1:], start=1):
            ramp = flat_pitch + (math.radians(p.toe_off_pitch_deg) - flat_pitch) * (k / 6) ** 2
            pitches.append(max(ramp, pitches[-1], self._push_off_pitch(st, t, toe, flat_pitch)))
        step = times[1] - times[0]
        rates = [0.0] + [(pitches[k + 1] - pitches[k - 1]) / (2 * step) for k in range(1, 6)]
        rates.append(max(rates[-1], (pitches[6] - pitches[5]) / step))
        curve = KnotCurve()
        for t, pos, vel in zip(times, pitches, rates, strict=True):
            curve.add(t, pos, vel)
        self._rolls[st.foot].append((heel_off, st.to, toe, curve))

    def _rolled_ankle(self, foot: str, t: np.ndarray, ankle: np.ndarray) -> np.ndarray:
        """The ankle keypoint (n, 2) with each push-off's roll over the toes (``_add_roll``) in place
        of the foot curve's, let back to the curve over the first ``ROLL_RELEASE_S`` of the swing."""
        out = ankle.copy()
        for start, to, toe, curve in self._rolls[foot]:
            m = (t >= start) & (t < to + ROLL_RELEASE_S)
            if not m.any():
                continue
            rolled = np.stack(_ankle_on_toe(toe, curve.eval(np.minimum(t[m], to))[0]), axis=1)
            offset = rolled - ankle[m]
            after = t[m] > to
            if after.any():  # the offset at TO, released smoothly (the swing's knee folds the leg)
                w = 0.5 * (1.0 + np.cos(np.pi * (t[m][after] - to) / ROLL_RELEASE_S))
                offset[after] = self._roll_offset_at(foot, to, toe, curve) * w[:, None]
            out[m] = ankle[m] + offset
        return out

    def _roll_offset_at(self, foot: str, to: float, toe: tuple[float, float], curve: KnotCurve) -> np.ndarray:
        """The rolled ankle minus the foot curve's ankle at TO."""
        rolled = np.array(_ankle_on_toe(toe, float(curve.eval(np.array([to]))[0][0])))
        k = self.foot_kinematics(foot, np.array([to]))
        return rolled - np.array([k["x"][0], ANKLE_HEIGHT + k["z"][0]])

    def _reach(self) -> float:
        """Hip to ankle with the knee bent by the profile's ``knee_flexion_to_deg`` (law of cosines)."""
        inner = math.radians(180.0 - self.p.knee_flexion_to_deg)
        return math.sqrt(self._thigh**2 + self._shank**2 - 2 * self._thigh * self._shank * math.cos(inner))

    def _push_off_pitch(self, st: Stance, t: float, toe: tuple[float, float], flat_pitch: float) -> float:
        """The foot pitch (rad) at which the ankle, the foot rolled over its ``toe``, lies the
        thigh + shank of a knee bent by the profile's ``knee_flexion_to_deg`` from the hip at ``t``
        in the stance; 70 degrees at most (bisection: the ankle nears the hip as the foot rolls)."""
        _, hz, _ = self._com_stance(st, np.array([t - st.ic]))
        hip = (self.spec.speed_mps * t, float(hz[0]))
        reach = self._reach()

        def gap(pitch: float) -> float:
            ax, az = _ankle_on_toe(toe, pitch)
            return math.hypot(hip[0] - ax, hip[1] - az) - reach

        lo, hi = flat_pitch, math.radians(70.0)
        if gap(lo) <= 0.0:
            return lo
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if gap(mid) > 0.0 else (lo, mid)
        return hi

    # ------------------------------------------------------------ sampling
    def hip(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hip (COM) vertical (acceleration, height, velocity) at times ``t``."""
        t = np.asarray(t, dtype=float)
        acc = np.full_like(t, -G)
        pos = np.empty_like(t)
        vel = np.empty_like(t)
        done = np.zeros(t.shape, dtype=bool)
        for st in self.stances:
            stance = (t >= st.ic) & (t < st.to) & ~done
            if stance.any():
                a, zz, vv = self._com_stance(st, t[stance] - st.ic)
                acc[stance], pos[stance], vel[stance] = a, zz, vv
                done |= stance
            flight = (t >= st.to) & (t < st.next_ic) & ~done
            if flight.any():
                z_to = self._com_stance(st, np.array([st.tc]))[1][0]
                b = self._vz_to(st)
                u = t[flight] - st.to
                pos[flight] = z_to + b * u - 0.5 * G * u * u
                vel[flight] = b - G * u
                done |= flight
        if not done.all():
            pos[~done], vel[~done] = self.z_ref, 0.0
            acc[~done] = 0.0
        return acc, pos, vel

    def _vz_to(self, st: Stance) -> float:
        return float(self._com_stance(st, np.array([st.tc]))[2][0])

    def foot_kinematics(self, foot: str, t: np.ndarray) -> dict[str, np.ndarray]:
        x, z, th = self.feet[foot]
        px, vx, ax = x.eval(t)
        pz, vz, az = z.eval(t)
        pth, wth, _ = th.eval(t)
        return {"x": px, "vx": vx, "ax": ax, "z": pz, "vz": vz, "az": az, "pitch": pth, "omega": wth}

    def imu(self, foot: str, t: np.ndarray) -> np.ndarray:
        """Foot IMU (n, 6): specific force m/s^2 and angular rate rad/s; x fwd, y left, z up."""
        k = self.foot_kinematics(foot, t)
        c, s = np.cos(k["pitch"]), np.sin(k["pitch"])
        ax, az = k["ax"], k["az"] + G
        ring = self._impact_ring(foot, t)
        n = len(t)
        out = np.empty((n, 6))
        out[:, 0] = ax * c - az * s + 0.4 * ring
        out[:, 1] = 0.3 * np.sin(2 * np.pi * 1.4 * t) + 0.2 * ring
        out[:, 2] = ax * s + az * c + ring
        out[:, 3] = 0.05 * np.sin(2 * np.pi * 1.4 * t + 0.5)
        out[:, 4] = k["omega"]
        out[:, 5] = 0.04 * np.sin(2 * np.pi * 1.4 * t)
        out[:, :3] += self.noise.normal(0.0, 0.06, (n, 3))
        out[:, 3:] += self.noise.normal(0.0, 0.008, (n, 3))
        return out

    def pelvis_imu(self, t: np.ndarray) -> np.ndarray:
        """Sacrum IMU (n, 6): specific force m/s^2 and angular rate rad/s; x fwd, y left, z up.

        The specific force near the centre of mass is the ground force over body mass: the
        stance's vertical force (the body part, without the foot's own impact), braking then
        propulsion forward, and a push towards the midline sideways (to the right on the
        left foot); the landing shock reaches the trunk damped; trunk wobble and noise on top."""
        n = len(t)
        up, fwd, lat = np.zeros(n), np.zeros(n), np.zeros(n)
        for st in self.stances:
            mask = (t >= st.ic) & (t < st.to)
            if not mask.any():
                continue
            s = (t[mask] - st.ic) / st.tc
            shape = _skewed_sine(s, st.p_skew)
            up[mask] += st.f_peak * shape / self.m
            fwd[mask] -= 0.25 * G * np.sin(2 * np.pi * s)
            lat[mask] += (-0.08 if st.foot == "left" else 0.08) * G * shape
        shock = 0.15 * (self._impact_ring("left", t) + self._impact_ring("right", t))
        out = np.empty((n, 6))
        out[:, 0] = fwd
        out[:, 1] = lat + 0.3 * np.sin(2 * np.pi * 2.9 * t)
        out[:, 2] = up + shock + 0.4 * np.sin(2 * np.pi * 11.0 * t + 0.3)
        out[:, 3] = 0.3 * np.sin(2 * np.pi * 1.45 * t)  # roll, about the stride frequency
        out[:, 4] = 0.1 * np.sin(2 * np.pi * 2.9 * t + 0.7)
        out[:, 5] = 0.25 * np.sin(2 * np.pi * 1.45 * t + 1.2)  # yaw
        out[:, :3] += self.noise.normal(0.0, 0.3, (n, 3))
        out[:, 3:] += self.noise.normal(0.0, 0.01, (n, 3))
        return out

    def _impact_ring(self, foot: str, t: np.ndarray) -> np.ndarray:
        """A damped shock wave after each IC, larger for heel strikes and harder landings."""
        out = np.zeros_like(t, dtype=float)
        gain = 25.0 if self.p.strike == "heel" else 12.0
        for st in self.stances:
            if st.foot != foot:
                continue
            u = t - st.ic
            mask = (u >= 0) & (u < 0.06)
            if mask.any():
                uu = u[mask]
                out[mask] += gain * st.v_land * np.exp(-uu / 0.008) * np.sin(2 * np.pi * 45.0 * uu)
        return out

    def vertical_force(self, foot: str, t: np.ndarray) -> np.ndarray:
        """Vertical ground force under one foot (N): body part plus the foot's impact."""
        f = np.zeros_like(t, dtype=float)
        m_eff = (0.07 if self.p.strike == "heel" else 0.03) * self.m
        for st in self.stances:
            if st.foot != foot:
                continue
            mask = (t >= st.ic) & (t < st.to)
            if not mask.any():
                continue
            s = (t[mask] - st.ic) / st.tc
            f[mask] += st.f_peak * _skewed_sine(s, st.p_skew)
        az = self.feet[foot][1].eval(t)[2]
        in_stance = f > 0
        f[in_stance] += m_eff * np.clip(az[in_stance], 0.0, None)
        return f

    def insole(self, foot: str, t: np.ndarray) -> np.ndarray:
        """16 cell forces (N) for one foot."""
        f = self.vertical_force(foot, t)
        cop = np.full_like(t, 0.5, dtype=float)
        heel = np.zeros_like(t, dtype=float)
        for st in self.stances:
            if st.foot != foot:
                continue
            mask = (t >= st.ic) & (t < st.to)
            if mask.any():
                s = (t[mask] - st.ic) / st.tc
                xs, ys = zip(*self.p.cop, strict=True)
                cop[mask] = np.interp(s, xs, ys)
                if self.p.heel_touch_bw:
                    heel[mask] = self.p.heel_touch_bw * self.m * G * np.clip(
                        np.sin(np.pi * (s - 0.2) / 0.5), 0.0, None) * ((s > 0.2) & (s < 0.7))
        w = np.exp(-((_ALONG[None, :] - cop[:, None]) ** 2) / (2 * 0.09**2))
        w /= w.sum(axis=1, keepdims=True)
        cells = f[:, None] * w
        cells[:, _HEEL_CELLS] += heel[:, None] / _HEEL_CELLS.sum() * (f[:, None] > 0)
        cells += np.abs(self.noise.normal(0.0, 0.8, cells.shape)) * (f[:, None] > 0)
        return np.maximum(cells, 0.0)

    def joints(self, t: np.ndarray, frame_speed: float) -> dict[str, np.ndarray]:
        """2-D joint positions (n, 2) in metres in a frame moving at ``frame_speed``."""
        p, L = self.p, self.L
        _, hz, _ = self.hip(t)
        hip = np.stack([self.spec.speed_mps * t - frame_speed * t, hz], axis=1)
        out: dict[str, np.ndarray] = {}
        for foot in ("left", "right"):
            k = self.foot_kinematics(foot, t)
            ankle = self._rolled_ankle(foot, t, np.stack([k["x"], ANKLE_HEIGHT + k["z"]], axis=1))
            ankle[:, 0] -= frame_speed * t
            out[f"{foot}_ankle"] = ankle
            out[f"{foot}_hip"] = hip
            out[f"{foot}_knee"] = _knee(hip, ankle, self._thigh, self._shank)
            c, s = np.cos(k["pitch"]), np.sin(k["pitch"])
            for name, (fx, fz) in FOOT.items():
                out[f"{foot}_{name}"] = ankle + np.stack([fx * c + fz * s, -fx * s + fz * c], axis=1)
        lean = math.radians(p.trunk_lean_deg + p.waist_bend_deg)
        trunk = 0.55 * L
        shoulder = hip + trunk * np.array([math.sin(lean), math.cos(lean)])
        out["left_shoulder"] = out["right_shoulder"] = shoulder
        head = shoulder + 0.2 * L * np.array([math.sin(lean), math.cos(lean)])
        for name in ("nose", "left_eye", "right_eye"):
            out[name] = head + np.array([0.09, 0.02])
        out["left_ear"] = out["right_ear"] = head
        phase = self._arm_phase(t)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            a = sign * 0.6 * np.sin(phase)
            elbow = shoulder + 0.33 * L * np.stack([np.sin(a), -np.cos(a)], axis=1)
            fa = a + 1.5
            out[f"{side}_elbow"] = elbow
            out[f"{side}_wrist"] = elbow + 0.27 * L * np.stack([np.sin(fa), -np.cos(fa)], axis=1)
        return out

    def _arm_phase(self, t: np.ndarray) -> np.ndarray:
        stride = 2 * 60.0 / self.p.cadence_spm
        return 2 * np.pi * t / stride

    def keypoints(
        self, t: np.ndarray, *, scale: float, origin: tuple[float, float],
        frame_speed: float, missing: float = 0.01, pixel_noise: float = 1.0,
    ) -> np.ndarray:
        """COCO-17 keypoints (n, 51): x px, y px (down), confidence; missing ones have c = 0."""
        j = self.joints(t, frame_speed)
        n = len(t)
        out = np.empty((n, len(COCO17) * 3))
        for i, name in enumerate(COCO17):
            xy = j[name]
            out[:, 3 * i] = origin[0] + xy[:, 0] / scale + self.noise.normal(0, pixel_noise, n)
            out[:, 3 * i + 1] = origin[1] - xy[:, 1] / scale + self.noise.normal(0, pixel_noise, n)
            conf = np.clip(self.noise.normal(0.92, 0.04, n), 0.3, 0.999)
            gone = self.noise.random(n) < missing
            conf[gone] = 0.0
            out[gone, 3 * i: 3 * i + 2] = 0.0
            out[:, 3 * i + 2] = conf
        return out

    # ------------------------------------------------------------- truth
    def completed(self, t: float) -> list[Stance]:
        """Stances whose TO is at or before ``t`` and not yet returned."""
        done = []
        for st in self.stances:
            if st.step < self._truth_cursor:
                continue
            if st.to > t:
                break
            done.append(st)
            self._truth_cursor = st.step + 1
        return done

    def forget_before(self, t: float) -> None:
        """Drop planning state older than ``t`` (memory stays flat over long sessions)."""
        while self.stances and self.stances[0].next_ic + 1.0 < t:
            self.stances.popleft()
        for curves in self.feet.values():
            for c in curves:
                c.drop_before(t - 1.0)
        for rolls in self._rolls.values():
            while rolls and rolls[0][1] + 1.0 < t:
                rolls.popleft()


def _rot(pitch: float, fx: float, fz: float) -> tuple[float, float]:
    """A point of the foot at (``fx`` forward, ``fz`` up) from the ankle when flat, relative to the
    ankle at ``pitch`` (rad, + toes down)."""
    c, s = math.cos(pitch), math.sin(pitch)
    return fx * c + fz * s, -fx * s + fz * c


def _ankle_on_toe(toe: tuple[float, float], pitch: float | np.ndarray) -> tuple[float | np.ndarray, ...]:
    """The ankle (x, z) of a rigid foot standing on its ``toe`` tip at ``pitch`` (rad, + toes down)."""
    fx, fz = FOOT["toe"]
    c, s = np.cos(pitch), np.sin(pitch)
    return toe[0] - (fx * c + fz * s), toe[1] - (-fx * s + fz * c)


def _knee(hip: np.ndarray, ankle: np.ndarray, thigh: float, shank: float) -> np.ndarray:
    """Knee from two-link inverse kinematics, bending forward (knee ahead of the line)."""
    d = ankle - hip
    dist = np.clip(np.linalg.norm(d, axis=1), 1e-6, thigh + shank - 1e-6)
    u = d / dist[:, None]
    a = (thigh**2 - shank**2 + dist**2) / (2 * dist)
    h = np.sqrt(np.clip(thigh**2 - a**2, 0.0, None))
    perp = np.stack([-u[:, 1], u[:, 0]], axis=1)  # rotate +90 deg
    perp[perp[:, 0] < 0] *= -1.0  # knee points forward
    return hip + u * a[:, None] + perp * h[:, None]
