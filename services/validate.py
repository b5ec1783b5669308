"""``poserun validate``: accuracy of the fusion processor against ground truth.

Without files: simulated sessions (every technique profile, per sensor subset)
with the simulator's exact truth, and the real Bach 2022 recording with
force-plate truth, run through the same FusionService the live service uses
(in-process, no broker); prints the Markdown tables of docs/accuracy.md.

With files: any recordings that carry truth (``.../truth``: a lab import's
force plates or belts, a simulator run recorded with ``--truth``) are analysed
as ``poserun analyze`` does and scored per file and pooled: contacts matched
(a detected IC within ``MATCH_MS`` of a true one, each used once), IC and TO
bias and MAE, contact-time MAE, cadence error, detections that match nothing.

    poserun validate [RECORDING...] [--seconds 60] [--seed 7] [--bach2022 FOLDER]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from typing import Any

import numpy as np

from poserun.services.fusion import FusionService
from poserun.services.sim.profiles import PROFILES
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, load_settings

SUBSETS = {
    "all sensors": ["imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints"],
    "foot IMU only": ["imu_foot_left", "imu_foot_right"],
    "insole only": ["insole_left", "insole_right"],
    "IMU + camera": ["imu_foot_left", "imu_foot_right", "keypoints"],
    "camera only": ["keypoints"],
    "sacrum IMU only": ["imu_pelvis"],
}


CLOCKS = {"clock_offsets_ms": {"imu_foot_left": 40.0, "imu_foot_right": 25.0},
          "clock_drift_ppm": {"imu_foot_left": 100.0}}


def run_session(sensors: list[str], seconds: float, seed: int, per_profile: int = 2,
                clocks: dict[str, Any] | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, list[Any]], dict[str, str]]:
    profiles = list(PROFILES)
    n = per_profile * len(profiles)
    settings = load_settings(overrides={"sim": {"athletes": n, "sensors": sensors, "seed": seed,
                                                "profiles": profiles, **(clocks or {})}})
    team = SimTeam("acc", settings.sim)
    listed = [AthleteSettings(id=s.athlete_id, body_mass_kg=s.body_mass_kg, leg_length_m=s.leg_length_m)
              for s in team.specs]
    settings = settings.model_copy(update={"athletes": listed})
    svc = FusionService(settings, session="acc")
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    records: list[dict[str, Any]] = []
    truth: dict[str, list[Any]] = defaultdict(list)
    for _ in range(int(seconds * 2)):
        msgs, done = team.step(50)
        msgs.sort(key=lambda m: m.at_ns)  # publication order, as the gateway sends them
        for m in msgs:
            records += svc.handle(m.topic, m.payload)
        for a, stances in done.items():
            truth[a] += stances
    return records, truth, {s.athlete_id: s.profile.name for s in team.specs}


def evaluate(records: list[dict[str, Any]], truth: dict[str, list[Any]], skip_s: float = 3.0) -> dict[str, Any]:
    ic_err, to_err, ct_err, cad_err = [], [], [], []
    tp = fp = fn = 0
    matched = total = 0
    by_athlete: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["type"] == "stance":
            by_athlete[r["athlete"]].append(r)
    for athlete, stances in truth.items():
        recs = by_athlete.get(athlete, [])
        ordered = sorted(stances, key=lambda s: s.ic)
        steps = np.diff([s.ic for s in ordered])
        # the truth's rolling cadence, over the same 8 steps the processor uses
        true_cadence = {s.step: 60.0 / float(np.median(steps[max(0, k - 8):k])) for k, s in enumerate(ordered) if k}
        ics = np.array([r["ic_ns"] for r in recs], dtype=float)
        feet = [r["foot"] for r in recs]
        for st in stances:
            if st.ic < skip_s:
                continue
            total += 1
            cand = [k for k in range(len(recs)) if feet[k] == st.foot and abs(ics[k] - st.ic * 1e9) < 60e6]
            if not cand:
                if st.forced:
                    fn += 1
                continue
            r = recs[min(cand, key=lambda k: abs(ics[k] - st.ic * 1e9))]
            matched += 1
            ic_err.append((r["ic_ns"] - st.ic * 1e9) / 1e6)
            to_err.append((r["to_ns"] - st.to * 1e9) / 1e6)
            ct_err.append((r["support_time_s"] - st.tc) * 1e3)
            if r.get("cadence_spm") and st.step in true_cadence:
                cad_err.append(r["cadence_spm"] - true_cadence[st.step])
            pred = r.get("forced_landing")
            if pred is True and st.forced:
                tp += 1
            elif pred is True:
                fp += 1
            elif st.forced:
                fn += 1
    def stats(e: list[float]) -> tuple[float, float, float]:
        if not e:
            return (math.nan, math.nan, math.nan)
        a = np.array(e)
        return float(a.mean()), float(np.abs(a).mean()), float(a.std())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
    return {"stances": total, "matched": matched, "ic": stats(ic_err), "to": stats(to_err),
            "contact_mae": stats(ct_err)[1], "cadence_mae": stats(cad_err)[1],
            "forced": (precision, recall, f1, tp + fn)}


def fmt(v: float, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


MATCH_MS = 100.0  # a detection within this of a true IC is that contact (the issue's +-100 ms)


def truth_events(path: str) -> dict[tuple[str, str], list[Any]]:
    """The truth events of a recording by (session, athlete), in IC order."""
    from poserun.recording import read_messages
    from poserun.wire import topics
    from poserun.wire.meta import TruthEvent

    out: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for m in read_messages(path):
        try:
            t = topics.parse(m.topic)
        except ValueError:
            continue
        if t.channel == "truth" and t.athlete:
            try:
                out[(t.session, t.athlete)].append(TruthEvent.model_validate_json(m.payload))
            except ValueError:
                continue  # a malformed truth message is no contact
    return {k: sorted(v, key=lambda e: e.ic_ns) for k, v in out.items()}


def true_cadence(events: list[Any]) -> dict[int, float]:
    """Cadence (steps/min) at each true contact over the 8 steps before it; truth of one foot only
    (a plate under one leg) counts strides as two steps."""
    feet = {e.foot for e in events}
    per = 1.0 if len(feet) > 1 else 2.0
    ics = [e.ic_ns for e in events]
    window = 8 if per == 1.0 else 4
    out = {}
    for k in range(1, len(ics)):
        d = np.diff(ics[max(0, k - window):k + 1])
        out[k] = 60e9 * per / float(np.median(d))
    return out


def score(records: list[dict[str, Any]], truth: dict[tuple[str, str], list[Any]]) -> dict[str, Any]:
    """Match stance records to true contacts (nearest IC within MATCH_MS, each record used once) and
    collect the errors; ``extra``: detections matching no true contact (within a trial's true span)."""
    errors: dict[str, list[float]] = {"ic": [], "to": [], "ct": [], "cad": []}
    contacts = matched = wrong_foot = extra = 0
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("type") == "stance":
            by_key[(str(r.get("session")), str(r.get("athlete")))].append(r)
    for key, events in truth.items():
        recs = sorted(by_key.get(key, []), key=lambda r: r["ic_ns"])
        cadence = true_cadence(events)
        used: set[int] = set()
        pairs = sorted((abs(r["ic_ns"] - e.ic_ns), k, j) for k, e in enumerate(events)
                       for j, r in enumerate(recs) if abs(r["ic_ns"] - e.ic_ns) <= MATCH_MS * 1e6)
        taken: dict[int, int] = {}
        for _d, k, j in pairs:
            if k not in taken and j not in used:
                taken[k] = j
                used.add(j)
        contacts += len(events)
        for k, j in taken.items():
            e, r = events[k], recs[j]
            matched += 1
            wrong_foot += r.get("foot") != e.foot
            errors["ic"].append((r["ic_ns"] - e.ic_ns) / 1e6)
            errors["to"].append((r["to_ns"] - e.to_ns) / 1e6)
            errors["ct"].append((r["to_ns"] - r["ic_ns"] - (e.to_ns - e.ic_ns)) / 1e6)
            if r.get("cadence_spm") and k in cadence:
                errors["cad"].append(float(r["cadence_spm"]) - cadence[k])
        if events:
            lo, hi = events[0].ic_ns - MATCH_MS * 1e6, events[-1].to_ns + MATCH_MS * 1e6
            extra += sum(1 for j, r in enumerate(recs) if j not in used and lo <= r["ic_ns"] <= hi)
    return {"contacts": contacts, "matched": matched, "wrong_foot": wrong_foot, "extra": extra,
            "errors": {k: np.array(v) for k, v in errors.items()}}


def pooled(scores: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: sum(s[k] for s in scores) for k in ("contacts", "matched", "wrong_foot", "extra")}
    out["errors"] = {k: np.concatenate([s["errors"][k] for s in scores]) if scores else np.array([])
                     for k in ("ic", "to", "ct", "cad")}
    return out


def score_recordings(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each recording analysed (as ``poserun analyze``) and scored against its truth, then pooled."""
    from poserun.services.analyze import analyze_file

    settings = load_settings()
    rows = []
    for path in paths:
        truth = truth_events(path)
        if not truth:
            raise ValueError(f"{path}: the recording carries no truth (.../truth) to validate against")
        records, _snap = analyze_file(path, settings)
        rows.append((path, score(records, truth)))
    if len(rows) > 1:
        rows.append(("pooled", pooled([s for _p, s in rows])))
    return rows


def print_scores(rows: list[tuple[str, dict[str, Any]]]) -> None:
    def m(a: np.ndarray, f: Any) -> str:
        return "-" if not len(a) else f"{float(f(a)):.1f}"

    print(f"| recording | contacts matched (+-{MATCH_MS:g} ms) | IC bias / MAE (ms) | TO bias / MAE (ms) | "
          "contact time bias / MAE (ms) | cadence MAE (spm) | wrong foot | unmatched detections |")
    print("|---|---:|---|---|---|---:|---:|---:|")
    for name, s in rows:
        e = s["errors"]
        share = 100.0 * s["matched"] / s["contacts"] if s["contacts"] else float("nan")
        print(f"| {name} | {s['matched']}/{s['contacts']} ({share:.1f} %) | {m(e['ic'], np.mean)} / "
              f"{m(np.abs(e['ic']), np.mean)} | {m(e['to'], np.mean)} / {m(np.abs(e['to']), np.mean)} | "
              f"{m(e['ct'], np.mean)} / {m(np.abs(e['ct']), np.mean)} | {m(np.abs(e['cad']), np.mean)} | "
              f"{s['wrong_foot']} | {s['extra']} |")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="poserun validate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="*", help="recordings with truth to score (none: the built-in tables)")
    ap.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per sensor subset")
    ap.add_argument("--seed", type=int, default=7, help="the simulated team's random seed")
    ap.add_argument("--bach2022", default="../shared/data/real/bach2022", help="folder of the real recording")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.recordings:
        print_scores(score_recordings(args.recordings))
        return
    rows = []
    t0 = time.time()
    records, truth, _ = run_session(SUBSETS["all sensors"], args.seconds, args.seed, clocks=CLOCKS)
    clock_row = ("all sensors, foot IMU clocks +40 / +25 ms, left +100 ppm", "all profiles",
                 evaluate(records, truth, skip_s=10.0))
    for name, sensors in SUBSETS.items():
        records, truth, profiles = run_session(sensors, args.seconds, args.seed)
        res = evaluate(records, truth)
        rows.append((name, "all profiles", res))
        if name == "all sensors":
            rows.append(clock_row)
        for prof in PROFILES:
            ids = {a for a, p in profiles.items() if p == prof}
            sub = evaluate([r for r in records if r["athlete"] in ids], {a: truth[a] for a in ids})
            rows.append((name, prof, sub))
    print(f"simulated: 10 athletes (2 per profile) x {args.seconds:g} s per sensor subset, seed {args.seed}; "
          f"{time.time() - t0:.0f} s\n")
    print("| sensors | profile | stances found | IC mean / MAE / SD (ms) | TO mean / MAE / SD (ms) | "
          "contact MAE (ms) | cadence MAE (spm) | forced landing P / R / F1 (n) |")
    print("|---|---|---:|---|---|---:|---:|---|")
    for name, prof, r in rows:
        p, rc, f1, nf = r["forced"]
        print(f"| {name} | {prof} | {r['matched']}/{r['stances']} | "
              f"{fmt(r['ic'][0])} / {fmt(r['ic'][1])} / {fmt(r['ic'][2])} | "
              f"{fmt(r['to'][0])} / {fmt(r['to'][1])} / {fmt(r['to'][2])} | {fmt(r['contact_mae'])} | "
              f"{fmt(r['cadence_mae'])} | {fmt(p, 2)} / {fmt(rc, 2)} / {fmt(f1, 2)} ({nf}) |")
    import os

    if os.path.exists(os.path.join(args.bach2022, "walk+run.mat")):
        print_bach(bach2022(args.bach2022))
    else:
        print(f"\n(no real recording at {args.bach2022})")



def bach2022(folder: str) -> dict[str, Any]:
    """The real recording: shank accelerometer against force-plate truth at 50 N."""
    from poserun.services.importer import import_bach2022
    from poserun.wire import topics
    from poserun.wire.meta import TruthEvent

    msgs, _ = import_bach2022(folder, running_only=True)
    msgs.sort(key=lambda m: (m.log_time_ns, not m.retain))
    svc = FusionService(load_settings(), session="bach2022")
    records: list[dict[str, Any]] = []
    truth: dict[str, list[TruthEvent]] = defaultdict(list)
    for m in msgs:
        t = topics.parse(m.topic)
        if t.channel == "truth":
            truth[t.athlete or ""].append(TruthEvent.model_validate_json(m.payload))
        else:
            records += svc.handle(m.topic, m.payload)
    ic_err, to_err, ct_err, cad_err = [], [], [], []
    total = 0
    for athlete, events in truth.items():
        stances = [r for r in records if r["type"] == "stance" and r["athlete"] == athlete]
        true_stride = float(np.median(np.diff([e.ic_ns for e in events]))) / 1e9
        for e in events:
            total += 1
            match = [r for r in stances if -20e6 < r["ic_ns"] - e.ic_ns < 100e6]
            if not match:
                continue
            r = match[0]
            ic_err.append((r["ic_ns"] - e.ic_ns) / 1e6)
            to_err.append((r["to_ns"] - e.to_ns) / 1e6)
            ct_err.append((r["to_ns"] - r["ic_ns"] - (e.to_ns - e.ic_ns)) / 1e6)
            if r.get("cadence_spm"):
                cad_err.append(r["cadence_spm"] - 120.0 / true_stride)
    a = {k: np.array(v) for k, v in (("ic", ic_err), ("to", to_err), ("ct", ct_err), ("cad", cad_err))}
    return {"contacts": total, "found": len(ct_err), "arrays": a}


def print_bach(res: dict[str, Any]) -> None:
    a = res["arrays"]
    print("\n| recording | contacts found | IC mean / SD (ms) | TO mean / SD (ms) | contact time mean / MAE / SD (ms) "
          "| cadence MAE (spm) |")
    print("|---|---:|---|---|---|---:|")
    print(f"| bach2022, 7 running trials, shank accelerometer | {res['found']}/{res['contacts']} | "
          f"{a['ic'].mean():.1f} / {a['ic'].std():.1f} | {a['to'].mean():.1f} / {a['to'].std():.1f} | "
          f"{a['ct'].mean():.1f} / {np.abs(a['ct']).mean():.1f} / {a['ct'].std():.1f} | "
          f"{np.abs(a['cad']).mean():.1f} |")


if __name__ == "__main__":
    main()
