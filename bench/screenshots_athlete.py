"""Screenshots of the board's athlete view for the docs: docs/img/athlete-desktop.png (1366x768)
and docs/img/athlete-phone.png (390x844).

The real dashboard sink is given 40 s of three simulated athletes' records (the simulator through
the real fusion service, ``tests/services/sim_feed.py``; their ``emitted_ns`` put on this machine's
clock, the last one now), Debian's Chromium (Playwright) opens the board, clicks an athlete and
shoots the athlete view once it has drawn the athlete's steps. Rerunnable: the same seed gives the
same records. Run: ``.venv/bin/python bench/screenshots_athlete.py [--out docs/img]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poserun.sinks.dashboard import DashboardSink  # noqa: E402
from tests.services.sim_feed import feed  # noqa: E402

SHOTS = {"athlete-desktop.png": (1366, 768), "athlete-phone.png": (390, 844)}
CEILING_MS = 120_000


def team_records(seconds: float = 40.0) -> list[dict[str, Any]]:
    """The simulated team's records, each ``emitted_ns`` on this machine's clock (the last: now)."""
    records, _ = feed(athletes=3, seed=5, seconds=seconds)
    now, last = time.time_ns(), max(r["ic_ns"] for r in records)
    for r in records:
        r["emitted_ns"] = now - (last - r["ic_ns"])
    return records


def athlete_screenshots(out_dir: Path = ROOT / "docs" / "img", athlete: str = "a01") -> list[Path]:
    """Shoot the athlete view at each of ``SHOTS``' viewports; returns the files written."""
    import playwright.sync_api as playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="board", daemon=True)
    thread.start()
    sink = DashboardSink(port=0, context={"athlete_names": {"a01": "Abebe", "a02": "Bekele", "a03": "Chebet"}})

    def on_board(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    on_board(sink.start())
    on_board(sink.write_batch(team_records()))
    written = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for name, (width, height) in SHOTS.items():
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{sink.port}/")
                page.wait_for_selector(f'[data-athlete="{athlete}"]', timeout=CEILING_MS)
                page.click(f'[data-athlete="{athlete}"]')
                page.wait_for_function("window.poserunAthleteView && poserunAthleteView.points() > 50",
                                       timeout=CEILING_MS)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                path = out_dir / name
                page.locator("#athlete").screenshot(path=str(path))
                written.append(path)
                context.close()
            browser.close()
    finally:
        on_board(sink.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="directory for the PNG files")
    for path in athlete_screenshots(ap.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
