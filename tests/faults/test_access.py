"""Per-device access against a real private mosquitto running the generated password file and
ACL (``poserun access``): a gateway reaches only its own athletes' topics and its own status, a
band only its athlete's cues, a wrong password is refused; and the site broker set-up of docker/
(mosquitto.conf, docker/make-certs.sh) serves poserun over TLS.

Mosquitto drops an MQTT 3.1.1 publish that the ACL refuses without a word (a QoS 1 one is
even acknowledged), so a refusal is shown by what never arrives: each test sends a control
message after the refused ones, on the same connection, and waits for it (never for a clock);
the broker handles a connection's packets in order, so once the control message is in, every
refused one would have been too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from poserun.cli import main
from poserun.services.access import read_credentials
from poserun.services.broker import free_port
from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.mqtt import BrokerUnavailable
from poserun.services.mqtt_conn import MqttConnection
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, Settings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.mqtt_republish import MqttRepublishSink
from poserun.wire import mqtt as proto
from poserun.wire.topics import athlete_topic, data_topic, meta_topic, status_topic, subscription
from tests.conftest import CEILING, ROOT, until, wait_until
from tests.faults.tools import Mosquitto

SESSION = "track-1"
CONFIG = """\
broker: {url: "mqtt://127.0.0.1:1883", username: poserun}
session: {id: track-1}
athletes:
  - id: anna
    gateway: lane3
    devices:
      - {source: imu_foot_left}
      - {source: insole_left}
      - {source: keypoints, gateway: camera1}
  - {id: ben, gateway: lane3}
  - {id: cara, gateway: lane4}
"""
FORGED = 20  # refused publishes of each kind


class SecuredMosquitto(Mosquitto):
    """tools.Mosquitto (skips the test when the binary is missing) with a configuration of its own,
    ``conf(port)``: no anonymous clients."""

    def __init__(self, workdir: Path, conf: Callable[[int], str]) -> None:
        super().__init__(workdir)
        self.conf.write_text(conf(self.port) + "user root\n")  # (root: the tests' files are 0600)


@dataclass
class Site:
    url: str
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def account(self, user: str, password: str | None = None) -> BrokerSettings:
        return BrokerSettings(url=self.url, username=user,
                              password=self.passwords[user] if password is None else password)


def generate(workdir: Path, config: str = CONFIG) -> dict[str, str]:
    """``poserun access acl`` and ``passwd`` into ``workdir``; the passwords by user."""
    cfg = workdir / "team.yaml"
    cfg.write_text(config)
    assert main(["access", "acl", "-c", str(cfg), "-o", str(workdir / "acl")]) == 0
    assert main(["access", "passwd", "-c", str(cfg), "-o", str(workdir / "passwd")]) == 0
    return read_credentials(workdir / "passwd.credentials.json")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("access")
    passwords = generate(d)
    broker = SecuredMosquitto(d, lambda port: f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                              f"password_file {d / 'passwd'}\nacl_file {d / 'acl'}\n"
                                              "persistence false\n")
    broker.start()
    try:
        yield Site(broker.url, passwords)
    finally:
        broker.stop()


class Inbox:
    """What one subscriber received: (topic, payload, retain) in order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, bool]] = []

    def __call__(self, msg: proto.Message, _recv_ns: int) -> None:
        self.got.append((str(msg.topic), msg.payload, msg.retain))

    def payloads(self) -> list[bytes]:
        return [p for _t, p, _r in self.got]

    def has(self, payload: bytes) -> bool:
        return payload in self.payloads()


def service_filters() -> list[tuple[str, int]]:
    return [(subscription(SESSION, ch), 1) for ch in ("meta", "status", "data")]


