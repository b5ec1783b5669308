"""The athlete view (sinks/web/athlete.js) in Debian's Chromium driven by Playwright, at 1366x768,
1024x768 and 390x844: drawn from a ``detail`` message that sinks/athlete_view.py built from the
simulator's records (through the real fusion service), in a page that has only the view's section
and the board's colour variables. Named figures with units, the pressure map's region labels, the
charts' time axis and target band, the rules by name in order, the page's own colours, and no
horizontal overflow on a phone. Waits end on readiness (``PAGE_MS``), nothing is timed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from poserun.sinks.athlete_view import RULE_NAMES, athlete_detail, history_point
from tests.conftest import PAGE_MS, wait_until
from tests.services.sim_feed import feed
from tests.sinks.board_feed import Served, served_board
from tests.sinks.test_dashboard_scale import browser  # noqa: F401  (the module's Chromium)

SCRIPT = Path(__file__).resolve().parents[2] / "sinks" / "web" / "athlete.js"
VIEWPORTS = [(1366, 768), (1024, 768), (390, 844)]
DARK = "--bg: #0f1419; --tile: #1b222b; --text: #e6e9ec; --muted: #8a96a3; --good: #3fb950; --warn: #d29922; " \
       "--bad: #f85149;"
LIGHT = "--bg: #ffffff; --tile: #f3f4f6; --text: #111111; --muted: #4b5563; --good: rgb(0, 110, 40); " \
        "--warn: rgb(150, 90, 0); --bad: rgb(180, 20, 20);"


def page_html(theme: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>:root {{ {theme} }} * {{ box-sizing: border-box; }} body {{ margin: 0; font-family: system-ui, sans-serif;
background: var(--bg); color: var(--text); }} main {{ padding: 0.6rem; }}
#athlete {{ background: var(--tile); border-radius: 10px; padding: 0.8rem; }}</style></head>
<body><main><section id="athlete"><h2>a01</h2></section></main></body></html>"""


@pytest.fixture(scope="module")
def detail() -> dict[str, Any]:
    """A ``detail`` message as the board sends it on ``watch``: one athlete's 30 s of stances."""
    records, _ = feed(athletes=1, seed=5, seconds=30)
    stances = [r for r in records if r["type"] == "stance"]
    history = [history_point(r) for r in stances]
    targets = {"cadence_spm": [172.0, 188.0], "support_time_s": 0.24, "forced_share": 0.1}
    return {"type": "detail", "athlete": "a01", "history": history,
            "last": athlete_detail(stances[-1], history, targets), "reset": True}


@pytest.fixture
def shown(browser: Any, detail: dict[str, Any]) -> Iterator[Any]:  # noqa: F811
    """Opens the view at a viewport and theme with the detail shown; returns (page, errors)."""
    contexts: list[Any] = []

    def show(width: int, height: int, theme: str = DARK) -> tuple[Any, list[str]]:
        contexts.append(browser.new_context(viewport={"width": width, "height": height}))
        page = contexts[-1].new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_content(page_html(theme))
        page.add_script_tag(path=str(SCRIPT))
        page.evaluate("msg => poserunAthleteView.show(msg)", detail)
        page.wait_for_function("poserunAthleteView.draws >= 1", timeout=PAGE_MS)
        return page, errors

    yield show
    for c in contexts:
        c.close()


