"""``poserun report SESSION``: a self-contained HTML post-session report, one page per athlete.

The head holds the session's metadata (id, name, date and time, duration, athletes, sources) and a
team table. Per athlete: figures against its targets (the latest coach ``targets`` record, else the
athlete's stored settings, else :class:`poserun.settings.Targets`' documented defaults) and its own
baseline (the session median; with reps, the first rep), the pose rules R1..R10 by name in rule
order, the reps (:mod:`poserun.processors.reps`), the coach's tags with their time, and a left/right
chart that diverges around 0: 100 * (L - R) / mean per metric with a +-5 % band. Plain HTML and
CSS (no script, no plot library, nothing fetched): it reads on a 390 px phone and prints one
athlete per page. :func:`render_report` is what the board serves at /report.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from poserun.processors.reps import Rep, command_ns, segment_reps
from poserun.processors.score import RULES
from poserun.settings import Targets
from poserun.sinks.store import Database

LR_METRICS = (("support_time_s", "support time"), ("flight_time_s", "flight time"),
              ("loading_rate_bw_per_s", "loading rate"), ("overstride_m", "overstride"),
              ("knee_flexion_ic_deg", "knee at landing"), ("release_ratio", "release ratio"))
LR_BAND_PCT = 5.0  # within +-5 % a L/R difference is step-to-step spread (docs/metrics.md, symmetry)
LR_SCALE_PCT = 25.0  # the chart's half width; larger differences are drawn at its edge
_ESC = html.escape
REP_SOURCES = {"coach": "started and stopped on the board",
               "auto": "automatic: runs of steps; a pause of 3 step periods or a walking cadence is rest"}


def rule_number(rule: str) -> int:
    m = re.match(r"R(\d+)_", rule)
    return int(m.group(1)) if m else 10**6


def rule_name(rule: str) -> str:
    """``R4_no_forced_landing`` -> ``no forced landing``."""
    return rule.split("_", 1)[1].replace("_", " ") if "_" in rule else rule


def ordered_rules(rules: list[str] | None = None) -> list[str]:
    """The rules by their number (R1, R2, ..., R10), never as strings."""
    return sorted(RULES if rules is None else rules, key=lambda r: (rule_number(r), r))


def _nums(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _median(values: list[Any]) -> float | None:
    nums = _nums(values)
    return float(statistics.median(nums)) if nums else None


def _fmt(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def _when(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(ns: int, t0: int) -> str:
    s = max(0, int((ns - t0) / 1e9))
    return f"{s // 60}:{s % 60:02d}"


def lr_asymmetry(stances: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(label, 100 * (L - R) / mean of L and R) per metric both feet have."""
    out = []
    for key, label in LR_METRICS:
        lv = _median([s.get(key) for s in stances if s.get("foot") == "left"])
        rv = _median([s.get(key) for s in stances if s.get("foot") == "right"])
        if lv is not None and rv is not None and abs(lv + rv) > 1e-12:
            out.append((label, 100.0 * (lv - rv) / ((lv + rv) / 2)))
    return out