def test_a_gateway_writes_only_its_own_athletes_and_status(site: Site) -> None:
    async def go() -> dict[str, int]:
        seen = Inbox()
        svc = MqttConnection(site.account("poserun"), "service", subscriptions=service_filters(), on_message=seen)
        lane3 = MqttConnection(site.account("gw-lane3"), "lane3")
        lane4 = MqttConnection(site.account("gw-lane4"), "lane4")
        for c in (svc, lane3, lane4):
            await c.start()
        try:
            # lane4's own retained meta and status: allowed, and the service gets them
            lane4.publish(meta_topic(SESSION, "cara", "insole_left"), b"cara-meta", qos=1, retain=True)
            lane4.publish(status_topic(SESSION, "lane4"), b"lane4-online", qos=1, retain=True)
            await until(lambda: seen.has(b"cara-meta") and seen.has(b"lane4-online"), "lane4's meta and status")
            # lane3's own: anna's listed sources (any of ben's), its meta and its status
            lane3.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"anna-own", qos=0)
            lane3.publish(data_topic(SESSION, "ben", "imu_pelvis"), b"ben-own", qos=0)
            lane3.publish(meta_topic(SESSION, "anna", "insole_left"), b"anna-meta", qos=1, retain=True)
            lane3.publish(status_topic(SESSION, "lane3"), b"lane3-online", qos=1, retain=True)
            # forged: another gateway's athlete, a source of anna's that another gateway carries or
            # that is not hers, another gateway's status, and clearing another gateway's retained meta
            for k in range(FORGED):
                lane3.publish(data_topic(SESSION, "cara", "insole_left"), b"forged-cara-%d" % k, qos=0)
                lane3.publish(data_topic(SESSION, "anna", "keypoints"), b"forged-camera-%d" % k, qos=0)
                lane3.publish(data_topic(SESSION, "anna", "imu_foot_right"), b"forged-source-%d" % k, qos=1)
                lane3.publish(status_topic(SESSION, "lane4"), b"forged-status-%d" % k, qos=1, retain=True)
            lane3.publish(meta_topic(SESSION, "cara", "insole_left"), b"", qos=1, retain=True)  # clear it
            lane3.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"control", qos=1)
            await until(lambda: seen.has(b"control"), "the control message")
            got = seen.payloads()
            assert {b"anna-own", b"ben-own", b"anna-meta", b"lane3-online"} <= set(got)
            forged = [p for p in got if p.startswith(b"forged") or p == b""]
            # the retained meta of cara is still there for a new subscriber (the clearing was refused)
            fresh = Inbox()
            late = MqttConnection(site.account("recorder"), "late", on_message=fresh, subscriptions=[
                (meta_topic(SESSION, "cara", "insole_left"), 1), (status_topic(SESSION, "lane4"), 1),
                (meta_topic(SESSION, "anna", "insole_left"), 1)])
            await late.start()
            await until(lambda: fresh.has(b"anna-meta"), "the retained meta, after subscribing")
            retained = {t: p for t, p, r in fresh.got if r}
            await late.close()
            assert retained == {meta_topic(SESSION, "cara", "insole_left"): b"cara-meta",
                                status_topic(SESSION, "lane4"): b"lane4-online",
                                meta_topic(SESSION, "anna", "insole_left"): b"anna-meta"}, retained
            assert lane3.stats.refused == 0 and lane3.connected  # silently dropped: the link stays up
            return {"forged_sent": 4 * FORGED + 1, "forged_delivered": len(forged)}
        finally:
            for c in (svc, lane3, lane4):
                await c.close()

    counts = asyncio.run(go())
    assert counts == {"forged_sent": 4 * FORGED + 1, "forged_delivered": 0}, counts


def test_a_gateway_hears_only_the_meta_requests_for_its_own_sources(site: Site) -> None:
    async def go() -> list[str]:
        heard = Inbox()
        lane3 = MqttConnection(site.account("gw-lane3"), "lane3", on_message=heard,
                               subscriptions=[(f"poserun/v1/{SESSION}/+/meta_request/+", 0)])
        svc = MqttConnection(site.account("poserun"), "service")
        await lane3.start()
        await svc.start()
        for _ in range(FORGED):  # another gateway's athlete, and a source of anna's lane3 does not carry
            svc.publish(f"poserun/v1/{SESSION}/cara/meta_request/insole_left", b"", qos=1)
            svc.publish(f"poserun/v1/{SESSION}/anna/meta_request/keypoints", b"", qos=1)
        svc.publish(f"poserun/v1/{SESSION}/anna/meta_request/imu_foot_left", b"", qos=1)
        await until(lambda: len(heard.got) >= 1, "lane3's own meta request")
        await svc.close()
        await lane3.close()
        return [t for t, _p, _r in heard.got]

    assert asyncio.run(go()) == [f"poserun/v1/{SESSION}/anna/meta_request/imu_foot_left"]


