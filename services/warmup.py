"""Compile (or load from the on-disk cache) every numba kernel before the first frame: ``poserun warm-up``.

The kernels are cached next to their modules (``processors/jit.py``), so compiling happens once
per install; ``make demo`` and ``make test`` run ``poserun warm-up`` right after installing, so
neither the first demo nor the first test waits on the compiler.

Compiling is numba's own Python (typing and lowering), one core's work that holds the GIL. A cold
warm-up therefore splits the kernels into groups, one per sensor kind, and compiles the groups in
parallel processes (one per core): each writes its kernels to the shared cache, and the parent
then loads the whole set from it. A warm cache loads in well under a second in-process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from poserun.processors.athlete import AthleteState
from poserun.settings import SimSettings
from poserun.wire import meta as wm
from poserun.wire.frame import decode

#: Kernel groups by sensor kind: the simulated sources that drive each group's kernels, slowest
#: to compile first (so two processes finish together). ``imu_shank_left`` is fed the simulated
#: foot IMU's samples: the shank kernels need only the types, not a plausible stance.
GROUPS: dict[str, tuple[str, ...]] = {
    "camera": ("keypoints",),
    "insole": ("insole_left", "insole_right"),
    "foot IMU": ("imu_foot_left", "imu_foot_right"),
    "shank and pelvis IMU": ("imu_shank_left", "imu_pelvis"),
}
ALL = ("imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints")
SIM_SECONDS = 2.0  # a few strides of each foot: every stance and landing kernel runs at least once


@dataclass
class WarmUpReport:
    """What a warm-up did: seconds per group (compiled in parallel when the cache was cold)."""

    cold: bool
    seconds: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)


def _kernels() -> list[object]:
    """Every top-level numba dispatcher of ``poserun.processors`` (imported)."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import poserun.processors as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        found += [v for v in vars(mod).values() if isinstance(v, CPUDispatcher) and v.__module__ == mod.__name__]
    return found


def cache_is_cold() -> bool:
    """True if some kernel has nothing valid in the on-disk cache (first run after an install, or
    after an edit of its module: numba then finds the index stale and reads it as empty)."""
    for kernel in _kernels():
        cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
        index = getattr(cache_file, "_index_path", None)
        if index is None or not os.path.exists(index):
            return True
        try:
            if not cache_file._load_index():  # type: ignore[union-attr]
                return True
        except Exception:  # an unreadable index is as good as none
            return True
    return False


def run_sources(sources: tuple[str, ...], seconds: float = SIM_SECONDS) -> float:
    """Feed one simulated athlete's ``sources`` through a fresh :class:`AthleteState`; seconds taken."""
    from poserun.services.fusion import configure
    from poserun.services.sim.team import SimTeam, device_meta

    t0 = time.perf_counter()
    simulated = tuple(dict.fromkeys("imu_foot_left" if s == "imu_shank_left" else s for s in sources))
    team = SimTeam("warmup", SimSettings(athletes=1, seed=0, sensors=list(simulated), bundle=False))
    state = AthleteState("a01")
    rates = {src.name: src.rate for src in team.sources["a01"]}
    for name in sources:
        if name == "imu_shank_left":
            configure(state, wm.ImuMeta(source=name, rate_hz=rates["imu_foot_left"], placement="shank",
                                        side="left"))
        else:
            configure(state, device_meta(name, rates[name]))
    for m in team.step(int(seconds / team.frame_s))[0]:
        if "/data/" not in m.topic:
            continue
        fr = decode(m.payload)
        name = m.topic.rsplit("/", 1)[1]
        times, data = fr.times_ns(), fr.data
        if "imu_shank_left" in sources and name == "imu_foot_left":
            state.push("imu_shank_left", times, np.asarray(data))
            if "imu_foot_left" not in sources:
                continue
        if name in sources:
            state.push(name, times, data)
    return time.perf_counter() - t0


def _group(name: str) -> tuple[str, float]:
    return name, run_sources(GROUPS[name])


_done: WarmUpReport | None = None  # kernels loaded into a process stay loaded: once is enough


def warm_up(*, jobs: int | None = None, progress: Callable[[str], None] | None = None) -> WarmUpReport:
    """Make every kernel ready: compile the cold ones (in ``jobs`` processes), then load all here.
    A second call in the same process (the demo warms up, then its service) returns at once."""
    global _done
    if _done is not None:
        return _done
    t0 = time.perf_counter()
    report = WarmUpReport(cold=cache_is_cold())
    jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    if report.cold and jobs > 1 and os.environ.get("NUMBA_DISABLE_JIT") != "1":
        if progress:
            progress(f"compiling the processor's kernels in {min(jobs, len(GROUPS))} processes "
                     "(once per install; later starts load them from the cache)")
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or loops
        with ProcessPoolExecutor(max_workers=min(jobs, len(GROUPS)), mp_context=ctx) as pool:
            for name, seconds in pool.map(_group, GROUPS):
                report.groups[name] = round(seconds, 2)
                if progress:
                    progress(f"  {name} kernels ready ({seconds:.1f} s)")
    elif report.cold and progress:
        progress("compiling the processor's kernels (once per install)")
    for name, sources in GROUPS.items():  # here: loads what the pool cached (or compiles, without a pool)
        seconds = run_sources(sources)
        report.groups.setdefault(name, round(seconds, 2))
    run_sources(ALL, seconds=1.0)  # the sources together (records that combine them)
    report.seconds = time.perf_counter() - t0
    _done = report
    return report