def athlete_targets(coach: list[dict[str, Any]], stored: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """(targets dict, where they came from): the latest coach targets, the stored settings, the defaults."""
    candidates = [(c.get("targets"), "set on the board") for c in reversed(coach) if c.get("action") == "targets"]
    candidates.append(((stored or {}).get("targets"), "from the athlete's settings"))
    for value, origin in candidates:
        if isinstance(value, dict):
            try:
                return Targets.model_validate(value).as_dict(), origin
            except ValueError:  # a stored record the settings no longer accept: the next source
                continue
    return Targets().as_dict(), "defaults (docs/configuration.md)"


def _lr_chart(asym: list[tuple[str, float]]) -> str:
    if not asym:
        return '<p class="muted">no left/right pairs</p>'
    band = 50.0 * LR_BAND_PCT / LR_SCALE_PCT
    rows = []
    for label, pct in asym:
        w = min(50.0, 50.0 * abs(pct) / LR_SCALE_PCT)
        side = "l" if pct > 0 else "r"
        left = 50.0 - w if pct > 0 else 50.0
        out = "out" if abs(pct) > LR_BAND_PCT else "in"
        rows.append(f'<div class="lr-row" data-metric="{_ESC(label)}" data-pct="{pct:.1f}"><span>{_ESC(label)}</span>'
                    f'<div class="lr-track"><i class="band" style="left:{50 - band:.1f}%;width:{2 * band:.1f}%"></i>'
                    f'<i class="bar {side} {out}" style="left:{left:.1f}%;width:{w:.1f}%"></i><i class="zero"></i>'
                    f'</div><b>{pct:+.1f} %{" !" if out == "out" else ""}</b></div>')
    return ('<div class="lr"><div class="lr-head"><span></span><span>R longer/larger &larr; 0 &rarr; L</span>'
            f'<span></span></div>{"".join(rows)}<p class="muted">100 &times; (L &minus; R) / mean; the shaded band '
            f'is &plusmn;{LR_BAND_PCT:g} %, bars end at &plusmn;{LR_SCALE_PCT:g} %; ! outside the band</p></div>')


def cadence_chart(stances: list[dict[str, Any]], band: list[float] | None, t0: int) -> str:
    """Cadence over the session (medians of 10 steps) as an inline SVG, the target band shaded."""
    pts = [(int(s["emitted_ns"]), float(s["cadence_spm"])) for s in stances
           if isinstance(s.get("emitted_ns"), int) and _nums([s.get("cadence_spm")])]
    bins = [pts[i:i + 10] for i in range(0, len(pts), 10)]
    series = [(statistics.median(t for t, _ in b), statistics.median(c for _, c in b)) for b in bins]
    if len(series) < 2:
        return '<p class="muted">too few steps for a cadence chart</p>'
    ta, tb = series[0][0], series[-1][0]
    values = [c for _, c in series] + (list(band) if band else [])
    lo, hi = min(values) - 5, max(values) + 5
    w, h = 300.0, 36.0

    def x(t: float) -> float:
        return w * (t - ta) / max(1.0, tb - ta)

    def y(c: float) -> float:
        return h - h * (c - lo) / (hi - lo)

    shade = (f'<rect x="0" y="{y(band[1]):.1f}" width="{w:g}" height="{y(band[0]) - y(band[1]):.1f}" '
             f'fill="#cfe3cf"/>' if band else "")
    line = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in series)
    return (f'<svg class="chart" viewBox="0 -8 {w:g} {h + 20:g}" role="img" aria-label="cadence over the session">'
            f'{shade}<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>'
            f'<text x="0" y="{h + 11:g}">{_clock(int(ta), t0)}</text><text x="{w:g}" y="{h + 11:g}" '
            f'text-anchor="end">{_clock(int(tb), t0)}</text><text x="2" y="-1">{hi:.0f} spm</text>'
            f'<text x="2" y="{h - 2:g}">{lo:.0f}</text></svg>')