def test_a_will_on_another_gateways_status_is_not_published(site: Site) -> None:
    """Mosquitto takes a CONNECT whose will the ACL refuses, and drops the will when it is due."""
    async def go() -> list[bytes]:
        seen = Inbox()
        svc = MqttConnection(site.account("poserun"), "service", on_message=seen,
                             subscriptions=[(subscription(SESSION, "status"), 1)])
        await svc.start()
        links = []
        for name, will in (("forger", proto.Will(status_topic(SESSION, "lane4"), b"forged-will", 1, True)),
                           ("honest", proto.Will(status_topic(SESSION, "lane3"), b"lane3-will", 1, True))):
            client = proto.MqttClient(name, keepalive_s=60, username="gw-lane3", password=site.passwords["gw-lane3"],
                                      will=will)
            sock = socket.create_connection(("127.0.0.1", site.port), timeout=CEILING)
            sock.sendall(client.connect())
            events = _read(sock, client, lambda evs: bool(evs))
            assert [type(e) for e in events] == [proto.Connected], events
            links.append((client, sock))
        links[0][1].close()  # the forger's link ends without DISCONNECT: its will is due
        client, sock = links[1]
        _pid, packet = client.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"x", qos=1)
        sock.sendall(packet)  # a round trip: the broker has seen the forger's end when it answers
        _read(sock, client, lambda evs: any(isinstance(e, proto.Published) for e in evs))
        sock.close()  # then the honest gateway's: the control will
        await until(lambda: seen.has(b"lane3-will"), "the gateway's own will")
        await svc.close()
        return seen.payloads()

    assert b"forged-will" not in asyncio.run(go())


def test_a_band_reads_only_its_athletes_cues(site: Site) -> None:
    """Mosquitto 2.0 grants a subscription the ACL does not cover (SUBACK QoS 1, not 0x80) and
    checks each message on delivery instead: the band gets nothing of another athlete."""
    with socket.create_connection(("127.0.0.1", site.port), timeout=CEILING) as sock:
        band = proto.MqttClient("band-anna-test", keepalive_s=60, username="band-anna",
                                password=site.passwords["band-anna"])
        sock.sendall(band.connect())
        events = _read(sock, band, lambda evs: any(isinstance(e, proto.Connected) for e in evs))
        mine, cara, every = (athlete_topic(SESSION, "anna", "haptic"), athlete_topic(SESSION, "cara", "haptic"),
                             subscription(SESSION, "haptic"))
        _pid, packet = band.subscribe([(mine, 1), (cara, 1), (every, 1)])
        sock.sendall(packet)
        events = _read(sock, band, lambda evs: any(isinstance(e, proto.Subscribed | proto.SubscribeRefused)
                                                   for e in evs))
        acks = [e for e in events if isinstance(e, proto.Subscribed | proto.SubscribeRefused)]
        assert acks == [proto.Subscribed(1, (1, 1, 1))], acks

        async def cues() -> None:  # the service sends cara's cues, then anna's; a band forges one
            svc = MqttConnection(site.account("poserun"), "haptic")
            forger = MqttConnection(site.account("band-cara"), "band-forger")
            await svc.start()
            await forger.start()
            forger.publish(mine, b"forged-by-a-band", qos=1)
            forger.publish(athlete_topic(SESSION, "cara", "haptic"), b"a band cannot write", qos=1)
            await forger.close()  # (its publishes handed over and acknowledged first)
            assert forger.stats.acknowledged == 2  # refused, yet acknowledged: the band will not get them
            for k in range(FORGED):
                svc.publish(cara, b"cara-cue-%d" % k, qos=1)
            svc.publish(mine, b"anna-cue", qos=1)
            await svc.close()

        asyncio.run(cues())
        got: list[proto.Message] = []

        def arrived(evs: list[proto.Event]) -> bool:
            got.extend(e for e in evs if isinstance(e, proto.Message))
            sock.sendall(band.data_to_send())
            return any(m.payload == b"anna-cue" for m in got)

        _read(sock, band, arrived)
        assert {str(m.topic) for m in got} == {mine}, [(m.topic, m.payload) for m in got]
        assert {m.payload for m in got} == {b"anna-cue"}  # (once per matching subscription)


