from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from poserun.cli import main
from poserun.services.fusion import FusionService
from poserun.services.report import PLOTS
from poserun.services.sim.team import SimTeam
from poserun.settings import SimSettings, load_settings
from poserun.sinks.store import Database
from tests.conftest import require


def stored_session(url: str, session: str = "rep") -> int:
    settings = load_settings(overrides={"session": {"id": session}})
    team = SimTeam(session, SimSettings(athletes=3, profiles=["pose", "forced_lander", "heel_striker"], seed=4))
    svc = FusionService(settings, session=session)
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    records = []
    for _ in range(40):
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            records += svc.handle(m.topic, m.payload)
    db = Database(url)
    db.write(records, {session: {"name": "Report test"}}, {})
    db.close()
    return len(records)


def test_report_has_every_plot_and_renders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    stored_session(url)
    out = tmp_path / "report.html"
    assert main(["report", "rep", "--db", url, "-o", str(out)]) == 0
    doc = out.read_text()
    assert doc.count('<tr><td>a0') == 3 and "Report test" in doc
    for athlete in ("a01", "a02", "a03"):
        kinds = re.findall(rf'alt="{athlete} (\w+)"', doc)
        assert sorted(kinds) == sorted(PLOTS)
    assert "http://" not in doc and "https://" not in doc  # self-contained
    assert re.search(r"<td>a02</td><td></td><td>\d+</td>.*?<td>[1-9]\d* \(", doc)  # the forced lander's count
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    assert chromium is not None
    png = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,2400",
                        out.as_uri()], capture_output=True, timeout=120, check=False)
    assert png.exists() and png.stat().st_size > 50_000  # a page with plots, not a blank one
    shutil.copy(png, Path(tempfile.gettempdir()) / "poserun-report.png")


def test_report_of_an_unknown_session(tmp_path: Path) -> None:
    assert main(["report", "nope", "--db", f"sqlite:///{tmp_path}/x.db", "-o", str(tmp_path / "x.html")]) == 2