def _rules_table(stances: list[dict[str, Any]]) -> str:
    per: dict[str, list[float]] = {}
    for s in stances:
        for rule, v in (s.get("pose_score_breakdown") or {}).items():
            if isinstance(v, int | float):
                per.setdefault(rule, []).append(float(v))
    rows = []
    for rule in ordered_rules(list(set(RULES) | set(per))):
        v = _median(per.get(rule, []))
        pct = 0.0 if v is None else 100 * v
        rows.append(f'<tr data-rule="{_ESC(rule)}"><td>R{rule_number(rule)}</td><td>{_ESC(rule_name(rule))}</td>'
                    f'<td class="meter"><i style="width:{pct:.0f}%"></i></td><td>{_fmt(v, 2)}</td></tr>')
    return ('<table class="rules"><thead><tr><th>rule</th><th>name</th><th>median 0-1</th><th></th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _rep_rows(reps: list[Rep], t0: int) -> str:
    if not reps:
        return '<p class="muted">no reps (no run of stances, no coach rep)</p>'
    rows = "".join(
        f'<tr class="rep"><td>{r["rep"]}</td><td>{_clock(r["start_ns"], t0)}</td>'
        f'<td>{(r["end_ns"] - r["start_ns"]) / 1e9:.0f} s</td><td>{r["stances"]}</td>'
        f'<td>{_fmt(r["cadence_spm"], 0)}</td><td>{_fmt(r["support_time_s"], 3)}</td>'
        f'<td>{_fmt(None if r["forced_share"] is None else 100 * r["forced_share"], 0, " %")}</td>'
        f'<td>{_fmt(r["pose_score"], 0)}</td></tr>' for r in reps)
    return (f'<table class="reps" data-source="{reps[0]["source"]}"><thead><tr><th>rep</th><th>at</th><th>for</th>'
            '<th>steps</th><th>cad.</th><th>support s</th><th>forced</th><th>score</th></tr></thead>'
            f'<tbody>{rows}</tbody></table><p class="muted">{REP_SOURCES[reps[0]["source"]]}</p>')


def _figures(stances: list[dict[str, Any]], landings: list[dict[str, Any]], reps: list[Rep],
             targets: dict[str, Any]) -> str:
    cad = _median([s.get("cadence_spm") for s in stances])
    sup = _median([s.get("support_time_s") for s in stances])
    judged = [x.get("forced_landing") for x in landings if isinstance(x.get("forced_landing"), bool)]
    forced = sum(judged) / len(judged) if judged else None
    score = _median([s.get("pose_score") for s in stances])
    base = reps[0] if reps else None
    band = targets.get("cadence_spm")

    def verdict(ok: bool | None) -> str:
        return "" if ok is None else ('<em class="ok">on target</em>' if ok else '<em class="off">off target</em>')

    rows = [
        ("cadence", _fmt(cad, 0, " spm"), f"{band[0]:g}-{band[1]:g} spm" if band else "-",
         verdict(None if cad is None or not band else band[0] <= cad <= band[1]),
         _fmt(base["cadence_spm"] if base else None, 0, " spm")),
        ("support time", _fmt(sup, 3, " s"),
         f"&le; {targets['support_time_s']:g} s" if targets.get("support_time_s") else "-",
         verdict(None if sup is None or targets.get("support_time_s") is None else sup <= targets["support_time_s"]),
         _fmt(base["support_time_s"] if base else None, 3, " s")),
        ("forced landings", _fmt(None if forced is None else 100 * forced, 0, " %"),
         f"&le; {100 * targets['forced_share']:g} %" if targets.get("forced_share") is not None else "-",
         verdict(None if forced is None or targets.get("forced_share") is None else forced <= targets["forced_share"]),
         _fmt(None if not base or base["forced_share"] is None else 100 * base["forced_share"], 0, " %")),
        ("pose score", _fmt(score, 0), "-", "", _fmt(base["pose_score"] if base else None, 0)),
    ]
    body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td><td>{d}</td><td>{e}</td></tr>" for a, b, c, d, e in rows)
    return ('<table class="figures"><thead><tr><th></th><th>session</th><th>target</th><th></th>'
            f'<th>rep 1</th></tr></thead><tbody>{body}</tbody></table>')


def _stored_meta(db: Database, session: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    def load(text: Any) -> dict[str, Any]:
        try:
            v = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}

    rows = db.execute("SELECT meta FROM sessions WHERE session_id = ?", (session,))
    athletes = {r[0]: load(r[1]) for r in db.execute(
        "SELECT athlete_id, meta FROM athletes WHERE session_id = ?", (session,))}
    return (load(rows[0][0]) if rows else {}), athletes


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


CSS = """
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:980px;color:#111;background:#fff}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.15rem;margin:.2rem 0 .4rem}h3{font-size:.95rem;margin:.6rem 0 .2rem}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:0 .8rem;margin:.4rem 0}.meta dt{font-weight:600}
.meta dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.85rem;width:100%}th,td{padding:2px 4px;border-bottom:1px solid #ccc;
text-align:right}th:first-child,td:first-child,.rules td:nth-child(2),.figures td:first-child{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.athlete{border-top:3px solid #111;padding-top:.4rem;margin-top:1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.3rem 1.2rem}
.meter{width:35%}.meter i{display:block;height:.7rem;background:#1f5fbf;min-width:1px}
em.ok{font-style:normal;color:#0a6b2b}em.off{font-style:normal;font-weight:700;color:#a00000}
em.ok::before{content:"\\2713 "}em.off::before{content:"\\2717 "}
.muted{color:#444;font-size:.78rem;margin:.2rem 0}
.lr-row,.lr-head{display:grid;grid-template-columns:7.5rem 1fr 4.2rem;gap:.4rem;align-items:center;font-size:.82rem}
.lr-head{font-size:.72rem;color:#444}.lr-head span:nth-child(2){text-align:center}
.lr-track{position:relative;height:1rem;background:#f3f3f3}.lr-track i{position:absolute;top:0;bottom:0}
.lr-track .band{background:#cfe3cf}.lr-track .zero{left:50%;width:2px;margin-left:-1px;background:#111}
.lr-track .bar{top:.15rem;bottom:.15rem}.bar.in{background:#555}.bar.out{background:#c25400}
.lr-row b{text-align:right}
.chart{width:100%;height:auto;display:block}.chart text{font-size:8px;fill:#333}
.tags{margin:0;padding-left:1.1rem;font-size:.85rem}
@media (max-width:480px){body{padding:8px;font-size:14px}.grid{grid-template-columns:minmax(0,1fr)}
.lr-row,.lr-head{grid-template-columns:6rem 1fr 3.6rem}table{font-size:.78rem}td{white-space:nowrap}
em.ok,em.off{font-size:0}em.ok::before,em.off::before{font-size:.85rem}}
@media print{body{max-width:none;padding:0;font-size:11px}.athlete{page-break-after:always;break-after:page;
border-top:none;margin-top:0}.athlete:last-of-type{page-break-after:auto;break-after:auto}
#team,.head .muted{display:none}}
"""


def render_report(db: Database, session: str) -> str:
    """The report of a stored session as one HTML document (raises ValueError for an unknown session)."""
    records = db.records(session, ("landing", "stance", "coach"))
    steps = [r for r in records if r.get("type") in ("stance", "landing")]
    if not steps:
        raise ValueError(f"session {session!r} has no records in {db.url}")
    info = next((s for s in db.sessions() if s["session"] == session), {})
    names = {a["athlete"]: a for a in db.athletes(session)}
    session_meta, athlete_meta = _stored_meta(db, session)
    times = [int(r["emitted_ns"]) for r in records if isinstance(r.get("emitted_ns"), int) and r["emitted_ns"] > 0]
    t0 = min(times) if times else int(info.get("first_ns") or 0)
    t1 = max(times) if times else int(info.get("last_ns") or 0)
    by_athlete: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_athlete.setdefault(str(r.get("athlete")), []).append(r)
    sources: Counter[str] = Counter()
    team_rows, sections = [], []
    for athlete in sorted(by_athlete, key=_natural):
        recs = by_athlete[athlete]
        stances = [r for r in recs if r.get("type") == "stance"]
        landings = [r for r in recs if r.get("type") == "landing"]
        coach = [r for r in recs if r.get("type") == "coach"]
        if not stances and not landings:
            continue
        for s in stances:
            sources.update(s.get("sources") or [])
        reps = segment_reps(stances, coach)
        targets, origin = athlete_targets(coach, athlete_meta.get(athlete))
        name = names.get(athlete, {}).get("name") or ""
        tags = [c for c in coach if c.get("action") == "tag"]
        tag_list = ("".join(f'<li class="tag"><b>{_clock(command_ns(c) or t0, t0)}</b> '
                            f'{_ESC(str(c.get("label", "")))}</li>' for c in tags)
                    or '<li class="muted">no tags</li>')
        forced = sum(1 for x in landings if x.get("forced_landing"))
        team_rows.append(
            f'<tr><td><a href="#athlete-{_ESC(athlete)}">{_ESC(athlete)}</a></td><td class="name">{_ESC(name)}</td>'
            f'<td>{len(stances)}</td><td>{len(reps)}</td>'
            f'<td>{_fmt(_median([s.get("cadence_spm") for s in stances]), 0)}</td>'
            f'<td>{_fmt(_median([s.get("support_time_s") for s in stances]), 3)}</td>'
            f'<td>{forced}/{len(landings)}</td>'
            f'<td>{_fmt(_median([s.get("pose_score") for s in stances]), 0)}</td></tr>')
        zones = Counter(s.get("strike_zone") for s in stances if s.get("strike_zone"))
        lands = ", ".join(f"{z} {100 * n / sum(zones.values()):.0f} %" for z, n in zones.most_common()) or "-"
        sections.append(
            f'<section class="athlete" id="athlete-{_ESC(athlete)}" data-athlete="{_ESC(athlete)}">'
            f'<h2>{_ESC(athlete)} {_ESC(name)}</h2><p class="muted">{len(stances)} steps, lands: {_ESC(lands)}; '
            f'targets {origin}; baseline: the session median and rep 1</p>'
            f'<div class="grid"><div><h3>Figures and targets</h3>{_figures(stances, landings, reps, targets)}'
            f'<h3>Left / right</h3>{_lr_chart(lr_asymmetry(stances))}</div>'
            f'<div><h3>Pose rules</h3>{_rules_table(stances)}'
            '<h3>Cadence <small class="muted">(medians of 10 steps; shaded: the target band)</small></h3>'
            f'{cadence_chart(stances, targets.get("cadence_spm"), t0)}</div></div>'
            f'<h3>Reps</h3><div class="scroll">{_rep_rows(reps, t0)}</div>'
            f'<h3>Coach tags</h3><ul class="tags">{tag_list}</ul></section>')
    title = _ESC(f"{info.get('name') or session}")
    named = any(a.get("name") for a in names.values())
    src = session_meta.get("sources") if isinstance(session_meta.get("sources"), list) else None
    source_text = ", ".join(str(s) for s in src) if src else ", ".join(s for s, _ in sources.most_common()) or "-"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>poserun report: {title} ({_ESC(session)})</title><style>{CSS}{"" if named else "#team .name{display:none}"}
</style></head><body>
<header class="head"><h1>Session report: {title}</h1>
<dl class="meta"><dt>session</dt><dd id="session">{_ESC(session)}</dd><dt>date</dt><dd id="date">{_when(t0)}</dd>
<dt>duration</dt><dd id="duration">{(t1 - t0) / 60e9:.1f} min</dd><dt>athletes</dt><dd>{len(sections)}</dd>
<dt>sources</dt><dd>{_ESC(source_text)}</dd><dt>records</dt><dd>{len(records)}</dd></dl>
<div class="scroll"><table id="team"><thead><tr><th>athlete</th><th class="name">name</th><th>steps</th><th>reps</th>
<th>cad.</th><th>support s</th><th>forced</th><th>score</th></tr></thead>
<tbody>{"".join(team_rows)}</tbody></table></div>
<p class="muted">Medians over the session; metric definitions in poserun's docs/metrics.md.</p></header>
{"".join(sections)}
</body></html>
"""


def build_report(db: Database, session: str, path: str | Path) -> dict[str, int]:
    """Write :func:`render_report` to ``path``."""
    doc = render_report(db, session)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(doc, encoding="utf-8")
    return {"athletes": doc.count('<section class="athlete"'), "reps": doc.count('<tr class="rep">'),
            "bytes": len(doc.encode())}
