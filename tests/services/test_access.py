"""``poserun access`` without a broker: which account may do what, the config it reads, mosquitto's
password hash, and the files the CLI writes, the dynamic security plugin's among them (the
broker's side: tests/faults/test_access.py and test_access_dynsec.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from poserun.cli import main
from poserun.services import access
from poserun.settings import ConfigError, load_settings
from tests.conftest import ROOT

TEAM = """\
broker: {url: "mqtts://broker.local:8883", username: svc}
athletes:
  - id: anna
    gateway: lane3
    devices:
      - {source: imu_foot_left}
      - {source: keypoints, gateway: camera1}
  - {id: ben, gateway: lane3}
  - {id: dan}
"""


def team(tmp_path: Path, text: str = TEAM) -> Path:
    f = tmp_path / "team.yaml"
    f.write_text(text)
    return f


def by_user(tmp_path: Path, session: str | None = None) -> dict[str, access.Account]:
    return {a.user: a for a in access.accounts(load_settings(team(tmp_path)), session=session)}


def test_each_gateway_gets_its_athletes_sources_and_its_status(tmp_path: Path) -> None:
    acc = by_user(tmp_path)
    assert list(acc) == ["svc", "recorder", "gw-lane3", "gw-camera1", "gw-dan", "band-anna", "band-ben", "band-dan"]
    assert acc["gw-lane3"].write == (
        "poserun/v1/+/anna/data/imu_foot_left", "poserun/v1/+/anna/meta/imu_foot_left",
        "poserun/v1/+/ben/data/+", "poserun/v1/+/ben/meta/+", "poserun/v1/+/_gateway/lane3/status")
    assert acc["gw-camera1"].write == ("poserun/v1/+/anna/data/keypoints", "poserun/v1/+/anna/meta/keypoints",
                                       "poserun/v1/+/_gateway/camera1/status")
    assert acc["gw-dan"].athletes == ("dan",)  # no gateway named: one of the athlete's own
    assert acc["band-anna"].read == ("poserun/v1/+/anna/haptic", "poserun/v1/+/_gateway/lane3/status",
                                     "poserun/v1/+/_gateway/camera1/status")
    assert acc["band-anna"].write == () and acc["recorder"].write == ()
    assert acc["svc"].write == ("poserun/v1/+/+/records", "poserun/v1/+/+/haptic", "poserun/v1/+/+/meta_request/+",
                                "poserun/v1/+/+/coach")  # its board publishes coach actions
    assert "poserun/v1/+/+/coach" in acc["svc"].read and "poserun/v1/+/+/coach" not in acc["band-anna"].read
    assert acc["gw-lane3"].read == ("poserun/v1/+/anna/meta_request/imu_foot_left", "poserun/v1/+/ben/meta_request/+")
    one = by_user(tmp_path, session="s1")
    assert one["gw-dan"].write[0] == "poserun/v1/s1/dan/data/+"
    with pytest.raises(ValueError, match="session id"):
        access.accounts(load_settings(team(tmp_path)), session="a/b")


def test_the_acl_is_mosquittos_syntax(tmp_path: Path) -> None:
    text = access.acl_text(access.accounts(load_settings(team(tmp_path))), origin="team.yaml")
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body[0] == "user svc"  # nothing for anonymous clients before the first user
    assert all(line.split(" ")[0] in ("user", "topic") for line in body)
    assert all(line.split(" ")[1] in ("read", "write") for line in body if line.startswith("topic"))
    assert "user gw-lane3\ntopic read poserun/v1/+/anna/meta_request/imu_foot_left\n" in text
    assert "topic write poserun/v1/+/anna/data/imu_foot_left\n" in text


@pytest.mark.parametrize(("text", "needle"), [
    ("athletes:\n  - {id: a, gateway: 'lane 3'}\n", "athletes.0.gateway"),
    ("athletes:\n  - {id: a, devices: [{source: keypoints, gateway: _cam}]}\n", "athletes.0.devices.0.gateway"),
    ("athletes:\n  - {id: a, devices: [{source: keypoints}, {source: keypoints}]}\n", "repeated: keypoints"),
])
def test_a_bad_gateway_is_a_config_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(team(tmp_path, text))
    assert needle in str(info.value)


def test_the_service_account_must_not_clash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.username 'gw-x' would clash"):
        access.accounts(load_settings(team(tmp_path, "broker: {username: gw-x}\n")))
    with pytest.raises(ConfigError, match="no ':' or spaces"):
        access.accounts(load_settings(team(tmp_path, "broker: {username: 'a:b'}\n")))


def test_the_password_hash_is_mosquittos() -> None:
    salt = bytes(range(12))
    encoded = access.hash_password("s3cret", salt=salt)
    assert encoded.startswith("$7$101$AAECAwQFBgcICQoL$") and len(encoded.split("$")[4]) == 88
    assert access.check_password("s3cret", encoded) and not access.check_password("s3creT", encoded)


def test_a_hash_made_by_mosquitto_passwd_checks(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        pytest.skip("mosquitto_passwd is missing (the broker accepting our hashes: tests/faults/test_access.py)")
    f = tmp_path / "passwd"
    subprocess.run([exe, "-c", "-b", str(f), "gw-lane3", "pa:ss word"], check=True, capture_output=True)
    user, encoded = f.read_text().strip().split(":", 1)
    assert user == "gw-lane3" and access.check_password("pa:ss word", encoded)
    assert not access.check_password("pass word", encoded)


def test_passwords_are_kept_unless_rotated() -> None:
    found = [access.Account(u, "band", "") for u in ("a", "b", "c")]
    first, fresh = access.passwords(found, {})
    assert fresh == ["a", "b", "c"] and len(set(first.values())) == 3
    assert all(len(p) == 24 for p in first.values())
    again, fresh = access.passwords(found, {**first, "gone": "x"}, rotate=["b"])
    assert fresh == ["b"] and again["a"] == first["a"] and again["b"] != first["b"] and "gone" not in again
    _, fresh = access.passwords(found, first, rotate=["all"])
    assert fresh == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no such account: z"):
        access.passwords(found, first, rotate=["z"])


def test_the_cli_writes_private_files_and_keeps_passwords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = team(tmp_path)
    out = tmp_path / "passwd"
    assert main(["access", "passwd", "-c", str(cfg), "-o", str(out), "--broker", "mqtts://10.0.0.2:8883"]) == 0
    said = capsys.readouterr().out
    assert "8 accounts" in said and "new passwords: svc, recorder, gw-lane3" in said
    creds_file = tmp_path / "passwd.credentials.json"
    for f in (out, creds_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    creds = json.loads(creds_file.read_text())
    assert creds["broker"] == "mqtts://10.0.0.2:8883" and creds["session"] == "any"
    lane3 = next(a for a in creds["accounts"] if a["user"] == "gw-lane3")
    assert lane3["role"] == "gateway" and lane3["athletes"] == ["anna", "ben"] and len(lane3["read"]) == 2
    hashes = dict(line.split(":", 1) for line in out.read_text().splitlines())
    assert list(hashes) == [a["user"] for a in creds["accounts"]]
    assert all(access.check_password(a["password"], hashes[a["user"]]) for a in creds["accounts"])
    assert said.count(lane3["password"]) == 0  # the terminal never shows a password
    # again, one athlete more and one account rotated: the devices already provisioned keep theirs
    cfg.write_text(TEAM + "  - {id: eve, gateway: lane3}\n")
    assert main(["access", "passwd", "-c", str(cfg), "-o", str(out), "--rotate", "band-ben"]) == 0
    said = capsys.readouterr().out
    assert "new passwords: band-ben, band-eve;" in said
    again = {a["user"]: a["password"] for a in json.loads(creds_file.read_text())["accounts"]}
    old = {a["user"]: a["password"] for a in creds["accounts"]}
    assert all(again[u] == old[u] for u in old if u != "band-ben") and again["band-ben"] != old["band-ben"]
    assert main(["access", "passwd", "-c", str(cfg), "-o", str(out), "--rotate", "gw-nope"]) == 2
    assert "no such account: gw-nope" in capsys.readouterr().err


def test_the_cli_prints_the_acl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["access", "acl", "-c", str(team(tmp_path)), "--session", "s1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Mosquitto ACL") and "topic write poserun/v1/s1/_gateway/lane3/status" in text
    assert main(["access", "acl"]) == 0  # no config: the service and the recorder alone, and a word on it
    got = capsys.readouterr()
    assert "user poserun" in got.out and "user gw-" not in got.out and "lists no athletes" in got.err


def test_docker_acl_is_the_generated_one_for_the_example_team() -> None:
    settings = load_settings(ROOT / "config" / "track-team.yaml")
    text = access.acl_text(access.accounts(settings), origin="config/track-team.yaml")
    assert (ROOT / "docker" / "acl").read_text() == text, (
        "regenerate with: poserun access acl -c config/track-team.yaml -o docker/acl")


def dynsec_password_checks(password: str, client: dict[str, object]) -> bool:
    """As the dynamic security plugin checks a client's password."""
    salt = base64.b64decode(str(client["salt"]))
    digest = base64.b64decode(str(client["password"]))
    assert len(salt) == 12 and len(digest) == 64  # (the plugin skips a client whose lengths differ)
    iterations = client["iterations"]
    assert isinstance(iterations, int)
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64), digest)


