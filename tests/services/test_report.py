"""The session report from a real SQLite store of a simulated team with coach records, in Chromium."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poserun.cli import main
from poserun.processors.score import RULES
from poserun.services.fusion import FusionService
from poserun.services.report import athlete_targets, lr_asymmetry, ordered_rules, render_report, rule_name
from poserun.services.sim.team import SimTeam
from poserun.settings import SimSettings, Targets, load_settings
from poserun.sinks.store import Database
from tests.sinks.test_dashboard_scale import browser  # noqa: F401  (the fixture: one Chromium)

T0 = 1_790_000_000 * 10**9  # 2026-09-21 14:13:20 UTC: the records' emitted_ns start here
S = 10**9
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def coach(athlete: str, at_s: float, action: str, **more: Any) -> dict[str, Any]:
    t = T0 + int(at_s * S)
    return {"type": "coach", "athlete": athlete, "session": "rep", "action": action, "t_ns": t, "by": "board",
            "emitted_ns": t, "id": f"rep/{athlete}/coach/{t}/{action}", **more}


def stored_session(url: str, athletes: int = 3, seconds: float = 40.0) -> list[dict[str, Any]]:
    """A simulated team through the fusion service on a clock that follows the simulation, stored with
    coach records: a01 has two coach reps, a02 two tags, a03 targets set on the board."""
    settings = load_settings(overrides={"session": {"id": "rep"}})
    team = SimTeam("rep", SimSettings(athletes=athletes, profiles=["pose", "forced_lander", "heel_striker"], seed=4))
    now = [T0]
    svc = FusionService(settings, session="rep", clock=lambda: now[0])
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    records: list[dict[str, Any]] = []
    t0_sim: int | None = None
    for _ in range(int(seconds * 2)):  # a step is 50 frames of the team: 0.5 s
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            t0_sim = m.at_ns if t0_sim is None else t0_sim
            now[0] = T0 + m.at_ns - t0_sim
            records += svc.handle(m.topic, m.payload)
    records += [coach("a01", 3, "rep", on=True, rep=1), coach("a01", 7, "rep", on=False, rep=1),
                coach("a01", 9, "rep", on=True, rep=2), coach("a01", 13, "rep", on=False, rep=2),
                coach("a02", 5, "tag", label="lands on the heel <again>"), coach("a02", 11, "tag", label="better"),
                coach("a03", 2, "targets", targets={"cadence_spm": [175, 185], "support_time_s": 0.21,
                                                    "forced_share": 0.05})]
    db = Database(url)
    db.write(records, {"rep": {"name": "Report test"}}, {})
    db.close()
    return records


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/r.db"
    yield url, stored_session(url)


@pytest.fixture(scope="module")
def doc(store: tuple[str, list[dict[str, Any]]]) -> str:
    db = Database(store[0], create=False)
    try:
        return render_report(db, "rep")
    finally:
        db.close()


def section(doc: str, athlete: str) -> str:
    m = re.search(rf'<section class="athlete" id="athlete-{athlete}".*?</section>', doc, re.S)
    assert m, athlete
    return m.group(0)


def test_rules_are_named_in_number_order() -> None:
    assert ordered_rules(["R10_pull_under_hip", "R2_ball_of_foot", "R1_short_support"]) == [
        "R1_short_support", "R2_ball_of_foot", "R10_pull_under_hip"]
    assert rule_name("R4_no_forced_landing") == "no forced landing"


def test_targets_come_from_the_latest_valid_coach_record_then_settings_then_defaults() -> None:
    good = {"type": "coach", "action": "targets", "targets": {"cadence_spm": [175, 185]}}
    bad = {"type": "coach", "action": "targets", "targets": {"cadence_spm": [200, 100]}}
    assert athlete_targets([good, bad], None) == ({"cadence_spm": [175.0, 185.0], "support_time_s": 0.25,
                                                   "forced_share": 0.1}, "set on the board")
    assert athlete_targets([bad], {"targets": {"support_time_s": 0.3}})[1] == "from the athlete's settings"
    assert athlete_targets([], {"targets": "nonsense"}) == (Targets().as_dict(), "defaults (docs/configuration.md)")


def test_lr_asymmetry_is_signed_around_zero() -> None:
    st = [{"foot": "left", "support_time_s": 0.22}, {"foot": "right", "support_time_s": 0.20},
          {"foot": "right", "overstride_m": 0.1}]
    [(label, pct)] = lr_asymmetry(st)
    assert label == "support time" and abs(pct - 100 * 0.02 / 0.21) < 1e-9


def test_the_report_holds_rules_reps_tags_targets_and_metadata(doc: str, store: tuple[str, list]) -> None:
    records = store[1]
    assert '<meta name="viewport" content="width=device-width' in doc and "Report test" in doc
    assert "2026-09-21 14:13:" in doc and '<dd id="session">rep</dd>' in doc and "http" not in doc
    for athlete in ("a01", "a02", "a03"):
        part = section(doc, athlete)
        rules = re.findall(r'<tr data-rule="(\w+)"><td>R(\d+)</td><td>([\w ]+)</td>', part)
        assert [r[0] for r in rules] == ordered_rules(list(RULES)) and [int(r[1]) for r in rules] == list(range(1, 11))
        assert rules[0][2] == "short support" and rules[1][2] == "ball of foot"
        assert "R1_" not in re.sub(r'data-rule="\w+"', "", part)
    a01 = section(doc, "a01")
    stances = [r for r in records if r["type"] == "stance" and r["athlete"] == "a01"]
    inside = [sum(1 for s in stances if T0 + a * S <= s["emitted_ns"] < T0 + b * S) for a, b in ((3, 7), (9, 13))]
    assert min(inside) > 5
    rows = re.findall(r'<tr class="rep"><td>(\d+)</td><td>([\d:]+)</td><td>\d+ s</td><td>(\d+)</td>', a01)
    first = min(r["emitted_ns"] for r in records)  # the report's clock starts at the session's first record

    def at(t_s: int) -> str:
        return f"0:{(T0 + t_s * S - first) // S:02d}"

    assert rows == [("1", at(3), str(inside[0])), ("2", at(9), str(inside[1]))]
    assert 'data-source="coach"' in a01
    a02 = section(doc, "a02")
    assert 'data-source="auto"' in a02 and len(re.findall(r'<tr class="rep">', a02)) >= 1
    assert re.findall(r'<li class="tag"><b>([\d:]+)</b> ([^<]*)</li>', a02) == [
        (at(5), "lands on the heel &lt;again&gt;"), (at(11), "better")]
    a03 = section(doc, "a03")
    assert "175-185 spm" in a03 and "&le; 0.21 s" in a03 and "set on the board" in a03
    assert "170-190 spm" in a01 and "defaults" in a01
    assert re.search(r'class="lr-row" data-metric="support time" data-pct="-?\d+\.\d"', a01)


def test_cli_writes_the_report(store: tuple[str, list], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "rep", "--db", store[0], "-o", str(out)]) == 0
    assert out.read_text().count('<section class="athlete"') == 3
    assert main(["report", "nope", "--db", store[0], "-o", str(tmp_path / "x.html")]) == 2


@pytest.mark.parametrize("size", [(1366, 768), (390, 844)])
def test_no_horizontal_overflow(browser: Any, doc: str, size: tuple[int, int]) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        page.set_content(doc)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), size
        # each athlete's section stays compact: about a screen on the desktop
        heights = page.evaluate("[...document.querySelectorAll('section.athlete')].map(s => s.offsetHeight)")
        assert len(heights) == 3 and (size[0] < 1000 or max(heights) <= 1.5 * size[1]), heights
    finally:
        page.close()


def test_print_gives_one_page_per_athlete(browser: Any, doc: str) -> None:  # noqa: F811
    page = browser.new_page()
    try:
        page.set_content(doc)
        page.emulate_media(media="print")
        breaks = page.evaluate("[...document.querySelectorAll('section.athlete')].map("
                               "s => getComputedStyle(s).breakAfter)")
        assert breaks == ["page", "page", "auto"]
        pdf = page.pdf(format="A4", print_background=True)
        pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
        assert pages == 3, pages
    finally:
        page.close()