@pytest.mark.parametrize(("width", "height"), VIEWPORTS)
def test_the_view_names_its_figures_labels_the_map_and_axes_and_orders_the_rules(
        shown: Any, detail: dict[str, Any], width: int, height: int) -> None:
    page, errors = shown(width, height)
    text = page.inner_text("#athlete-view")
    # the last step and the rolling values, apart, named with units; no raw field name anywhere
    last = page.eval_on_selector_all("#athlete-view .av-metrics dt", "els => els.map(e => e.textContent)")
    values = page.eval_on_selector_all("#athlete-view .av-metrics dd", "els => els.map(e => e.textContent)")
    figures = dict(zip(last, values, strict=True))
    assert figures["support time"].endswith(" s") and figures["knee bend at landing"].endswith("\u00b0")
    assert figures["ball of foot load"].endswith("%") and figures["lands on"] in ("heel", "midfoot", "ball", "toes")
    assert "last step" in text and "last 20 steps" in text
    rolling = page.inner_text("#athlete-view .av-roll")
    assert "cadence" in rolling and "steps/min" in rolling and "forced landings" in rolling
    assert "(target 172-188)" in rolling and "(target \u2264 0.24 s)" in rolling  # the configured targets
    assert "_" not in text, text  # support_time_s and its kind never shown
    # left / right over the last 20 steps, per metric
    lr = page.eval_on_selector_all("#athlete-view .av-lr tbody tr", "rows => rows.map(r => r.innerText)")
    assert len(lr) >= 4 and any(r.startswith("support time") and "%" in r for r in lr)
    # the pressure map: region labels (from the device's regions) and a scale; the figure's joints
    labels = page.get_attribute("#athlete-view .av-pressure", "data-labels")
    assert labels == "heel,midfoot,ball,toes"
    assert int(page.get_attribute("#athlete-view .av-figure", "data-joints")) == 8
    assert "pose line" in page.inner_text("#athlete-view .av-figure-note")
    # the charts: points, a time axis in seconds before the last step
    for metric in ("cadence", "support"):
        sel = f'#athlete-view .av-chart[data-metric="{metric}"]'
        assert int(page.get_attribute(sel, "data-points")) > 50
        ticks = page.get_attribute(sel, "data-ticks").split("|")
        assert ticks[0] == "last step" and len(ticks) >= 3 and all(t.endswith((" s", " min")) for t in ticks[1:])
    # the score by named rule, in order R1..R10, with values
    rules = page.eval_on_selector_all("#athlete-view .av-rule", "rows => rows.map(r => r.innerText)")
    assert [r.split()[0] for r in rules] == [f"R{i}" for i in range(1, 11)]
    for i, row in enumerate(rules, start=1):
        assert RULE_NAMES[f"R{i}"] in row.replace("\n", " ")
        assert row.rstrip().endswith(("%", "n/a"))
    assert errors == []


def test_no_horizontal_overflow_on_a_phone_and_canvases_take_the_width(shown: Any) -> None:
    page, errors = shown(390, 844)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = page.eval_on_selector_all("#athlete-view canvas", "cs => cs.map(c => c.getBoundingClientRect().right)")
    assert boxes and max(boxes) <= 390
    widths = page.eval_on_selector_all("#athlete-view canvas", "cs => cs.map(c => c.clientWidth)")
    assert min(widths) > 250  # each canvas spans the phone's column, not a fixed desktop size
    assert errors == []


def test_the_view_takes_the_page_s_colours_light_theme(shown: Any) -> None:
    page, errors = shown(1024, 768, LIGHT)
    bars = page.eval_on_selector_all("#athlete-view .av-bar span",
                                     "ss => ss.map(s => getComputedStyle(s).backgroundColor)")
    assert set(bars) - {"rgba(0, 0, 0, 0)"} <= {"rgb(0, 110, 40)", "rgb(150, 90, 0)", "rgb(180, 20, 20)"}
    assert "rgb(0, 110, 40)" in bars  # good rules in the page's own green
    assert page.evaluate("getComputedStyle(document.querySelector('#athlete-view dt')).color") == "rgb(75, 85, 99)"
    assert errors == []


def test_updates_add_points_a_reset_starts_again_and_bad_messages_are_counted(shown: Any,
                                                                            detail: dict[str, Any]) -> None:
    page, errors = shown(1366, 768)
    n = len(detail["history"])
    more = {"type": "detail", "athlete": "a01", "history": detail["history"][-3:], "last": detail["last"]}
    page.evaluate("msg => poserunAthleteView.show(msg)", json.loads(json.dumps(more)))
    assert page.evaluate("poserunAthleteView.points()") == min(n + 3, 240)
    page.evaluate("poserunAthleteView.show({type: 'detail', athlete: 'a01', history: 'junk'})")
    page.evaluate("poserunAthleteView.show(null)")
    assert page.evaluate("poserunAthleteView.bad") == 2
    page.evaluate("msg => poserunAthleteView.show(msg)", {**detail, "athlete": "a02", "history": detail["history"][:5]})
    assert page.evaluate("poserunAthleteView.points()") == 5  # another athlete: its own history
    page.evaluate("poserunAthleteView.clear()")
    assert page.evaluate("poserunAthleteView.points()") == 0
    assert page.get_attribute("#athlete-view .av-pressure", "data-cells") == "0"
    assert errors == []