def test_the_dynsec_file_has_a_client_and_a_role_per_account(tmp_path: Path) -> None:
    found = access.accounts(load_settings(team(tmp_path)))
    pw = {a.user: f"pw-{a.user}" for a in found}
    data = json.loads(access.dynsec_text(found, pw))
    assert data["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                        "subscribe": False, "unsubscribe": True}
    assert data["groups"] == [] and [c["username"] for c in data["clients"]] == [a.user for a in found]
    for c in data["clients"]:
        assert c["roles"] == [{"rolename": c["username"]}] and c["iterations"] == access.ITERATIONS
        assert dynsec_password_checks(pw[c["username"]], c) and not dynsec_password_checks("other", c)
    roles = {r["rolename"]: r["acls"] for r in data["roles"]}
    assert list(roles) == [a.user for a in found]

    def acl(user: str, kind: str) -> list[str]:
        assert all(a["allow"] is True for a in roles[user])
        return [a["topic"] for a in roles[user] if a["acltype"] == kind]

    for a in found:  # the ACL's topics, as they are (no %u or %c: each account's own)
        assert acl(a.user, "publishClientSend") == list(a.write)
        assert acl(a.user, "publishClientReceive") == list(a.read)
        assert {x["acltype"] for x in roles[a.user]} <= {"publishClientSend", "publishClientReceive",
                                                         "subscribePattern"}
    assert acl("svc", "subscribePattern") == list(by_user(tmp_path)["svc"].read)
    assert acl("recorder", "subscribePattern") == ["poserun/v1/+/#"]
    # what docs/protocol.md and docs/haptics.md tell a gateway and a band to subscribe to
    assert acl("gw-lane3", "subscribePattern") == ["poserun/v1/+/+/meta_request/+"]
    assert acl("band-anna", "subscribePattern") == ["poserun/v1/+/anna/haptic", "poserun/v1/+/_gateway/+/status"]


def test_the_cli_writes_the_dynsec_file_and_shares_the_credentials(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg, out, creds_file = team(tmp_path), tmp_path / "dynamic-security.json", tmp_path / "credentials.json"
    assert main(["access", "passwd", "-c", str(cfg), "-o", str(tmp_path / "passwd"),
                 "--credentials", str(creds_file)]) == 0
    first = access.read_credentials(creds_file)
    capsys.readouterr()
    assert main(["access", "dynsec", "-c", str(cfg), "-o", str(out), "--credentials", str(creds_file),
                 "--session", "s1", "--admin", "ops", "--rotate", "band-ben"]) == 0
    said = capsys.readouterr().out
    assert "9 clients" in said and "new passwords: band-ben, ops;" in said and "restart mosquitto" in said
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    again = access.read_credentials(creds_file)
    assert all(again[u] == first[u] for u in first if u != "band-ben") and again["band-ben"] != first["band-ben"]
    data = json.loads(out.read_text())
    clients = {c["username"]: c for c in data["clients"]}
    assert all(dynsec_password_checks(again[u], clients[u]) for u in again)
    ops = next(r["acls"] for r in data["roles"] if r["rolename"] == "ops")
    assert {(a["acltype"], a["topic"]) for a in ops} == {
        (kind, "$CONTROL/dynamic-security/#") for kind in ("publishClientSend", "publishClientReceive",
                                                           "subscribePattern")}
    gw = next(r["acls"] for r in data["roles"] if r["rolename"] == "gw-dan")
    assert gw[0] == {"acltype": "publishClientSend", "topic": "poserun/v1/s1/dan/data/+", "allow": True}
    assert said.count(again["ops"]) == 0
    entry = next(a for a in json.loads(creds_file.read_text())["accounts"] if a["user"] == "band-anna")
    assert entry["subscribe"] == ["poserun/v1/s1/anna/haptic", "poserun/v1/s1/_gateway/+/status"]
    for bad, needle in (("gw-x", "would clash"), ("svc", "already an account"), ("a b", "no ':' or spaces")):
        assert main(["access", "dynsec", "-c", str(cfg), "-o", str(out), "--admin", bad]) == 2
        assert needle in capsys.readouterr().err
