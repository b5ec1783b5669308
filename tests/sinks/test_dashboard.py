"""The live dashboard in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.dashboard import DashboardSink
from tests.conftest import CEILING, PAGE_MS, require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_token_is_required_beyond_this_machine() -> None:
    with pytest.raises(ValueError, match="token"):
        DashboardSink(host="0.0.0.0")

    async def go() -> tuple[int, int, str]:
        sink = DashboardSink(port=0, token="s3cret")
        await sink.start()
        try:
            def get(path: str) -> tuple[int, str]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{sink.port}{path}", timeout=5) as r:
                        return r.status, r.read().decode()
                except urllib.error.HTTPError as exc:
                    return exc.code, ""
            no, _ = await asyncio.to_thread(get, "/")
            yes, page = await asyncio.to_thread(get, "/?token=s3cret")
            return no, yes, page
        finally:
            await sink.close()

    no, yes, page = asyncio.run(go())
    assert no == 401 and yes == 200 and "poserun team board" in page


@pytest.mark.broker
def test_board_shows_every_athlete_live(broker: BrokerSettings, session_id: str) -> None:
    require(CHROMIUM is not None, "Debian's chromium is not installed (.ci/run installs it)")
    try:
        import playwright.sync_api as playwright
    except ModuleNotFoundError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    settings = load_settings(overrides={
        "broker": {"url": broker.url}, "session": {"id": session_id},
        "sim": {"athletes": 6, "profiles": ["pose", "forced_lander", "heel_striker"], "forced_share": 0.6}})
    sink = DashboardSink(port=0, context={"athlete_names": {"a01": "Abebe"}})
    started, done = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(stop, ready))
            await ready.wait()
            started.set()
            gw_stop = threading.Event()
            gw = asyncio.create_task(asyncio.to_thread(run_sim_gateway, settings, duration=40.0, stop=gw_stop))
            await asyncio.to_thread(done.wait, 60)
            gw_stop.set()
            await gw
            stop.set()
            await task

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(CEILING)
    shot = Path(tempfile.gettempdir()) / "poserun-dashboard.png"
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(f"http://127.0.0.1:{sink.port}/")
            page.wait_for_function("document.querySelectorAll('.tile').length === 6", timeout=PAGE_MS)
            assert "Abebe" in page.inner_text("#tile-a01")
            before = {t: int(page.inner_text(f"#tile-{t} .stances")) for t in ("a01", "a02", "a03")}
            page.wait_for_timeout(1500)
            after = {t: int(page.inner_text(f"#tile-{t} .stances")) for t in ("a01", "a02", "a03")}
            assert all(after[t] > before[t] for t in before)  # the tiles update live
            flashing = page.wait_for_selector(".tile.flash", timeout=PAGE_MS)  # a forced landing flashes its tile
            assert flashing is not None
            flashed = flashing.get_attribute("data-athlete")  # (the handle: the flash is a one-shot, 1.5 s)
            assert flashed in {"a02", "a05"}  # the forced landers
            assert page.inner_text("#alerts").count("forced landing") >= 1
            assert "faster than the body at contact" in page.inner_text("#alerts")  # the severity explained
            page.select_option("#sort", "forced")
            page.fill("#filter", "a0")
            page.screenshot(path=str(shot))
            # the athlete view: live charts, the last stance's pressure map and stick figure
            page.click("#tile-a01")
            page.wait_for_selector("#athlete:not([hidden])")
            page.wait_for_function("window.poserunAthleteView && window.poserunAthleteView.points() > 3",
                                   timeout=PAGE_MS)
            n0 = page.evaluate("window.poserunAthleteView.points()")
            page.wait_for_function(f"window.poserunAthleteView.points() > {n0}", timeout=PAGE_MS)
            assert page.locator("#athlete-view .av-pressure").count() == 1
            assert page.locator("#athlete-view .av-rule").count() >= 1
            page.screenshot(path=str(shot.with_name("poserun-athlete.png")))
            # a new browser gets the whole board at once
            fresh = browser.new_page()
            fresh.goto(f"http://127.0.0.1:{sink.port}/")
            fresh.wait_for_function("document.querySelectorAll('.tile').length === 6", timeout=PAGE_MS)
            browser.close()
    finally:
        done.set()
        thread.join(CEILING)
    assert shot.stat().st_size > 20_000
    assert time.time() > 0
