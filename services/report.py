"""``poserun report SESSION``: a self-contained HTML post-session report.

A team summary table and, per athlete, plots of support time and cadence
over the session, left/right comparison, a forced-landings timeline, the
strike-zone distribution, and the pose score with its breakdown. Plots are
matplotlib PNGs embedded as data URIs: the file opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from poserun.sinks.store import Database

PLOTS = ("timeline", "left_right", "forced", "strike", "score")
ZONES = ("heel", "midfoot", "ball", "toes")
LR_METRICS = (("support_time_s", "support (s)"), ("flight_time_s", "flight (s)"),
              ("loading_rate_bw_per_s", "loading rate (BW/s)"), ("overstride_m", "overstride (m)"),
              ("knee_flexion_ic_deg", "knee at IC (deg)"), ("release_ratio", "release ratio"))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.fmean(nums) if nums else None


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def athlete_plots(stances: list[dict[str, Any]], landings: list[dict[str, Any]], t0: int) -> dict[str, str]:
    """The five plots of one athlete, as data URIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    t = [(s["ic_ns"] - t0) / 60e9 for s in stances]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    for foot, colour in (("left", "tab:blue"), ("right", "tab:orange")):
        pts = [(tt, s["support_time_s"]) for tt, s in zip(t, stances, strict=True) if s["foot"] == foot]
        if pts:
            ax.plot(*zip(*pts, strict=True), ".", ms=3, color=colour, label=f"support {foot}")
    ax.set_xlabel("minutes")
    ax.set_ylabel("support time (s)")
    ax2 = ax.twinx()
    cad = [(tt, s["cadence_spm"]) for tt, s in zip(t, stances, strict=True) if s.get("cadence_spm")]
    if cad:
        ax2.plot(*zip(*cad, strict=True), "-", lw=1, color="tab:green", label="cadence")
    ax2.set_ylabel("cadence (steps/min)")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("Support time and cadence")
    out["timeline"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 2.6))
    labels, left, right = [], [], []
    for key, label in LR_METRICS:
        lv = _mean([s.get(key) for s in stances if s["foot"] == "left"])
        rv = _mean([s.get(key) for s in stances if s["foot"] == "right"])
        if lv is not None and rv is not None and (lv + rv) != 0:
            labels.append(label)
            left.append(100.0 * lv / ((lv + rv) / 2))
            right.append(100.0 * rv / ((lv + rv) / 2))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], left, width=0.4, label="left")
    ax.bar([i + 0.2 for i in x], right, width=0.4, label="right")
    ax.axhline(100, color="grey", lw=0.8)
    ax.set_xticks(list(x), labels, fontsize=7, rotation=15)
    ax.set_ylabel("% of the L/R mean")
    ax.legend(fontsize=7)
    ax.set_title("Left / right")
    out["left_right"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 1.8))
    ok = [(lnd["ic_ns"] - t0) / 60e9 for lnd in landings if lnd.get("forced_landing") is False]
    bad = [(lnd["ic_ns"] - t0) / 60e9 for lnd in landings if lnd.get("forced_landing")]
    ax.plot(ok, [0] * len(ok), "|", color="tab:green", ms=8, label="released")
    ax.plot(bad, [0] * len(bad), "|", color="tab:red", ms=14, mew=2, label="forced")
    ax.set_yticks([])
    ax.set_xlabel("minutes")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"Forced landings: {len(bad)} of {len(bad) + len(ok)}")
    out["forced"] = _png(fig)

    fig, ax = plt.subplots(figsize=(3.6, 2.4))
    zones = Counter(s.get("strike_zone") for s in stances if s.get("strike_zone"))
    ax.bar(ZONES, [zones.get(z, 0) for z in ZONES], color=["tab:red", "tab:orange", "tab:green", "tab:olive"])
    ax.set_ylabel("stances")
    ax.set_title("Strike zone")
    out["strike"] = _png(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.6), gridspec_kw={"width_ratios": [2, 1]})
    sc = [(tt, s["pose_score"]) for tt, s in zip(t, stances, strict=True) if s.get("pose_score") is not None]
    if sc:
        a1.plot(*zip(*sc, strict=True), ".", ms=3)
    a1.set_ylim(0, 100)
    a1.set_xlabel("minutes")
    a1.set_title("Pose score")
    rules: dict[str, list[float]] = {}
    for s in stances:
        for rule, v in (s.get("pose_score_breakdown") or {}).items():
            rules.setdefault(rule, []).append(v)
    names = sorted(rules)
    a2.barh([n.split("_", 1)[0] for n in names], [statistics.fmean(rules[n]) for n in names])
    a2.set_xlim(0, 1)
    a2.set_title("Rules (0-1)")
    out["score"] = _png(fig)
    return out


