"""Per-device broker access from the session config: a Mosquitto ACL file and a password file,
or the dynamic security plugin's JSON, and the credentials to hand to each device (``poserun
access``; docs/operations.md#per-device-access).

Accounts (user names):

* ``poserun`` (or ``broker.username``): the fusion service; reads every gateway's data, meta
  and status, writes records, haptic cues and meta requests; the board it serves (the dashboard
  sink) writes coach actions, which the service reads (``.../{athlete}/coach``);
* ``recorder``: read-only, everything (``poserun record``, the virtual band, ``mosquitto_sub``);
* ``gw-<gateway>``: one per gateway; writes only its athletes' data and meta (only the listed
  sources when an athlete lists devices) and its own ``_gateway/<gateway>/status``, and reads
  poserun's requests for that meta (``meta_request``);
* ``band-<athlete>``: one per athlete; reads only that athlete's haptic topic (and the status
  of the gateways carrying the athlete, for the latency measurement of docs/haptics.md).
* an admin (``access dynsec --admin USER``), only when asked: the dynamic security plugin's
  control topics (``mosquitto_ctrl dynsec``), no device topic.

Each account also has the filters it may subscribe to (``subscribe``, for the dynamic security
plugin, which refuses any other subscription with SUBACK 0x80): its read topics, except that a
gateway subscribes to every ``meta_request`` of the session (docs/protocol.md) and a band to
every gateway's status (docs/haptics.md); the broker then delivers only what it may read.

Which gateway carries what: an athlete's ``gateway`` (default: the athlete's id), or a
device's own ``gateway`` for that source (a camera that streams several athletes' keypoints).
Everything here is pure: it returns text, the CLI writes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from poserun.settings import ConfigError, Settings
from poserun.wire.topics import GATEWAY, PROTOCOL, ROOT, check_id

RECORDER = "recorder"
GATEWAY_PREFIX = "gw-"
BAND_PREFIX = "band-"
#: PBKDF2 iterations: mosquitto_passwd's own default. The generated passwords carry 144 random
#: bits, so their length, not the hash's cost, is what keeps them from being guessed.
ITERATIONS = 101
SALT_BYTES = 12  # as mosquitto_passwd
META_REQUEST = "meta_request"  # poserun asks a gateway for a source's meta on .../{athlete}/meta_request/{source}
Role = Literal["service", "recorder", "gateway", "band", "admin"]
#: the dynamic security plugin's control topics (what ``mosquitto_ctrl dynsec`` uses)
DYNSEC_CONTROL = "$CONTROL/dynamic-security/#"


@dataclass(frozen=True)
class Account:
    """One broker user: what it is for and the topics it may read, write and subscribe to."""

    user: str
    role: Role
    about: str
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    gateway: str | None = None
    athletes: tuple[str, ...] = field(default_factory=tuple)
    subscribe: tuple[str, ...] | None = None  # None: the read topics

    @property
    def filters(self) -> tuple[str, ...]:
        """The topic filters this account may subscribe to."""
        return self.read if self.subscribe is None else self.subscribe


def _base(session: str | None) -> str:
    return f"{ROOT}/{PROTOCOL}/{session if session is not None else '+'}"


def gateway_map(settings: Settings) -> dict[str, dict[str, tuple[str, ...] | None]]:
    """Gateway id -> {athlete: the sources it publishes, or None for any source}, in config order."""
    out: dict[str, dict[str, tuple[str, ...] | None]] = {}
    for a in settings.athletes:
        if not a.devices:
            out.setdefault(a.gateway_of(), {})[a.id] = None
            continue
        for d in a.devices:
            carried = out.setdefault(a.gateway_of(d.source), {})
            sources = carried.get(a.id) or ()
            carried[a.id] = (*sources, d.source)
    return out


def accounts(settings: Settings, *, session: str | None = None) -> list[Account]:
    """Every account the config calls for; ``session`` ties the topics to one session (None: any)."""
    if session is not None:
        check_id(session, "session")
    base = _base(session)
    service = check_user(settings.broker.username or "poserun", "broker.username", ConfigError)
    found = [
        Account(service, "service", "the fusion service: reads the gateways' data, meta and status; "
                "writes records, haptic cues and meta requests; its board writes coach actions, it reads them, "
                "and the board shows the bands' cues",
                write=(f"{base}/+/records", f"{base}/+/haptic", f"{base}/+/{META_REQUEST}/+", f"{base}/+/coach"),
                read=(f"{base}/+/data/+", f"{base}/+/meta/+", f"{base}/{GATEWAY}/+/status", f"{base}/+/coach",
                      f"{base}/+/haptic")),
        Account(RECORDER, "recorder", "read-only, everything: poserun record, the virtual band, a monitor "
                "(mosquitto_sub)", read=(f"{base}/#",)),
    ]
    gateways = gateway_map(settings)
    for gw, carried in gateways.items():
        write: list[str] = []
        read: list[str] = []
        said = []
        for athlete, sources in carried.items():
            for s in sources if sources is not None else ("+",):
                write += [f"{base}/{athlete}/data/{s}", f"{base}/{athlete}/meta/{s}"]
                read.append(f"{base}/{athlete}/{META_REQUEST}/{s}")
            said.append(f"{athlete} ({', '.join(sources) if sources is not None else 'any source'})")
        write.append(f"{base}/{GATEWAY}/{gw}/status")
        found.append(Account(GATEWAY_PREFIX + gw, "gateway", f"gateway {gw}: {'; '.join(said)}",
                             write=tuple(write), read=tuple(read), gateway=gw, athletes=tuple(carried),
                             subscribe=(f"{base}/+/{META_REQUEST}/+",)))
    for a in settings.athletes:
        carriers = [gw for gw, carried in gateways.items() if a.id in carried]
        found.append(Account(BAND_PREFIX + a.id, "band", f"haptic band of {a.id}",
                             read=(f"{base}/{a.id}/haptic", *(f"{base}/{GATEWAY}/{gw}/status" for gw in carriers)),
                             athletes=(a.id,), subscribe=(f"{base}/{a.id}/haptic", f"{base}/{GATEWAY}/+/status")))
    return found


def check_user(user: str, what: str, error: type[Exception] = ValueError) -> str:
    """``user`` if it can name a poserun-made account of its own, else ``error``."""
    if not user or ":" in user or not user.isprintable() or " " in user:
        raise error(f"{what} {user!r}: a Mosquitto user name has no ':' or spaces")
    if user == RECORDER or user.startswith((GATEWAY_PREFIX, BAND_PREFIX)):
        raise error(f"{what} {user!r} would clash with the device accounts "
                    f"({RECORDER}, {GATEWAY_PREFIX}..., {BAND_PREFIX}...): choose another")
    return user


def admin_account(user: str, found: Iterable[Account]) -> Account:
    """A dynamic security admin (``mosquitto_ctrl dynsec``): the plugin's control topics only."""
    check_user(user, "--admin")
    if user in {a.user for a in found}:
        raise ValueError(f"--admin {user!r} is already an account: choose another name")
    return Account(user, "admin", "dynamic security admin (mosquitto_ctrl dynsec): its control topics only",
                   write=(DYNSEC_CONTROL,), read=(DYNSEC_CONTROL,))