def _read(sock: socket.socket, client: proto.MqttClient, done: object) -> list[proto.Event]:
    """Feed the socket to the client until ``done(events_so_far)``."""
    events: list[proto.Event] = []
    while True:
        data = sock.recv(65536)
        assert data, "the broker closed the connection"
        events += client.receive(data)
        if done(events):  # type: ignore[operator]
            return events


@pytest.mark.parametrize(("user", "password"), [("gw-lane3", "wrong"), ("gw-lane3", ""), ("nobody", "x"),
                                                (None, None)])
def test_a_wrong_password_is_refused(site: Site, user: str | None, password: str | None) -> None:
    with socket.create_connection(("127.0.0.1", site.port), timeout=CEILING) as sock:
        client = proto.MqttClient("intruder", keepalive_s=60, username=user, password=password)
        sock.sendall(client.connect())
        events = client.receive(sock.recv(1024))
    # mosquitto 2.0 answers 5 ("not authorized") for a bad password and for no account at all
    assert [type(e) for e in events] == [proto.ConnectRefused] and events[0].code == 5, events  # type: ignore[attr-defined]


def test_the_connection_adapter_says_the_broker_refused(site: Site) -> None:
    async def go() -> str:
        conn = MqttConnection(site.account("gw-lane3", "wrong"), "gateway")
        with pytest.raises(BrokerUnavailable) as info:
            await conn.start()
        return str(info.value)

    assert "refused the connection: Connection Refused, not authorized" in asyncio.run(go())


def test_the_pipeline_runs_on_the_generated_accounts(site: Site) -> None:
    """The simulated gateway (as gw-lane3, carrying ben) and the fusion service with its records
    sink (as poserun), read by the recorder: every frame taken, records out, nothing refused."""
    sim_session = "pipeline-1"
    base = {"session": {"id": sim_session}, "athletes": [{"id": "ben", "gateway": "lane3"}],
            "sim": {"athletes": 1, "speed": 2.0, "gateway_id": "lane3"}}

    def settings_as(user: str) -> Settings:
        return load_settings(overrides={**base, "broker": {"url": site.url, "username": user,
                                                           "password": site.passwords[user]}})

    service_settings = settings_as("poserun")
    assert SimTeam(sim_session, service_settings.sim, service_settings.athletes).specs[0].athlete_id == "ben"

    async def main() -> tuple[dict[str, Any], int, list[bytes]]:
        records = Inbox()
        reader = MqttConnection(site.account("recorder"), "recorder", on_message=records,
                                subscriptions=[(subscription(sim_session, "records"), 1)])
        await reader.start()
        republish = MqttRepublishSink(context={"broker": service_settings.broker})
        svc = FusionService(service_settings, [SinkRunner(republish)], session=sim_session)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        sent = await asyncio.to_thread(run_sim_gateway, settings_as("gw-lane3"), duration=4.0)
        await until(lambda: svc.snapshot()["totals"].get("frames", 0) >= sent.frames, "every frame")
        await until(lambda: len(records.got) >= 5, "records through the broker")
        stop.set()
        await task
        await reader.close()
        return svc.snapshot(), sent.frames, records.payloads()

    snap, sent, got = asyncio.run(main())
    assert snap["totals"]["frames"] == sent and snap["rejected"] == {}
    assert {json.loads(p)["athlete"] for p in got} == {"ben"}
    assert snap["sinks"]["mqtt"]["refused"] == 0


