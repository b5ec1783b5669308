"""The processor against another version of itself, in one run: the two alternate, so both
see the same machine (this one's speed varies by up to 2x with its load).

    git worktree add /tmp/base <commit> && python -m venv /tmp/basevenv \
        && /tmp/basevenv/bin/pip install -e /tmp/base
    python bench/processor_ab.py --baseline /tmp/basevenv/bin/python [--rounds 6 --passes 10]

Each figure is the fastest of ``passes`` passes over the same 30 s of one simulated
athlete's full sensor set, in a fresh process, as a share of one core.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(path: Path, seconds: float) -> None:
    from poserun.services.sim.team import SimTeam
    from poserun.settings import SimSettings
    from poserun.wire import decode

    team = SimTeam("b", SimSettings(athletes=1, seed=1, bundle=False))
    blocks = []
    for _ in range(int(seconds * 2)):
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            fr = decode(m.payload)
            blocks.append((m.topic.rsplit("/", 1)[1], fr.times_ns(), np.array(fr.data)))
    sources = [(src.name, src.rate) for src in team.sources["a01"]]
    path.write_bytes(pickle.dumps((seconds, sources, blocks)))


def child(path: Path, passes: int) -> None:
    """Print the fastest pass as a share of one core (runs in either interpreter)."""
    from poserun.processors.athlete import AthleteParams, AthleteState
    from poserun.services.fusion import configure
    from poserun.services.sim.team import device_meta

    seconds, sources, blocks = pickle.loads(path.read_bytes())

    def fresh() -> AthleteState:
        state = AthleteState("a01", AthleteParams())
        for name, rate in sources:
            configure(state, device_meta(name, rate))
        return state

    for _ in range(2):  # compile or load every kernel first
        state = fresh()
        for b in blocks:
            state.push(*b)
    best = float("inf")
    for _ in range(passes):
        state = fresh()
        t = time.perf_counter()
        for b in blocks:
            state.push(*b)
        best = min(best, time.perf_counter() - t)
    print(100 * best / seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="the other version's Python interpreter (required)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.passes)
        return
    if not args.baseline:
        ap.error("--baseline is required")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "blocks.pickle"
        make_data(data, args.seconds)
        runs: dict[str, list[float]] = {"baseline": [], "this": []}
        for _ in range(args.rounds):
            for label, python in (("baseline", args.baseline), ("this", sys.executable)):
                out = subprocess.run([python, __file__, "--child", str(data), "--passes", str(args.passes)],
                                     capture_output=True, text=True, check=True)
                runs[label].append(float(out.stdout.strip()))
    print("| code | processor alone, % of a core per athlete (fastest per round) |\n|---|---|")
    for label, values in runs.items():
        print(f"| {label} | {' / '.join(f'{v:.3f}' for v in values)} |")
    ratios = [b / a for a, b in zip(runs["baseline"], runs["this"], strict=True)]
    print(f"\nthis / baseline: median ratio {statistics.median(ratios):.2f}, fastest "
          f"{min(runs['this']):.3f} against {min(runs['baseline']):.3f}")


if __name__ == "__main__":
    main()
