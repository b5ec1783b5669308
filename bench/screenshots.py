"""Screenshots of the team board for the docs: docs/img/board-desktop.png (1366x768),
docs/img/board-phone.png (390x844) and docs/img/board-light.png (the outdoor theme, 1366x768).

The real dashboard sink is given 40 s of twelve simulated athletes' records (the simulator's
profiles through the real fusion service, ``tests/services/sim_feed.py``; their ``emitted_ns``
put on this machine's clock, the last one now), Debian's Chromium (Playwright) opens the board and
shoots it once every tile shows its status. Rerunnable: the same seed gives the same records.
Run: ``.venv/bin/python bench/screenshots.py [--out docs/img]``.
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

SHOTS = {"board-desktop.png": (1366, 768, False), "board-phone.png": (390, 844, False),
         "board-light.png": (1366, 768, True)}
CEILING_MS = 120_000


def team_records(athletes: int, seconds: float = 40.0) -> list[dict[str, Any]]:
    """The simulated team's records, each ``emitted_ns`` on this machine's clock (the last: now)."""
    records, _ = feed(athletes=athletes, seed=5, seconds=seconds)
    now, last = time.time_ns(), max(r["ic_ns"] for r in records)
    for r in records:
        r["emitted_ns"] = now - (last - r["ic_ns"])
    return records


def board_screenshots(out_dir: Path = ROOT / "docs" / "img", athletes: int = 12) -> list[Path]:
    """Shoot the board at each of ``SHOTS``' viewports and themes; returns the files written."""
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
    on_board(sink.write_batch(team_records(athletes)))

    written = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for name, (width, height, light) in SHOTS.items():
                context = browser.new_context(viewport={"width": width, "height": height})
                if light:
                    context.add_init_script("localStorage.setItem('poserun.board.theme', 'light')")
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{sink.port}/")
                page.wait_for_function(f"document.querySelectorAll('#board .tile[data-athlete]').length === {athletes}"
                                       " && [...document.querySelectorAll('#board .tile .fault')].every(e => "
                                       "e.textContent)", timeout=CEILING_MS)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                path = out_dir / name
                page.screenshot(path=str(path))
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
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    for path in board_screenshots(ap.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