def acl_text(found: Iterable[Account], *, origin: str | None, session: str | None = None) -> str:
    """A Mosquitto ``acl_file``: one ``user`` block per account, nothing for anonymous clients.
    ``origin`` is the config file named in its header."""
    lines = [
        "# Mosquitto ACL for poserun, one account per device (docs/operations.md#per-device-access).",
        "# Generated by: poserun access acl" + (f" -c {origin}" if origin else "")
        + (f" --session {session}" if session else ""),
        "# Regenerate after changing the athletes or their gateways, then reload mosquitto (SIGHUP).",
        f"# Session: {session if session else 'any (+)'}. Anonymous clients: no topic at all.",
    ]
    for acc in found:
        lines += ["", f"# {acc.about}", f"user {acc.user}"]
        lines += [f"topic read {t}" for t in acc.read]
        lines += [f"topic write {t}" for t in acc.write]
    return "\n".join(lines) + "\n"


def generate_password() -> str:
    """24 URL-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


def _pbkdf2(password: str, salt: bytes | None, iterations: int) -> tuple[str, str]:
    """(base64 salt, base64 PBKDF2-HMAC-SHA512 hash of 64 bytes), a new salt if None."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return base64.b64encode(salt).decode(), base64.b64encode(digest).decode()


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Mosquitto 2's password hash: ``$7$ITERATIONS$SALT$HASH`` (PBKDF2-HMAC-SHA512, base64)."""
    salt64, digest64 = _pbkdf2(password, salt, iterations)
    return f"$7${iterations}${salt64}${digest64}"


