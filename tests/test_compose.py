"""docker/compose.yaml as far as a machine without a Docker engine can check it: the compose CLI
parses it, everything it mounts or builds exists, and its broker setup (the accounts and ACL
make-site.sh generates, mosquitto-compose.conf) carries a simulated team into poserun for real."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from poserun.services.broker import free_port, mosquitto_exe
from poserun.services.mqtt import broker_answers
from tests.conftest import CEILING, ROOT, require, wait_until

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SERVICES = {"site", "mosquitto", "poserun", "gateway-sim", "prometheus", "grafana"}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def compose_cli() -> list[str] | None:
    """``docker compose`` (the CLI plugin) or Debian's ``docker-compose``, whichever parses files here."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_every_service_mount_and_build_exists() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == SERVICES
    named = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert ("image" in svc) != ("build" in svc), f"{name}: exactly one of image and build"
        if "image" in svc:
            repo, _, tag = svc["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: pin the image's tag ({svc['image']})"
        else:
            context = (DOCKER / svc["build"]["context"]).resolve()
            assert context.is_dir() and (context / svc["build"]["dockerfile"]).is_file(), name
        mounted = {}
        for vol in svc.get("volumes", []):
            source, target = vol.split(":")[:2]
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name} mounts {source}, which is not in the repo"
                mounted[target] = (DOCKER / source).resolve()
            else:
                assert source in named, f"{name} mounts the undeclared volume {source}"
        for word in svc.get("entrypoint", []) + svc.get("command", []):  # scripts and files it names are mounted
            for path in re.findall(r"^/(?:club|mosquitto/config|etc/prometheus)/[\w.-]+$", word.split("=")[-1]):
                assert any(path == t or path.startswith(t + "/") for t in mounted), f"{name}: {path} not mounted"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on the unknown service {dep}"
    # the files the containers read are the ones this repo checks elsewhere
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith(".")}
    assert (DOCKER / grafana["/etc/grafana/provisioning"] / "datasources").is_dir()
    assert (DOCKER / grafana["/var/lib/grafana/dashboards"] / "poserun.json").is_file()
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    club = yaml.safe_load((DOCKER / "club.yaml").read_text())
    metrics = next(s for s in club["sinks"] if s["type"] == "prometheus")["options"]
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"poserun:{metrics['port']}"]
    assert metrics["host"] == "0.0.0.0"  # (reachable from the Prometheus container)
    conf = (DOCKER / "mosquitto-compose.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file /mosquitto/config/site/acl" in conf


def test_the_compose_cli_parses_it() -> None:
    cli = compose_cli()
    require(cli is not None, "no compose CLI: neither the docker compose plugin nor docker-compose "
                             "(Debian package 'docker-compose'; .ci/run installs it)")
    assert cli is not None
    out = subprocess.run([*cli, "-f", str(COMPOSE), "config"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(resolved["services"]) == SERVICES
    assert resolved["services"]["mosquitto"]["depends_on"]["site"]["condition"] == "service_completed_successfully"
    # a broken file is refused, so the check above can fail
    bad = subprocess.run([*cli, "-f", "-", "config"], input="services:\n  x: {image: 3, ports: {a: b}}\n",
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    """A directory mosquitto's own user can reach (pytest's tmp_path sits under a 0700 directory)."""
    with tempfile.TemporaryDirectory(prefix="poserun-compose-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


def test_the_stack_broker_admits_only_its_accounts_and_carries_the_team(broker_dir: Path) -> None:
    exe = mosquitto_exe()
    require(exe is not None, "the mosquitto binary is missing (Debian package 'mosquitto'; .ci/run installs it)")
    assert exe is not None
    tmp_path = broker_dir
    site = tmp_path / "site"
    owner = "mosquitto:mosquitto" if os.geteuid() == 0 else ""  # (as root, mosquitto runs as its own user)
    env = {**os.environ, "CONFIG": str(DOCKER / "club.yaml"), "SITE": str(site), "OWNER": owner,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    made = subprocess.run(["sh", str(DOCKER / "make-site.sh")], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    port = free_port()
    conf = (DOCKER / "mosquitto-compose.conf").read_text().replace("/mosquitto/config/site", str(site))
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/data/")
    (tmp_path / "data").mkdir()
    if owner:
        shutil.chown(tmp_path / "data", "mosquitto", "mosquitto")
    (tmp_path / "mosquitto.conf").write_text(conf)
    log = open(tmp_path / "processes.log", "wb")  # (closed in finally)
    procs = [subprocess.Popen([exe, "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT)]
    url = f"mqtt://127.0.0.1:{port}"
    records = tmp_path / "records.jsonl"
    env = {**env, "CREDENTIALS": str(site / "credentials.json"),
           "POSERUN__SINKS": json.dumps([{"type": "jsonl", "options": {"path": str(records)}}])}
    account = ["sh", str(DOCKER / "with-broker-account.sh")]
    poserun = str(Path(sys.executable).with_name("poserun"))
    try:
        def listening() -> bool:
            with contextlib.suppress(OSError):
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            return procs[0].poll() is not None
        wait_until(listening, "mosquitto to listen")
        assert procs[0].poll() is None, (tmp_path / "processes.log").read_text()
        assert not broker_answers("127.0.0.1", port)  # anonymous: refused
        ready = tmp_path / "ready"
        procs.append(subprocess.Popen([*account, "poserun", poserun, "process", "-c", str(DOCKER / "club.yaml"),
                                       "--broker", url, "--ready-file", str(ready)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
        wait_until(lambda: ready.exists() or procs[1].poll() is not None, "poserun process to be ready")
        assert procs[1].poll() is None, (tmp_path / "processes.log").read_text()
        sim = subprocess.run([*account, "gw-sim", poserun, "gateway", "sim", "-c", str(DOCKER / "club.yaml"),
                              "--broker", url, "--duration", "6"], env=env, capture_output=True, text=True,
                             timeout=CEILING)
        assert sim.returncode == 0, sim.stderr
        athletes = {a["id"] for a in yaml.safe_load((DOCKER / "club.yaml").read_text())["athletes"]}

        def stances() -> set[str]:
            if not records.exists():
                return set()
            return {r["athlete"] for r in map(json.loads, records.read_text().splitlines()[:-1] or [])
                    if r.get("type") == "stance"}
        wait_until(lambda: stances() == athletes, "a stance of every athlete through the stack's broker")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(CEILING)
        log.close()


@pytest.mark.parametrize("script", ["make-site.sh", "with-broker-account.sh"])
def test_the_stack_scripts_are_posix_sh(script: str) -> None:
    out = subprocess.run(["sh", "-n", str(DOCKER / script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