def build_report(db: Database, session: str, path: str | Path) -> dict[str, int]:
    records = db.records(session)
    if not records:
        raise ValueError(f"session {session!r} has no records in {db.url}")
    info = next((s for s in db.sessions() if s["session"] == session), {})
    names = {a["athlete"]: a for a in db.athletes(session)}
    t0 = min(r["ic_ns"] for r in records)
    by_athlete: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_athlete.setdefault(r["athlete"], []).append(r)
    rows, sections, images = [], [], 0
    for athlete in sorted(by_athlete):
        recs = by_athlete[athlete]
        stances = [r for r in recs if r["type"] == "stance"]
        landings = [r for r in recs if r["type"] == "landing"]
        forced = sum(1 for lnd in landings if lnd.get("forced_landing"))
        zones = Counter(s.get("strike_zone") for s in stances if s.get("strike_zone"))
        name = names.get(athlete, {}).get("name") or ""
        cad = [s["cadence_spm"] for s in stances if s.get("cadence_spm")]
        rows.append(
            f"<tr><td>{html.escape(athlete)}</td><td>{html.escape(name)}</td><td>{len(stances)}</td>"
            f"<td>{_fmt(_mean([s.get('support_time_s') for s in stances if s['foot'] == 'left']))}</td>"
            f"<td>{_fmt(_mean([s.get('support_time_s') for s in stances if s['foot'] == 'right']))}</td>"
            f"<td>{_fmt(statistics.median(cad) if cad else None, 0)}</td>"
            f"<td>{forced} ({_fmt(100 * forced / len(landings) if landings else None, 0)} %)</td>"
            f"<td>{html.escape(zones.most_common(1)[0][0]) if zones else '-'}</td>"
            f"<td>{_fmt(_mean([s.get('pose_score') for s in stances]), 0)}</td></tr>")
        plots = athlete_plots(stances, landings, t0) if stances else {}
        images += len(plots)
        figs = "".join(f'<img alt="{athlete} {kind}" data-plot="{kind}" src="{uri}">' for kind, uri in plots.items())
        sections.append(f'<section id="{html.escape(athlete)}"><h2>{html.escape(athlete)} '
                        f'{html.escape(name)}</h2>{figs}</section>')
    title = html.escape(f"{info.get('name') or session} ({session})")
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>poserun report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2) {{ text-align: left; }}
section img {{ display: inline-block; margin: 0.3rem; vertical-align: top; }}
</style></head><body>
<h1>Session report: {title}</h1>
<p>{len(by_athlete)} athletes, {len(records)} records. Pose Method metrics from poserun; see the
metric definitions in poserun's docs/metrics.md.</p>
<table id="team"><thead><tr><th>athlete</th><th>name</th><th>stances</th><th>support L (s)</th>
<th>support R (s)</th><th>cadence (spm)</th><th>forced landings</th><th>strike zone</th><th>pose score</th>
</tr></thead><tbody>{"".join(rows)}</tbody></table>
{"".join(sections)}
</body></html>
"""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(doc, encoding="utf-8")
    return {"athletes": len(by_athlete), "images": images, "records": len(records)}
