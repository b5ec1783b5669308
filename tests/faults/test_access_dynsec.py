"""``poserun access dynsec`` against a real private mosquitto running its dynamic security plugin
on the generated file: every account logs in, a gateway reaches the service with its own athletes'
data and nothing forged, a subscription outside an account's topics is refused (SUBACK 0x80) and
poserun's clients say so, naming the topic, wrong passwords are refused, and the plugin reads its
file at start only (a SIGHUP does not re-read it). The acl_file set-up: tests/faults/test_access.py,
whose helpers these tests share."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from poserun.cli import main
from poserun.services.access import read_credentials
from poserun.services.mqtt import BrokerUnavailable
from poserun.services.mqtt_conn import MqttConnection
from poserun.services.mqtt_publisher import Publisher, gateway_publisher
from poserun.settings import BrokerSettings
from poserun.wire import mqtt as proto
from poserun.wire.topics import athlete_topic, data_topic, meta_topic, status_topic, subscription
from tests.conftest import CEILING, ROOT, until, wait_until
from tests.faults.test_access import (
    CONFIG,
    FORGED,
    SESSION,
    Inbox,
    SecuredMosquitto,
    Site,
    service_filters,
    site_broker,
)

PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN = "dynsec-admin"


def plugin_lines(path: Path) -> str:
    if not PLUGIN.exists():
        pytest.skip(f"mosquitto's dynamic security plugin is not at {PLUGIN}")
    return f"plugin {PLUGIN}\nplugin_opt_config_file {path}\n"


def generate(workdir: Path, config: str = CONFIG) -> dict[str, str]:
    """``poserun access dynsec`` (with an admin) into ``workdir``; the passwords by user."""
    cfg = workdir / "team.yaml"
    cfg.write_text(config)
    assert main(["access", "dynsec", "-c", str(cfg), "-o", str(workdir / "dynsec.json"), "--admin", ADMIN]) == 0
    return read_credentials(workdir / "dynsec.json.credentials.json")


def dynsec_broker(workdir: Path) -> SecuredMosquitto:
    lines = plugin_lines(workdir / "dynsec.json")
    return SecuredMosquitto(workdir, lambda port: f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                                  f"{lines}persistence false\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("dynsec")
    broker = dynsec_broker(d)
    passwords = generate(d)
    broker.start()
    try:
        yield Site(broker.url, passwords)
    finally:
        broker.stop()


def connack(port: int, user: str | None, password: str | None) -> proto.Event:
    with socket.create_connection(("127.0.0.1", port), timeout=CEILING) as sock:
        client = proto.MqttClient(f"probe-{user}", keepalive_s=60, username=user, password=password)
        sock.sendall(client.connect())
        events: list[proto.Event] = []
        while not events:
            data = sock.recv(1024)
            assert data, "the broker closed the connection"
            events += client.receive(data)
        return events[0]


def test_the_generated_file_loads_and_every_account_logs_in(site: Site) -> None:
    assert len(site.passwords) == 9  # the service, the recorder, 3 gateways, 3 bands, the admin
    answers = {user: connack(site.port, user, password) for user, password in site.passwords.items()}
    assert {u: e for u, e in answers.items() if not isinstance(e, proto.Connected)} == {}


@pytest.mark.parametrize(("user", "password"), [("gw-lane3", "wrong"), ("gw-lane3", ""), ("nobody", "x"),
                                                (None, None)])
def test_a_wrong_password_is_refused(site: Site, user: str | None, password: str | None) -> None:
    event = connack(site.port, user, password)
    assert isinstance(event, proto.ConnectRefused) and event.code == 5, event


def test_a_gateway_reaches_the_service_with_its_own_data_only(site: Site) -> None:
    """The gateway's publisher (its meta request subscription granted) sends its athletes' data,
    meta and status; forged publishes are dropped, shown by the control message sent after them."""
    async def go() -> list[bytes]:
        seen = Inbox()
        svc = MqttConnection(site.account("poserun"), "service", subscriptions=service_filters(), on_message=seen)
        await svc.start()  # the service's subscriptions: granted
        lane3 = gateway_publisher(site.account("gw-lane3"), "lane3", SESSION)
        await asyncio.to_thread(lane3.connect, 10.0)
        try:
            lane3.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"anna-own")
            lane3.publish(data_topic(SESSION, "ben", "imu_pelvis"), b"ben-own")
            lane3.publish(meta_topic(SESSION, "anna", "insole_left"), b"anna-meta", qos=1, retain=True)
            lane3.publish(status_topic(SESSION, "lane3"), b"lane3-online", qos=1, retain=True)
            for k in range(FORGED):  # another gateway's athlete, a source another gateway carries, its status
                lane3.publish(data_topic(SESSION, "cara", "insole_left"), b"forged-cara-%d" % k)
                lane3.publish(data_topic(SESSION, "anna", "keypoints"), b"forged-camera-%d" % k, qos=1)
                lane3.publish(status_topic(SESSION, "lane4"), b"forged-status-%d" % k, qos=1)
            lane3.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"control", qos=1)
            await asyncio.to_thread(lane3.flush)
            await until(lambda: seen.has(b"control"), "the control message")
            assert lane3.connected and lane3.stats.acknowledged == 2 * FORGED + 3  # (dropped without a word)
        finally:
            await asyncio.to_thread(lane3.close)
            await svc.close()
        return seen.payloads()

    got = asyncio.run(go())
    assert {b"anna-own", b"ben-own", b"anna-meta", b"lane3-online"} <= set(got)
    assert [p for p in got if p.startswith(b"forged")] == []


@pytest.mark.parametrize("wanted", ["cara", "+"])
def test_a_band_subscribing_to_other_cues_gets_an_error_that_names_the_topic(site: Site, wanted: str) -> None:
    topic = athlete_topic(SESSION, wanted, "haptic")

    async def go() -> str:
        band = MqttConnection(site.account("band-anna"), "band", subscriptions=[(topic, 1)])
        with pytest.raises(BrokerUnavailable) as info:
            await band.start()
        return str(info.value)

    assert f"refused the subscription to {topic} " in asyncio.run(go())
    pub = Publisher(site.account("band-anna"), "band", subscriptions=[(topic, 1)])
    with pytest.raises(BrokerUnavailable, match=f"refused the subscription to {topic.replace('+', '[+]')} "):
        pub.connect(timeout=10.0)


def test_a_band_gets_its_athletes_cues_and_its_gateways_status(site: Site) -> None:
    """Its own cue topic and every gateway's status (docs/haptics.md) are granted; of the statuses
    only those of the gateways carrying its athlete are delivered."""
    async def go() -> list[tuple[str, bytes]]:
        heard = Inbox()
        lane4 = MqttConnection(site.account("gw-lane4"), "lane4")
        lane3 = MqttConnection(site.account("gw-lane3"), "lane3")
        for c in (lane4, lane3):
            await c.start()
        lane4.publish(status_topic(SESSION, "lane4"), b"lane4-online", qos=1, retain=True)
        lane3.publish(status_topic(SESSION, "lane3"), b"lane3-online", qos=1, retain=True)
        for c in (lane4, lane3):
            await c.close()  # (its publishes acknowledged first)
        band = MqttConnection(site.account("band-anna"), "band", on_message=heard, subscriptions=[
            (athlete_topic(SESSION, "anna", "haptic"), 1), (subscription(SESSION, "status"), 1)])
        await band.start()
        svc = MqttConnection(site.account("poserun"), "haptic")
        await svc.start()  # (lane4's retained status, were it delivered, would come before this cue)
        svc.publish(athlete_topic(SESSION, "anna", "haptic"), b"anna-cue", qos=1)
        await until(lambda: heard.has(b"anna-cue"), "anna's cue")
        await svc.close()
        await band.close()
        return [(t, p) for t, p, _r in heard.got]

    assert asyncio.run(go()) == [(status_topic(SESSION, "lane3"), b"lane3-online"),
                                 (athlete_topic(SESSION, "anna", "haptic"), b"anna-cue")]


def test_the_admin_manages_the_plugin_with_mosquitto_ctrl(site: Site) -> None:
    exe = shutil.which("mosquitto_ctrl")
    if exe is None:
        pytest.skip("mosquitto_ctrl is missing")
    done = subprocess.run([exe, "-h", "127.0.0.1", "-p", str(site.port), "-u", ADMIN, "-P", site.passwords[ADMIN],
                           "dynsec", "getRole", "band-anna"], capture_output=True, text=True, timeout=CEILING)
    assert done.returncode == 0, done.stderr
    assert "subscribePattern     : allow : poserun/v1/+/anna/haptic" in done.stdout
    assert isinstance(connack(site.port, ADMIN, site.passwords[ADMIN]), proto.Connected)


def test_a_regenerated_file_is_read_on_restart_not_on_sighup(tmp_path: Path) -> None:
    """The operator's round: an athlete more, ``poserun access dynsec`` again; a SIGHUP leaves the
    plugin on its old file, a restart loads the new one and the devices keep their passwords."""
    broker = dynsec_broker(tmp_path)
    before = generate(tmp_path)
    broker.start()
    try:
        after = generate(tmp_path, CONFIG + "  - {id: eve, gateway: lane5}\n")
        assert "gw-lane5" not in before and {u: after[u] for u in before} == before
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "Reloading config." in (tmp_path / "mosquitto.log").read_text(), "the reload")
        # (mosquitto logs that line, reloads, then serves the next connection)
        assert isinstance(connack(broker.port, "gw-lane5", after["gw-lane5"]), proto.ConnectRefused)
        broker.stop()
        broker.start()
        assert isinstance(connack(broker.port, "gw-lane5", after["gw-lane5"]), proto.Connected)
        assert isinstance(connack(broker.port, "gw-lane3", before["gw-lane3"]), proto.Connected)
    finally:
        broker.stop()


def shipped_broker(workdir: Path) -> contextlib.AbstractContextManager[tuple[int, int]]:
    """docker/mosquitto-dynsec.conf as shipped, the plugin's path onto this machine's
    (``site_broker`` moves the rest). Yields (TLS, plain) ports."""
    return site_broker(workdir, "mosquitto-dynsec.conf",
                       {"plugin /usr/lib/mosquitto_dynamic_security.so\n": f"plugin {PLUGIN}\n"})


def test_the_shipped_dynsec_conf_serves_over_tls_and_refuses_over_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: docker/make-certs.sh cannot make the test CA")
    plugin_lines(tmp_path / "dynamic-security.json")  # (skips without the plugin)
    cfg = tmp_path / "team.yaml"
    cfg.write_text(CONFIG)
    assert main(["access", "dynsec", "-c", str(cfg), "-o", str(tmp_path / "dynamic-security.json")]) == 0
    passwords = read_credentials(tmp_path / "dynamic-security.json.credentials.json")
    made = subprocess.run(["sh", str(ROOT / "docker" / "make-certs.sh"), str(tmp_path), "localhost", "127.0.0.1"],
                          capture_output=True, text=True, timeout=CEILING)
    assert made.returncode == 0, made.stderr

    async def go(tls_port: int, plain_port: int) -> None:
        def account(user: str) -> BrokerSettings:
            return BrokerSettings(url=f"mqtts://localhost:{tls_port}", username=user, password=passwords[user],
                                  ca_file=tmp_path / "ca.crt")

        seen = Inbox()
        svc = MqttConnection(account("poserun"), "service", subscriptions=service_filters(), on_message=seen)
        local = MqttConnection(Site(f"mqtt://127.0.0.1:{plain_port}", passwords).account("gw-lane4"), "lane4")
        await svc.start()
        await local.start()
        local.publish(data_topic(SESSION, "cara", "insole_left"), b"over the loopback listener", qos=1)
        await until(lambda: seen.has(b"over the loopback listener"), "the gateway's frame")
        await local.close()
        await svc.close()
        ben = athlete_topic(SESSION, "ben", "haptic")
        band = MqttConnection(account("band-anna"), "band", subscriptions=[(ben, 1)])
        with pytest.raises(BrokerUnavailable, match="refused the subscription to poserun/v1/track-1/ben/haptic"):
            await band.start()

    with shipped_broker(tmp_path) as (tls_port, plain_port):
        asyncio.run(go(tls_port, plain_port))