# ---------------------------------------------------------------- through the real board
@pytest.fixture(scope="module")
def board() -> Iterator[Served]:
    with served_board(12) as served:
        wait_until(lambda: served.call(lambda: len(served.sink.tiles) == 12), "12 athletes' records")
        yield served


@pytest.mark.parametrize(("width", "height"), VIEWPORTS)
def test_the_board_serves_the_view_and_draws_an_athlete_s_detail(browser: Any, board: Served,  # noqa: F811
                                                                 width: int, height: int) -> None:
    script = urlopen(board.url + "athlete.js", timeout=30)
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]
    assert script.read() == SCRIPT.read_bytes()
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(board.url)
        page.wait_for_selector('[data-athlete="a003"]', timeout=PAGE_MS)
        page.click('[data-athlete="a003"]')
        page.wait_for_function("poserunAthleteView.athlete() === 'a003' && poserunAthleteView.points() > 0",
                               timeout=PAGE_MS)
        page.wait_for_function("document.querySelectorAll('#athlete-view .av-metrics dd').length > 5",
                               timeout=PAGE_MS)
        before = page.evaluate("poserunAthleteView.points()")
        page.wait_for_function(f"poserunAthleteView.points() > {before}", timeout=PAGE_MS)  # live: new steps come
        assert "support time" in page.inner_text("#athlete-view .av-metrics")
        rules = page.eval_on_selector_all("#athlete-view .av-rule", "rows => rows.map(r => r.innerText)")
        assert [r.split()[0] for r in rules] == [f"R{i}" for i in range(1, 11)]
        assert page.get_attribute("#athlete-view .av-pressure", "data-labels") == "heel,midfoot,ball,toes"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert errors == []
    finally:
        context.close()


def test_the_board_s_outdoor_theme_redraws_the_view_in_its_colours(browser: Any, board: Served) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        page = context.new_page()
        page.goto(board.url)
        page.wait_for_selector('[data-athlete="a002"]', timeout=PAGE_MS)
        page.click('[data-athlete="a002"]')
        page.wait_for_function("document.querySelectorAll('#athlete-view .av-metrics dd').length > 5",
                               timeout=PAGE_MS)
        board.feed.paused.set()  # no new steps: only the theme's change can redraw the view
        try:
            def held() -> bool:  # the sink took every record of the feed and the page has all its points
                sent = board.call(lambda: (board.sink._points.get("a002", 0), board.feed.records))
                return sent == board.call(lambda: (board.sink._points.get("a002", 0), board.feed.records)) and \
                    page.evaluate("poserunAthleteView.points()") == min(sent[0], 240)
            wait_until(held, "the page holding every step the board has")
            draws, points = page.evaluate("[poserunAthleteView.draws, poserunAthleteView.points()]")
            page.click("#theme")
            page.wait_for_function("document.body.classList.contains('light')", timeout=PAGE_MS)
            page.wait_for_function(f"poserunAthleteView.draws > {draws}", timeout=PAGE_MS)
            assert page.evaluate("poserunAthleteView.points()") == points  # redrawn for the theme, not a step
            muted = page.evaluate("getComputedStyle(document.getElementById('athlete-view'))"
                                  ".getPropertyValue('--muted')")
            colour = page.evaluate("getComputedStyle(document.querySelector('#athlete-view dt')).color")
            probe = page.evaluate("""c => { const e = document.createElement('i'); e.style.color = c;
                document.body.append(e); const v = getComputedStyle(e).color; e.remove(); return v; }""", muted.strip())
            assert colour == probe  # the labels in the light theme's muted colour
        finally:
            board.feed.paused.clear()
    finally:
        context.close()