def check_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash (as mosquitto checks it)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise ValueError("not a mosquitto $7$ (PBKDF2-SHA512) hash")
    salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    mine = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]), len(digest))
    return hmac.compare_digest(mine, digest)


def passwords(found: Iterable[Account], previous: Mapping[str, str], rotate: Iterable[str] = ()
              ) -> tuple[dict[str, str], list[str]]:
    """Each account's password: the one it had (``previous``) unless rotated, else a new one.
    Returns them and the names of the accounts that got a new password."""
    users = [a.user for a in found]
    wanted = set(rotate)
    if "all" in wanted:
        wanted = set(users)
    unknown = sorted(wanted - set(users))
    if unknown:
        raise ValueError(f"--rotate names no such account: {', '.join(unknown)} (accounts: {', '.join(users)})")
    out: dict[str, str] = {}
    fresh: list[str] = []
    for user in users:
        if user in previous and user not in wanted:
            out[user] = previous[user]
        else:
            out[user] = generate_password()
            fresh.append(user)
    return out, fresh


def passwd_text(passwords_by_user: Mapping[str, str]) -> str:
    """A Mosquitto ``password_file``: ``user:$7$...`` per account, newly salted."""
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in passwords_by_user.items())


def dynsec_text(found: Iterable[Account], passwords_by_user: Mapping[str, str]) -> str:
    """The dynamic security plugin's file (``plugin_opt_config_file``): per account a client with
    its password (PBKDF2-HMAC-SHA512, a 12-byte salt, as ``mosquitto_ctrl``) and a role of the same
    name: publishClientSend for what it writes, publishClientReceive for what it reads and
    subscribePattern for its ``filters``; no group, nothing allowed by default but unsubscribing."""
    clients: list[dict[str, object]] = []
    roles: list[dict[str, object]] = []
    for a in found:
        salt64, digest64 = _pbkdf2(passwords_by_user[a.user], None, ITERATIONS)
        clients.append({"username": a.user, "textName": a.about, "password": digest64, "salt": salt64,
                        "iterations": ITERATIONS, "roles": [{"rolename": a.user}]})
        acls = [{"acltype": kind, "topic": t, "allow": True}
                for kind, topics in (("publishClientSend", a.write), ("publishClientReceive", a.read),
                                     ("subscribePattern", a.filters))
                for t in dict.fromkeys(topics)]
        roles.append({"rolename": a.user, "textName": a.about, "acls": acls})
    return json.dumps({
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": clients, "roles": roles, "groups": [],
    }, indent=1) + "\n"


def credentials_text(found: Iterable[Account], passwords_by_user: Mapping[str, str], *, broker_url: str,
                     session: str | None) -> str:
    """The credentials to hand out (JSON): per account its user, password and topics."""
    return json.dumps({
        "broker": broker_url,
        "session": session or "any",
        "accounts": [{"user": a.user, "password": passwords_by_user[a.user], "role": a.role, "about": a.about,
                      **({"gateway": a.gateway} if a.gateway else {}),
                      **({"athletes": list(a.athletes)} if a.athletes else {}),
                      "write": list(a.write), "read": list(a.read), "subscribe": list(a.filters)}
                     for a in found],
    }, indent=1) + "\n"


def read_credentials(path: Path) -> dict[str, str]:
    """User -> password from an earlier credentials file (none: empty); ValueError if unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(a["user"]): str(a["password"]) for a in data["accounts"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a poserun credentials file ({exc}); move it away to start afresh") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (0600), replacing the file at once."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def summary(found: Iterable[Account]) -> str:
    """One line per account (no passwords), for the terminal."""
    return "\n".join(f"  {a.user:<24} {a.about}" for a in found)
