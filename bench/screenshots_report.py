"""Screenshots of the session report for the docs: docs/img/report-desktop.png (1366x768) and
docs/img/report-phone.png (390x844), and the page's height per athlete.

The store is the one the report's tests build (``tests/services/test_report.py``: a simulated team
through the real fusion service into SQLite, with coach reps, tags and targets); Debian's Chromium
(Playwright) renders :func:`render_report` and shoots the first screen. Rerunnable: the same seed
gives the same records. Run: ``.venv/bin/python bench/screenshots_report.py [--out docs/img] [--athletes 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poserun.services.report import render_report  # noqa: E402
from poserun.sinks.store import Database  # noqa: E402
from tests.services.test_report import stored_session  # noqa: E402

SHOTS = {"report-desktop.png": (1366, 768), "report-phone.png": (390, 844)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--athletes", type=int, default=3)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Debian's chromium is not installed", file=sys.stderr)
        return 2
    import playwright.sync_api as playwright

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/report.db"
        stored_session(url, athletes=args.athletes)
        db = Database(url, create=False)
        try:
            doc = render_report(db, "rep")
        finally:
            db.close()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    figures = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for name, (w, h) in SHOTS.items():
            page = browser.new_page(viewport={"width": w, "height": h})
            page.set_content(doc)
            page.screenshot(path=str(Path(args.out) / name))
            figures[name] = page.evaluate("({height: document.documentElement.scrollHeight, "
                                          "width: document.documentElement.scrollWidth, inner: innerWidth})")
            page.close()
        browser.close()
    print(json.dumps({"athletes": args.athletes, "pages": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
