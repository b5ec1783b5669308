"""The provisioned Grafana dashboard (docker/grafana): every PromQL query in it is valid for
promtool and answers, from a real Prometheus scraping a real ``poserun process`` fed by the
simulator, with data for every athlete selection the dashboard's variable makes."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from poserun.services.broker import free_port
from poserun.services.mqtt_publisher import Publisher
from poserun.settings import BrokerSettings
from tests.conftest import CEILING, ROOT, require, wait_until

GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "poserun.json"
ATHLETES = ("a01", "a02", "a03")
# panels allowed to answer nothing: no processor warning is expected from the simulated team
MAY_BE_EMPTY = {"Processor warnings": "the simulator's sensors are plausible, so the processor warns about nothing"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target in the dashboard, rows' panels included."""
    return [(p["title"], t["expr"]) for p in panels(dash["panels"]) for t in p.get("targets", [])]


def substitute(expr: str, athlete: str, rate: str = "1m") -> str:
    """``expr`` as Grafana sends it: ``$athlete`` the selection's regex, ``$__rate_interval`` a window."""
    values = {"athlete": athlete, "__rate_interval": rate}

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            pytest.fail(f"unknown template variable ${name} in {expr}", pytrace=False)
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


SELECTIONS = {"one athlete (and a repeated row)": "a01", "two athletes": "(a01|a03)", "All": ".*"}


def test_the_dashboard_is_provisioned_consistently() -> None:
    dash = dashboard()
    sources = [d for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))
               for d in yaml.safe_load(f.read_text())["datasources"]]
    uids = {d["uid"] for d in sources if d["type"] == "prometheus"}
    assert uids == {"poserun-prometheus"}
    for p in panels(dash["panels"]):
        if p["type"] != "row":
            assert p["datasource"]["uid"] in uids, p["title"]
            assert all(t["datasource"]["uid"] in uids for t in p["targets"]), p["title"]
            assert p["targets"], p["title"]
    providers = [p for f in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    variable = next(v for v in dash["templating"]["list"] if v["name"] == "athlete")
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    assert any(p.get("repeat") == "athlete" for p in dash["panels"] if p["type"] == "row")
    # every per-athlete query filters by the variable; ids are unique for Grafana
    ids = [p["id"] for p in panels(dash["panels"])]
    assert len(ids) == len(set(ids))
    for title, expr in queries(dash):
        if re.search(r"poserun_(pose_score|cadence|support_time|forced_landings|stances)", expr):
            assert 'athlete=~"$athlete"' in expr, (title, expr)


def test_every_query_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is missing (Debian package 'prometheus'; .ci/run installs it)")
    assert promtool is not None
    dash = dashboard()
    exprs = [substitute(e, a) for _t, e in queries(dash) for a in SELECTIONS.values()]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"poserun:dashboard_query_{i}", "expr": e}
                                                       for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(exprs)} rules found" in out.stdout
    out = subprocess.run([promtool, "check", "config", str(ROOT / "docker" / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # and promtool does fail on a broken query, so the check above can fail
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "x", "expr": "sum by (athlete (poserun_stances_total)"}]}]}))
    assert subprocess.run([promtool, "check", "rules", str(tmp_path / "bad.yaml")], capture_output=True).returncode


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        body = json.loads(urllib.request.urlopen(url, timeout=30).read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def answers(self, expr: str) -> bool:
        with contextlib.suppress(OSError):
            return bool(self.query(expr))
        return False


def _poserun() -> str:
    exe = Path(sys.executable).with_name("poserun")
    return str(exe) if exe.exists() else "poserun"


@pytest.mark.broker
def test_every_query_answers_from_a_real_prometheus(tmp_path: Path, broker: BrokerSettings, session_id: str) -> None:
    prometheus = shutil.which("prometheus")
    require(prometheus is not None,
            "the prometheus binary is missing (Debian package 'prometheus'; .ci/run installs it)")
    assert prometheus is not None
    metrics_port, prom_port = free_port(), free_port()
    (tmp_path / "poserun.yaml").write_text(yaml.safe_dump({
        "broker": {"url": broker.url}, "session": {"id": session_id},
        "sinks": [{"type": "prometheus", "options": {"port": metrics_port, "stale_s": 600}},
                  {"type": "store", "options": {"url": f"sqlite:///{tmp_path / 'store.db'}"}}]}))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "poserun", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}))
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "processes.log", "wb")  # (closed in finally)

    def start(*args: str) -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
        return procs[-1]

    try:
        ready = tmp_path / "ready"
        # this session only: the shared broker may carry other sessions' athletes, which would add to the panels
        svc = start(_poserun(), "process", "-c", str(tmp_path / "poserun.yaml"), "--session", session_id,
                    "--ready-file", str(ready))
        wait_until(lambda: ready.exists() or svc.poll() is not None, "poserun process to be ready")
        assert svc.poll() is None, (tmp_path / "processes.log").read_text()
        start(_poserun(), "gateway", "sim", "-c", str(tmp_path / "poserun.yaml"), "--athletes", str(len(ATHLETES)),
              "--profiles", "pose,forced_lander,heel_striker", "--duration", "120")
        start(prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
              f"--web.listen-address=127.0.0.1:{prom_port}")
        prom = Prom(prom_port)
        # a malformed frame: the "rejected messages" panel must have something to show
        pub = Publisher(broker, "grafana-test")
        pub.connect()
        pub.publish(f"poserun/v1/{session_id}/a01/data/imu_foot_left", b"not a frame", qos=1)
        pub.flush()
        pub.close()
        wait_until(lambda: prom.answers(f"count(increase(poserun_stances_total[1m]) > 0) == {len(ATHLETES)}")
                   and prom.answers("increase(poserun_forced_landings_total[1m]) > 0")
                   and prom.answers("poserun_rejected_frames_total"),
                   "Prometheus to hold a few scrapes of every athlete's stances")
        variable = dashboard()["templating"]["list"][0]
        found = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["definition"])
        assert found is not None, variable["definition"]
        metric, label = found.groups()
        assert prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric}) == list(ATHLETES)
        empty = []
        for name, selection in SELECTIONS.items():
            for title, expr in queries(dashboard()):
                promql = substitute(expr, selection)
                result = prom.query(promql)
                who = {r["metric"]["athlete"] for r in result if "athlete" in r["metric"]}
                assert who <= {a for a in ATHLETES if re.fullmatch(selection, a)}, (title, promql, who)
                if not result:
                    empty.append((name, title, promql))
                elif 'athlete=~"$athlete"' in expr:
                    assert who == {a for a in ATHLETES if re.fullmatch(selection, a)}, (title, promql, who)
        unexpected = [e for e in empty if e[1] not in MAY_BE_EMPTY]
        assert not unexpected, "queries without data:\n" + "\n".join(map(str, unexpected))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + CEILING
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        log.close()
