"""Screenshots of the team board for the docs: docs/img/board-desktop.png (1366x768),
docs/img/board-phone.png (390x844) and docs/img/board-light.png (the outdoor theme, 1366x768),
and of one athlete's view: docs/img/athlete-desktop.png and docs/img/athlete-phone.png.

The real dashboard sink is given 40 s of twelve simulated athletes' records (the simulator's
profiles through the real fusion service, ``tests/services/sim_feed.py``; their ``emitted_ns``
put on this machine's clock, the last one now), Debian's Chromium (Playwright) opens the board and
shoots it once every tile shows its status (the athlete view: three athletes, a01 clicked,
once it has drawn its steps). Rerunnable: the same seed gives the same records.
Run: ``.venv/bin/python bench/screenshots.py [--out docs/img] [--only board|athlete]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poserun.sinks.dashboard import DashboardSink  # noqa: E402
from tests.services.sim_feed import feed  # noqa: E402

SHOTS = {"board-desktop.png": (1366, 768, False), "board-phone.png": (390, 844, False),
         "board-light.png": (1366, 768, True)}
ATHLETE_SHOTS = {"athlete-desktop.png": (1366, 768), "athlete-phone.png": (390, 844)}
CEILING_MS = 120_000


def team_records(athletes: int, seconds: float = 40.0) -> list[dict[str, Any]]:
    """The simulated team's records, each ``emitted_ns`` on this machine's clock (the last: now)."""
    records, _ = feed(athletes=athletes, seed=5, seconds=seconds)
    now, last = time.time_ns(), max(r["ic_ns"] for r in records)
    for r in records:
        r["emitted_ns"] = now - (last - r["ic_ns"])
    return records


@contextlib.contextmanager
def served_board(athletes: int) -> Iterator[tuple[int, Any]]:
    """The real dashboard sink on a loop of its own, given the team's records, and Debian's Chromium
    (Playwright): yields (the board's port, the browser)."""
    import playwright.sync_api as playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="board", daemon=True)
    thread.start()
    sink = DashboardSink(port=0, context={"athlete_names": {"a01": "Abebe", "a02": "Bekele", "a03": "Chebet"}})

    def on_board(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    on_board(sink.start())
    on_board(sink.write_batch(team_records(athletes)))
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                yield sink.port, browser
            finally:
                browser.close()
    finally:
        on_board(sink.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _drawn(page: Any) -> None:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def board_screenshots(out_dir: Path = ROOT / "docs" / "img", athletes: int = 12) -> list[Path]:
    """Shoot the board at each of ``SHOTS``' viewports and themes; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with served_board(athletes) as (port, browser):
        for name, (width, height, light) in SHOTS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            if light:
                context.add_init_script("localStorage.setItem('poserun.board.theme', 'light')")
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(f"document.querySelectorAll('#board .tile[data-athlete]').length === {athletes}"
                                   " && [...document.querySelectorAll('#board .tile .fault')].every(e => "
                                   "e.textContent)", timeout=CEILING_MS)
            _drawn(page)
            path = out_dir / name
            page.screenshot(path=str(path))
            written.append(path)
            context.close()
    return written


def athlete_screenshots(out_dir: Path = ROOT / "docs" / "img", athlete: str = "a01") -> list[Path]:
    """Shoot the athlete view (three athletes' records) at each of ``ATHLETE_SHOTS``' viewports."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with served_board(3) as (port, browser):
        for name, (width, height) in ATHLETE_SHOTS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f'[data-athlete="{athlete}"]', timeout=CEILING_MS)
            page.click(f'[data-athlete="{athlete}"]')
            page.wait_for_function("window.poserunAthleteView && poserunAthleteView.points() > 50",
                                   timeout=CEILING_MS)
            _drawn(page)
            path = out_dir / name
            page.locator("#athlete").screenshot(path=str(path))
            written.append(path)
            context.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="directory for the PNG files")
    ap.add_argument("--only", choices=("board", "athlete"), help="one set of shots (default: both)")
    args = ap.parse_args()
    paths = [] if args.only == "athlete" else board_screenshots(args.out)
    paths += [] if args.only == "board" else athlete_screenshots(args.out)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
