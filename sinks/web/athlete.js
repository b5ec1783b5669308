"use strict";
// The board's athlete view: drawn from the board's `detail` messages, whose `last` is built by
// sinks/athlete_view.py (athlete_detail) and whose `history` points by its history_point.
//
// API: window.poserunAthleteView = {show(detailMsg), clear()}.
//   show(msg): a `detail` message ({type: "detail", athlete, history: [points], last, reset?});
//     with `reset` the history starts again, else its points are added (the last 240 kept).
//   clear(): forget the athlete (the view is closed or another athlete is watched).
// The board's page: <script src="athlete.js"></script>, and in its message handler
//   if (msg.type === "detail") { if (msg.athlete === watched) poserunAthleteView.show(msg); return; }
// and poserunAthleteView.clear() when it watches another athlete or closes the view.
// DOM: it needs only <section id="athlete"> (the board shows, hides and titles it); it makes its own
// <div id="athlete-view"> inside it, with its own styles (scoped to #athlete-view). Colours come from
// the page's CSS custom properties (--text, --muted, --tile, --bg, --good, --warn, --bad, and
// --left, --right when the page defines them), so a light theme needs nothing here. Canvases take
// the width of their box (and the screen's pixel ratio) and are drawn again when it changes.
(() => {
  const MAX_POINTS = 240, CHART_POINTS = 120;
  const REGIONS = ["heel", "midfoot", "ball", "toes"];
  const state = {history: [], last: null, athlete: null, root: null};

  const css = `
  #athlete-view { display: grid; gap: 0.8rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 17rem), 1fr));
                  min-width: 0; max-width: 100%; }
  #athlete-view section { min-width: 0; }
  #athlete-view h3 { font-size: 0.85rem; margin: 0 0 0.35rem; color: var(--muted); font-weight: 600; }
  #athlete-view h3 small { font-weight: 400; }
  #athlete-view .av-wide { grid-column: 1 / -1; }
  #athlete-view dl { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 0.1rem 0.6rem; margin: 0;
                     font-size: 0.85rem; }
  #athlete-view dt { color: var(--muted); overflow-wrap: anywhere; }
  #athlete-view dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  #athlete-view table { width: 100%; border-collapse: collapse; font-size: 0.82rem; font-variant-numeric: tabular-nums; }
  #athlete-view th, #athlete-view td { padding: 0.15rem 0.3rem; text-align: right; border-bottom: 1px solid var(--muted, #888); }
  #athlete-view th { color: var(--muted); font-weight: 500; }
  #athlete-view td { white-space: nowrap; }
  #athlete-view th:first-child, #athlete-view td:first-child { text-align: left; overflow-wrap: anywhere; white-space: normal; }
  #athlete-view canvas { display: block; width: 100%; border-radius: 6px; }
  #athlete-view .av-charts { display: grid; gap: 0.6rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 20rem), 1fr)); }
  #athlete-view .av-rule { display: grid; grid-template-columns: minmax(0, 1fr) minmax(4rem, 30%) 3.2rem; gap: 0.4rem;
                           align-items: center; font-size: 0.82rem; padding: 0.1rem 0; }
  #athlete-view .av-rule .av-name { overflow-wrap: anywhere; }
  #athlete-view .av-bar { height: 0.7rem; border-radius: 3px; background: var(--bg); border: 1px solid var(--muted);
                          overflow: hidden; }
  #athlete-view .av-bar span { display: block; height: 100%; }
  #athlete-view .av-val { text-align: right; font-variant-numeric: tabular-nums; }
  #athlete-view .av-none { color: var(--muted); font-size: 0.82rem; }
  #athlete-view .av-note { color: var(--muted); font-size: 0.75rem; margin: 0.3rem 0 0; }
  `;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }

  // ------------------------------------------------------------------ DOM (made once)
  function root() {
    if (state.root && state.root.isConnected) return state.root;
    const section = document.getElementById("athlete");
    if (!section) return null;
    if (!document.getElementById("athlete-view-style")) {
      document.head.append(el("style", {id: "athlete-view-style", text: css}));
    }
    const r = el("div", {id: "athlete-view"});
    r.innerHTML = `
      <section class="av-last" aria-labelledby="av-last-h"><h3 id="av-last-h">last step <small class="av-foot"></small></h3>
        <dl class="av-metrics"></dl></section>
      <section class="av-rolling" aria-labelledby="av-rolling-h"><h3 id="av-rolling-h">last <span class="av-n">20</span> steps
        <small>(medians)</small></h3><dl class="av-roll"></dl>
        <h3 style="margin-top:0.6rem">left / right <small>(median per foot; L vs R = 100 &times; (L &minus; R) / mean)</small></h3>
        <table class="av-lr"><thead><tr><th>metric</th><th>left</th><th>right</th><th>L vs R</th></tr></thead><tbody></tbody></table></section>
      <section class="av-rules-box" aria-labelledby="av-rules-h"><h3 id="av-rules-h">pose score by rule <small>(last step; 100 % = good)</small></h3>
        <div class="av-rules"></div></section>
      <section class="av-pressure-box"><h3>pressure map, last step <small>(peak per cell, body weights)</small></h3>
        <canvas class="av-pressure" height="260" role="img" aria-label="pressure map"></canvas></section>
      <section class="av-figure-box"><h3>side view at landing <small>(last step)</small></h3>
        <canvas class="av-figure" height="260" role="img" aria-label="stick figure at initial contact"></canvas>
        <p class="av-note av-figure-note"></p></section>
      <section class="av-wide av-charts-box"><h3>over time <small>(dots: blue left, orange right; shaded: target)</small></h3>
        <div class="av-charts">
          <canvas class="av-chart" data-metric="cadence" height="190" role="img" aria-label="cadence over time"></canvas>
          <canvas class="av-chart" data-metric="support" height="190" role="img" aria-label="support time over time"></canvas>
        </div></section>`;
    section.append(r);
    state.root = r;
    if (window.MutationObserver) {  // a theme is a class or attribute on <html> or <body>: draw in its colours
      const again = new MutationObserver(() => { if (state.last || state.history.length) draw(); });
      for (const target of [document.documentElement, document.body]) {
        again.observe(target, {attributes: true, attributeFilter: ["class", "data-theme", "style"]});
      }
    }
    if (window.ResizeObserver) {
      let last = 0;
      new ResizeObserver(() => { const w = r.clientWidth; if (w !== last) { last = w; drawCanvases(); } }).observe(r);
    }
    return r;
  }

  // ------------------------------------------------------------------ colours and numbers
  function colours() {
    const s = getComputedStyle(state.root || document.documentElement);
    const v = (name, fallback) => (s.getPropertyValue(name) || "").trim() || fallback;
    return {text: v("--text", "#e6e9ec"), muted: v("--muted", "#8a96a3"), bg: v("--bg", "#0f1419"),
            tile: v("--tile", "#1b222b"), good: v("--good", "#3fb950"), warn: v("--warn", "#d29922"),
            bad: v("--bad", "#f85149"), left: v("--left", "#3b82f6"), right: v("--right", "#f0883e"),
            font: s.fontFamily || "system-ui, sans-serif"};
  }
  const num = v => typeof v === "number" && Number.isFinite(v);
  const fmt = (v, d) => num(v) ? v.toFixed(d) : "-";
  const withUnit = (f) => typeof f.value === "string" ? f.value
    : `${fmt(f.value, f.decimals)}${f.unit ? (f.unit === "\u00b0" || f.unit === "%" ? "" : " ") + f.unit : ""}`;

  // a perceptual sequential scale (viridis), readable on light and dark pages
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function heat(k) {
    k = Math.max(0, Math.min(1, k)) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(k), VIRIDIS.length - 2), f = k - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return `rgb(${a.map((x, j) => Math.round(x + f * (b[j] - x))).join(",")})`;
  }

  // A canvas sized to its box: its drawing buffer at the screen's pixel ratio, drawn in CSS pixels.
  function canvas2d(c) {
    const ratio = window.devicePixelRatio || 1;
    if (!c._h) c._h = Number(c.getAttribute("height")) || 200;  // the CSS height, from the markup
    const w = Math.max(1, c.clientWidth || c.parentElement.clientWidth || 300), h = c._h;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio); c.height = Math.round(h * ratio);
    }
    c.style.height = h + "px";
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    return {g, w, h};
  }

  // ------------------------------------------------------------------ text parts
  function drawLast(r) {
    const last = state.last || {};
    r.querySelector(".av-foot").textContent = last.foot ? `(${last.foot} foot)` : "";
    const dl = r.querySelector(".av-metrics");
    dl.replaceChildren();
    for (const f of last.last_step || []) {
      const dt = el("dt", {text: f.label}), dd = el("dd", {text: withUnit(f)});
      dt.dataset.key = f.key;
      dl.append(dt, dd);
    }
    if (!dl.children.length) dl.append(el("dt", {text: "no stance yet"}), el("dd"));
  }

  function drawRolling(r) {
    const last = state.last || {}, roll = last.rolling || {figures: [], steps: 0};
    r.querySelector(".av-n").textContent = String(roll.steps || 0);
    const dl = r.querySelector(".av-roll");
    dl.replaceChildren();
    const tg = last.targets || {};
    const target = {cadence_spm: Array.isArray(tg.cadence_spm) ? `${tg.cadence_spm[0]}-${tg.cadence_spm[1]}` : null,
                    support_time_s: num(tg.support_time_s) ? `\u2264 ${tg.support_time_s} s` : null,
                    forced_share: num(tg.forced_share) ? `\u2264 ${Math.round(100 * tg.forced_share)} %` : null};
    for (const f of roll.figures || []) {
      const dt = el("dt", {text: f.label});
      if (target[f.key]) dt.append(" ", el("small", {class: "av-target", text: `(target ${target[f.key]})`}));
      const dd = el("dd", {text: withUnit(f)});
      dt.dataset.key = dd.dataset.key = f.key;
      dl.append(dt, dd);
    }
    const body = r.querySelector(".av-lr tbody");
    body.replaceChildren();
    for (const m of last.symmetry || []) {
      const unit = m.unit && m.unit !== "\u00b0" && m.unit !== "%" ? " " + m.unit : m.unit || "";
      const pct = num(m.pct) ? `${m.pct > 0 ? "+" : ""}${m.pct.toFixed(1)} %` : "-";
      const tr = el("tr", {}, el("td", {text: m.label}), el("td", {text: num(m.left) ? fmt(m.left, m.decimals) + unit : "-"}),
                    el("td", {text: num(m.right) ? fmt(m.right, m.decimals) + unit : "-"}), el("td", {text: pct}));
      tr.dataset.key = m.key;
      body.append(tr);
    }
    if (!body.children.length) body.append(el("tr", {}, el("td", {text: "no steps yet", colspan: "4"})));
  }

  function drawRules(r) {
    const box = r.querySelector(".av-rules"), col = colours();
    box.replaceChildren();
    for (const rule of (state.last && state.last.rules) || []) {
      const v = rule.value, bar = el("span");
      if (num(v)) {
        bar.style.width = `${Math.round(100 * v)}%`;
        bar.style.background = v >= 0.75 ? col.good : v >= 0.4 ? col.warn : col.bad;
      }
      const row = el("div", {class: "av-rule", title: `${rule.id}: ${rule.name} (${rule.metric})`},
        el("span", {class: "av-name", text: `${rule.id} ${rule.name}`}), el("span", {class: "av-bar"}, bar),
        el("span", {class: "av-val", text: num(v) ? `${Math.round(100 * v)} %` : "n/a"}));
      row.dataset.rule = rule.rule;
      if (!num(v)) row.title += ": not measured on this step";
      box.append(row);
    }
    if (!box.children.length) box.append(el("p", {class: "av-none", text: "no score yet"}));
  }

  // ------------------------------------------------------------------ pressure map
  function drawPressure(c) {
    const {g, w, h} = canvas2d(c), col = colours();
    const m = state.last && state.last.pressure;
    g.font = `11px ${col.font}`;
    const legendW = 46, footW = Math.min(w - legendW - 70, h * 0.42), fx = 58 + footW / 2, top = 14, bottom = h - 14;
    const len = bottom - top;
    // the insole's outline: toes at the top, heel at the bottom
    g.strokeStyle = col.muted; g.lineWidth = 1.5;
    g.beginPath(); g.ellipse(fx, top + len / 2, footW / 2, len / 2, 0, 0, 2 * Math.PI); g.stroke();
    c.dataset.cells = m ? String(m.cells.length) : "0";
    if (!m) { g.fillStyle = col.muted; g.fillText("no insole on this step", 8, h / 2); c.dataset.labels = ""; return; }
    const y = a => bottom - a * len, x = a => fx + a * footW * 0.9;
    const top_bw = Math.max(m.max_bw, 0.05);
    for (const cell of m.cells) {
      g.fillStyle = heat(cell.peak_bw / top_bw);
      g.beginPath(); g.arc(x(cell.across), y(cell.along), Math.max(5, footW / 9), 0, 2 * Math.PI); g.fill();
    }
    // region labels at each region's cells (from the device's region map), else at the foot's parts
    const labels = [];
    g.fillStyle = col.text; g.textAlign = "right"; g.textBaseline = "middle";
    for (const [i, r] of REGIONS.entries()) {
      const cells = m.cells.filter(cl => cl.region === r);
      const along = cells.length ? cells.reduce((s, cl) => s + cl.along, 0) / cells.length
        : m.labelled ? null : [0.12, 0.42, 0.7, 0.9][i];
      if (along === null) continue;
      const peak = m.regions && num(m.regions[r]) ? ` ${m.regions[r].toFixed(2)}` : "";
      g.fillText(r, fx - footW / 2 - 6, y(along));
      if (peak) { g.fillStyle = col.muted; g.textAlign = "left"; g.fillText(peak.trim(), fx + footW / 2 + 4, y(along));
        g.fillStyle = col.text; g.textAlign = "right"; }
      labels.push(r);
    }
    c.dataset.labels = labels.join(",");
    // the legend: the colour scale from 0 to the largest cell's peak
    const lx = w - legendW + 8, lh = len - 20;
    for (let i = 0; i < lh; i++) { g.fillStyle = heat(1 - i / lh); g.fillRect(lx, top + 10 + i, 10, 1.2); }
    g.strokeStyle = col.muted; g.strokeRect(lx, top + 10, 10, lh);
    g.fillStyle = col.muted; g.textAlign = "left";
    g.fillText(top_bw.toFixed(2), lx + 13, top + 10); g.fillText("0", lx + 13, top + 10 + lh);
    g.textAlign = "center"; g.fillText("BW", lx + 5, top + 2);
    g.textAlign = "left";
  }

  // ------------------------------------------------------------------ stick figure
  function drawFigure(c, note) {
    const {g, w, h} = canvas2d(c), col = colours();
    const f = state.last && state.last.figure;
    g.font = `11px ${col.font}`;
    c.dataset.joints = f ? String(Object.keys(f.joints).length) : "0";
    if (!f) { g.fillStyle = col.muted; g.fillText("no camera on this step", 8, h / 2); note.textContent = ""; return; }
    const pts = Object.values(f.joints).concat([[0, 0]]);
    const ys = pts.map(p => p[1]), xs = pts.map(p => p[0]);
    const ground = num(f.ground_y) ? f.ground_y : Math.min(...ys);
    const topY = Math.max(...ys) + 0.35, span = Math.max(topY - ground, 0.5);  // room for the head
    const s = Math.min((h - 30) / span, (w - 20) / Math.max(Math.max(...xs) - Math.min(...xs) + 0.6, 0.8));
    const ox = w / 2 - s * (Math.max(...xs) + Math.min(...xs)) / 2, gy = h - 18;
    const at = p => [ox + p[0] * s, gy - (p[1] - ground) * s];
    const line = (a, b, colour, width, dash) => { if (!a || !b) return; const A = at(a), B = at(b);
      g.setLineDash(dash || []); g.strokeStyle = colour; g.lineWidth = width; g.lineCap = "round";
      g.beginPath(); g.moveTo(...A); g.lineTo(...B); g.stroke(); g.setLineDash([]); };
    // ground
    g.strokeStyle = col.muted; g.lineWidth = 2; g.beginPath(); g.moveTo(4, gy); g.lineTo(w - 4, gy); g.stroke();
    g.fillStyle = col.muted; g.textAlign = "left"; g.fillText("ground", 6, gy + 13);
    const J = f.joints;
    for (const side of ["left", "right"]) {
      const colour = side === "left" ? col.left : col.right;
      line(J[side + "_hip"], J[side + "_knee"], colour, 4); line(J[side + "_knee"], J[side + "_ankle"], colour, 4);
    }
    // trunk (hips' midpoint to shoulders' midpoint) and head (drawn on the trunk's line above the shoulders)
    if (f.shoulder) {
      line(f.hip, f.shoulder, col.text, 5);
      const dx = f.shoulder[0] - f.hip[0], dy = f.shoulder[1] - f.hip[1], n = Math.hypot(dx, dy) || 1;
      const r = 0.11, head = [f.shoulder[0] + dx / n * (r + 0.08), f.shoulder[1] + dy / n * (r + 0.08)];
      const H = at(head);
      g.strokeStyle = col.text; g.lineWidth = 3; g.beginPath(); g.arc(H[0], H[1], r * s, 0, 2 * Math.PI); g.stroke();
    }
    // the pose line: support point, hip, shoulder
    if (f.support) {
      line(f.support, f.hip, col.good, 2, [6, 4]);
      if (f.shoulder) line(f.hip, f.shoulder, col.good, 2, [6, 4]);
      const S = at(f.support);
      g.fillStyle = col.good; g.beginPath(); g.arc(S[0], S[1], 4, 0, 2 * Math.PI); g.fill();
      g.fillStyle = col.muted; g.fillText("support", S[0] + 6, S[1] - 6);
    }
    const Hp = at(f.hip); g.fillStyle = col.text; g.beginPath(); g.arc(Hp[0], Hp[1], 4, 0, 2 * Math.PI); g.fill();
    g.fillStyle = col.muted; g.fillText("hip", Hp[0] + 7, Hp[1] + 4);
    const said = [];
    if (num(f.fall_angle_deg)) said.push(`fall angle ${f.fall_angle_deg.toFixed(1)}\u00b0`);
    if (num(f.waist_bend_deg)) said.push(`waist bend ${f.waist_bend_deg.toFixed(1)}\u00b0`);
    note.textContent = `dashed: pose line (support ${f.foot || ""} ankle, hip, shoulder); blue left leg, ` +
      `orange right; head drawn, not measured.` + (said.length ? " " + said.join(", ") + "." : "");
  }

  // ------------------------------------------------------------------ charts
  function niceStep(range, count) {
    const raw = range / Math.max(count, 1), p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  function ago(s) {
    if (s < 0.5) return "last";
    return s >= 120 ? `${(s / 60).toFixed(s % 60 ? 1 : 0)} min` : `${Math.round(s)} s`;
  }

  function drawChart(c) {
    const metric = c.dataset.metric, {g, w, h} = canvas2d(c), col = colours();
    const targets = (state.last && state.last.targets) || {};
    const pts = state.history.filter(p => num(p[metric]) && num(p.t)).slice(-CHART_POINTS);
    c.dataset.points = String(pts.length);
    g.font = `11px ${col.font}`;
    const title = metric === "cadence" ? "cadence (steps/min)" : "support time (s)";
    g.fillStyle = col.text; g.textAlign = "left"; g.textBaseline = "alphabetic"; g.fillText(title, 6, 13);
    const L = 44, R = 10, T = 22, B = 34, pw = w - L - R, ph = h - T - B;
    const band = metric === "cadence" ? (Array.isArray(targets.cadence_spm) ? targets.cadence_spm : null)
      : num(targets.support_time_s) ? [0, targets.support_time_s] : null;
    const values = pts.map(p => p[metric]);
    let lo = values.length ? Math.min(...values) : metric === "cadence" ? 160 : 0.15;
    let hi = values.length ? Math.max(...values) : metric === "cadence" ? 200 : 0.3;
    if (band) { lo = Math.min(lo, metric === "cadence" ? band[0] : band[1]); hi = Math.max(hi, band[1]); }
    if (metric === "support") lo = Math.min(lo, band ? band[1] * 0.7 : lo);
    const pad = (hi - lo) * 0.1 || (metric === "cadence" ? 5 : 0.02);
    lo -= pad; hi += pad;
    const yOf = v => T + ph - (v - lo) / (hi - lo) * ph;
    // time: seconds before the last step (the athlete's own clock: no clock between machines needed)
    const tEnd = pts.length ? pts[pts.length - 1].t : 0;
    const span = pts.length > 1 ? (tEnd - pts[0].t) / 1e9 : 10;
    const xOf = t => L + pw - (tEnd - t) / 1e9 / Math.max(span, 1) * pw;
    // the target band
    if (band) {
      const y0 = yOf(Math.min(Math.max(band[1], lo), hi)), y1 = yOf(Math.max(Math.min(band[0], hi), lo));
      g.globalAlpha = 0.18; g.fillStyle = col.good; g.fillRect(L, y0, pw, y1 - y0); g.globalAlpha = 1;
      g.fillStyle = col.good; g.textAlign = "right";
      g.fillText(metric === "cadence" ? `target ${band[0]}-${band[1]}` : `target \u2264 ${band[1]} s`, L + pw - 2, y0 + 12);
    }
    // axes: values on the left, time below
    g.strokeStyle = col.muted; g.lineWidth = 1;
    g.beginPath(); g.moveTo(L, T); g.lineTo(L, T + ph); g.lineTo(L + pw, T + ph); g.stroke();
    const vs = niceStep(hi - lo, 4), dec = vs >= 1 ? 0 : vs >= 0.1 ? 1 : vs >= 0.01 ? 2 : 3;
    g.fillStyle = col.muted; g.textAlign = "right"; g.textBaseline = "middle";
    for (let v = Math.ceil(lo / vs) * vs; v <= hi + 1e-9; v += vs) {
      const yy = yOf(v);
      g.fillText(v.toFixed(dec), L - 4, yy);
      g.globalAlpha = 0.25; g.beginPath(); g.moveTo(L, yy); g.lineTo(L + pw, yy); g.stroke(); g.globalAlpha = 1;
    }
    g.textAlign = "center"; g.textBaseline = "top";
    const ts = TIME_STEPS.find(s => span / s <= Math.max(2, Math.floor(pw / 70))) || 3600;
    const ticks = [];
    for (let s = 0; s <= span + 1e-9; s += ts) {
      const xx = L + pw - s / Math.max(span, 1) * pw;
      g.beginPath(); g.moveTo(xx, T + ph); g.lineTo(xx, T + ph + 4); g.stroke();
      const text = s === 0 ? "last step" : ago(s);
      g.fillText(text, Math.max(L + 12, Math.min(xx, L + pw - 22)), T + ph + 6);
      ticks.push(text);
    }
    g.fillText("time before the last step", L + pw / 2, T + ph + 20);
    c.dataset.ticks = ticks.join("|");
    if (!pts.length) { g.fillStyle = col.muted; g.fillText("no steps yet", L + pw / 2, T + ph / 2); return; }
    if (metric === "cadence") {  // a line: cadence is already a rolling figure
      g.strokeStyle = col.text; g.lineWidth = 1.5; g.beginPath();
      pts.forEach((p, i) => { const X = xOf(p.t), Y = yOf(p[metric]); if (i) g.lineTo(X, Y); else g.moveTo(X, Y); });
      g.stroke();
    } else {
      for (const p of pts) {
        g.fillStyle = p.foot === "left" ? col.left : col.right;
        g.beginPath(); g.arc(xOf(p.t), yOf(p[metric]), 2.8, 0, 2 * Math.PI); g.fill();
      }
    }
  }

  function drawCanvases() {
    const r = state.root;
    if (!r || !r.isConnected || r.offsetParent === null && !r.getClientRects().length) return;
    drawPressure(r.querySelector(".av-pressure"));
    drawFigure(r.querySelector(".av-figure"), r.querySelector(".av-figure-note"));
    for (const c of r.querySelectorAll(".av-chart")) drawChart(c);
  }

  function draw() {
    const r = root();
    if (!r) return;
    drawLast(r); drawRolling(r); drawRules(r); drawCanvases();
    api.draws += 1;
  }

  const api = {
    draws: 0, bad: 0,
    show(msg) {
      if (!msg || typeof msg !== "object" || typeof msg.athlete !== "string" ||
          (msg.history !== undefined && !Array.isArray(msg.history))) { api.bad += 1; return; }
      if (msg.reset || msg.athlete !== state.athlete) { state.history = []; state.last = null; }
      state.athlete = msg.athlete;
      const points = (msg.history || []).filter(p => p && typeof p === "object");
      state.history = state.history.concat(points).slice(-MAX_POINTS);
      if (msg.last && typeof msg.last === "object") state.last = msg.last;
      draw();
    },
    clear() {
      state.history = []; state.last = null; state.athlete = null;
      if (state.root && state.root.isConnected) draw();
    },
    athlete() { return state.athlete; },
    points() { return state.history.length; },
  };
  window.poserunAthleteView = api;
})();