def test_a_new_device_after_regenerating_and_a_reload(tmp_path: Path) -> None:
    """The operator's round: an athlete more, ``poserun access`` again, SIGHUP; the new gateway
    gets in and the devices already provisioned keep their passwords."""
    before = generate(tmp_path)
    broker = SecuredMosquitto(tmp_path, lambda port: f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                                     f"password_file {tmp_path / 'passwd'}\n"
                                                     f"acl_file {tmp_path / 'acl'}\npersistence false\n")
    broker.start()
    try:
        def connack(user: str, password: str) -> proto.Event:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=CEILING) as sock:
                client = proto.MqttClient(f"probe-{user}", keepalive_s=60, username=user, password=password)
                sock.sendall(client.connect())
                return _read(sock, client, lambda evs: bool(evs))[0]

        assert "gw-lane5" not in before
        after = generate(tmp_path, CONFIG + "  - {id: eve, gateway: lane5}\n")
        assert {u: after[u] for u in before} == before  # kept: nothing to re-flash
        assert isinstance(connack("gw-lane5", after["gw-lane5"]), proto.ConnectRefused)  # not loaded yet
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: isinstance(connack("gw-lane5", after["gw-lane5"]), proto.Connected),
                   "the reloaded password file")
        assert isinstance(connack("gw-lane3", before["gw-lane3"]), proto.Connected)
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------- TLS
@contextlib.contextmanager
def site_broker(workdir: Path, name: str = "mosquitto.conf",
                replace: dict[str, str] | None = None) -> Iterator[tuple[int, int]]:
    """docker/``name`` as shipped, its paths moved into ``workdir`` (and ``replace`` applied) and
    its listeners onto free loopback ports, with the generated passwords, ACL and
    docker/make-certs.sh's certificates. Yields (TLS port, plain port)."""
    shipped = (ROOT / "docker" / name).read_text()
    assert "\nlistener 8883\n" in shipped and "\nlistener 1883 127.0.0.1\n" in shipped
    for old, new in (replace or {}).items():
        assert old in shipped, old
        shipped = shipped.replace(old, new)
    plain_port = free_port()

    def conf(tls_port: int) -> str:
        return (shipped.replace("/mosquitto/config/site/", f"{workdir}/").replace("/mosquitto/data/", f"{workdir}/")
                .replace("\nlistener 8883\n", f"\nlistener {tls_port} 127.0.0.1\n")
                .replace("\nlistener 1883 127.0.0.1\n", f"\nlistener {plain_port} 127.0.0.1\n"))

    broker = SecuredMosquitto(workdir, conf)
    broker.start()
    try:
        yield broker.port, plain_port
    finally:
        broker.stop()


def test_the_site_broker_serves_poserun_over_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: docker/make-certs.sh cannot make the test CA")
    passwords = generate(tmp_path)
    made = subprocess.run(["sh", str(ROOT / "docker" / "make-certs.sh"), str(tmp_path), "localhost", "127.0.0.1"],
                          capture_output=True, text=True, timeout=CEILING)
    assert made.returncode == 0, made.stderr
    assert {"ca.crt", "ca.key", "broker.crt", "broker.key"} <= {p.name for p in tmp_path.iterdir()}

    async def go(tls_port: int, plain_port: int) -> None:
        def account(user: str, url: str, ca: Path | None) -> BrokerSettings:
            return BrokerSettings(url=url, username=user, password=passwords[user], ca_file=ca)

        seen = Inbox()
        ca = tmp_path / "ca.crt"
        svc = MqttConnection(account("poserun", f"mqtts://127.0.0.1:{tls_port}", ca), "service",
                             subscriptions=service_filters(), on_message=seen)
        gw = MqttConnection(account("gw-lane3", f"mqtts://localhost:{tls_port}", ca), "lane3")
        local = MqttConnection(account("gw-lane4", f"mqtt://127.0.0.1:{plain_port}", None), "lane4")
        for c in (svc, gw, local):
            await c.start()
        gw.publish(data_topic(SESSION, "cara", "insole_left"), b"forged over TLS", qos=1)
        gw.publish(data_topic(SESSION, "anna", "imu_foot_left"), b"over TLS", qos=1)
        local.publish(data_topic(SESSION, "cara", "insole_left"), b"over the loopback listener", qos=1)
        await until(lambda: seen.has(b"over TLS") and seen.has(b"over the loopback listener"), "both publishes")
        assert not seen.has(b"forged over TLS")  # (sent before "over TLS" on the same connection)
        for c in (svc, gw, local):
            await c.close()
        # without the site CA (the system's CAs) the broker's certificate is not trusted
        stranger = MqttConnection(account("poserun", f"mqtts://127.0.0.1:{tls_port}", None), "stranger")
        with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await stranger.start()
        # and a password is needed over TLS too
        wrong = MqttConnection(BrokerSettings(url=f"mqtts://127.0.0.1:{tls_port}", username="poserun",
                                              password="wrong", ca_file=ca), "wrong")
        with pytest.raises(BrokerUnavailable, match="not authorized"):
            await wrong.start()

    with site_broker(tmp_path) as (tls_port, plain_port):
        asyncio.run(go(tls_port, plain_port))
