"""Fuzz the fusion service and the config loader: mutated frames, meta, status and topics through
``FusionService.handle``, mutated configs through ``poserun.settings.load_settings``; prints what
was refused by reason, internal errors (must be 0), exceptions (must be 0), the tables' sizes and
the process's RSS before and after.

    python bench/fuzz.py [--messages 1000000] [--configs 10000] [--seed 1]

``tests/faults/test_fuzz.py`` runs the same generators at 10^4.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import math
import random
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import ConfigError, SimSettings, load_settings
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.streams import SOURCES, StreamKind

ROOT = Path(__file__).resolve().parents[1]
SESSION = "fz"
TEAM = ("a01", "a02")
_EXTREME = (0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, -(2**63), 10**30)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def service(**processor: Any) -> FusionService:
    settings = load_settings(overrides={"athletes": [{"id": a} for a in TEAM], "processor": processor})
    return FusionService(settings, session=SESSION)


def _seeds() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[bytes]]:
    """Valid frames (binary and JSON) and meta of the team, and a valid status, to mutate."""
    team = SimTeam(SESSION, SimSettings(athletes=2, seed=3, sensors=["imu_foot_left", "imu_foot_right", "imu_pelvis",
                                                                    "insole_left", "insole_right", "keypoints"],
                                       bundle=False))
    metas = [(m.topic, m.payload) for m in team.meta_messages()]
    frames = [(m.topic, m.payload) for m in team.step(4)[0]]
    frames += [(t, wf.encode_json(wf.decode(p))) for t, p in frames[:: 3]]
    hub = SimTeam(SESSION, SimSettings(athletes=2, seed=3))  # bundles (several sources in one message)
    frames += [(m.topic, m.payload) for m in hub.step(4)[0] if m.topic.endswith("/bundle")]
    rng = np.random.default_rng(0)
    frames.append((topics.data_topic(SESSION, "a01", "force_left"),
                   wf.encode(wf.make_frame(StreamKind.FORCE, 0, 0, rng.normal(size=(10, 1)), period_ns=1_000_000))))
    status = [wm.dump(wm.GatewayStatus(gateway="gw", state=s, athletes=list(TEAM), boot_ns=1)) for s in
              ("online", "offline")]
    return frames, metas, status


def _topic(r: random.Random, channel: str, source: str | None) -> str:
    """A topic: the team's, a made-up athlete's (valid-looking), or garbage."""
    roll = r.random()
    if roll < 0.5:
        who = r.choice(TEAM)
    elif roll < 0.9:
        who = f"x{r.randrange(10**6)}"
    else:
        return r.choice(["", "/", "poserun", "poserun/v1", "poserun/v2/fz/a01/data/imu_pelvis", "#", "+/+",
                         "poserun/v1/fz/a01/data/", "poserun/v1/fz//data/keypoints", "poserun/v1/fz/a01/data/sonar",
                         "poserun/v1/fz/_gateway/gw/data/imu_pelvis", "poserun/v1/fz/a01/meta/",
                         "poserun/v1/" + "x" * 300, "poserun/v1/fz/\u00e9/data/insole_left",
                         "poserun/v1/fz/a01/data/insole_left/extra", "poserun/v1/other/a01/data/insole_left"])
    src = source or r.choice(list(SOURCES))
    if channel == "status":
        return topics.status_topic(SESSION, f"g{r.randrange(100)}")
    return f"{topics.ROOT}/{topics.PROTOCOL}/{SESSION}/{who}/{channel}/{src}"


def _mutate_bytes(r: random.Random, b: bytes) -> bytes:
    a = bytearray(b)
    op = r.randrange(7)
    if op == 0 and a:  # flip bytes
        for _ in range(r.randint(1, 8)):
            a[r.randrange(len(a))] = r.randrange(256)
    elif op == 1:  # truncate
        del a[r.randrange(len(a) + 1):]
    elif op == 2:  # extend
        a += r.randbytes(r.randint(1, 64))
    elif op == 3 and len(a) >= 32 and a[:2] == b"PR":  # an extreme header field
        off, fmt = r.choice([(2, "<B"), (3, "<B"), (4, "<B"), (6, "<H"), (8, "<I"), (12, "<I"), (16, "<q"),
                             (24, "<q")])
        size = struct.calcsize(fmt)
        value = r.choice(_EXTREME) % (256 ** size)
        if fmt.endswith("q") and value >= 2**63:
            value -= 2**64
        struct.pack_into(fmt, a, off, value)
    elif op == 4 and a:  # a NaN or an infinity in the body
        at = r.randrange(max(1, len(a) - 4))
        a[at:at + 4] = struct.pack("<f", r.choice([math.nan, math.inf, -math.inf]))
    elif op == 5:  # random bytes of the same length
        a = bytearray(r.randbytes(len(a)))
    else:  # JSON-ish: a token swapped
        text = a.decode("utf-8", "replace")
        for old, new in r.sample([("1", "1e999"), (",", ",,"), ("[", "[[" * 50), ("\"v\":1", "\"v\":true"),
                                  ("0", "-0.0"), (":", ":null,\"z\":"), ("]", "]]"), ("\"", "'")], 2):
            text = text.replace(old, new, 1)
        a = bytearray(text.encode())
    return bytes(a)


def _mutate_json(r: random.Random, payload: bytes) -> bytes:
    """A valid JSON document with one value replaced by something odd."""
    try:
        obj = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(obj, dict) and obj:
        key = r.choice(list(obj))
        obj[key] = r.choice([None, "", "x" * 500, -1, 0, 1e308, 2**70, True, [], {}, [1, "a"], {"k": [None]},
                             list(range(2000)), [[0.5] * 6] * 3])
        if r.random() < 0.2:
            obj[f"extra{r.randrange(10)}"] = 1
    return json.dumps(obj).encode()


def messages(n: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """``n`` fuzzed (topic, payload) messages: frames, meta, status, on the team's and made-up topics."""
    r = random.Random(seed)
    frames, metas, status = _seeds()
    for _ in range(n):
        roll = r.random()
        if roll < 0.55:  # a frame, mutated (a few left valid), on its topic or another
            topic, payload = r.choice(frames)
            if r.random() < 0.8:
                payload = _mutate_bytes(r, payload)
            if r.random() < 0.5:
                topic = _topic(r, "data", topic.rsplit("/", 1)[-1] if r.random() < 0.7 else None)
        elif roll < 0.8:  # meta: valid, mutated JSON or mutated bytes
            topic, payload = r.choice(metas)
            payload = r.choice([payload, _mutate_json(r, payload), _mutate_bytes(r, payload)])
            if r.random() < 0.5:
                topic = _topic(r, "meta", topic.rsplit("/", 1)[-1] if r.random() < 0.7 else None)
        elif roll < 0.9:  # gateway status
            payload = r.choice([*status, _mutate_json(r, r.choice(status)), _mutate_bytes(r, r.choice(status))])
            topic = _topic(r, "status", None)
        elif roll < 0.99:  # garbage on any topic
            topic = _topic(r, r.choice(["data", "meta", "meta_request", "truth", "records"]), None)
            payload = r.randbytes(r.randrange(300))
        else:  # something large
            topic = _topic(r, r.choice(["data", "meta", "status"]), None)
            payload = (b"{" if r.random() < 0.5 else b"PR") + r.randbytes(r.choice([70_000, 300_000]))
        yield topic, payload


def fuzz_service(n: int, seed: int = 1, svc: FusionService | None = None,
                 progress: Callable[[int], object] | None = None) -> dict[str, Any]:
    """``n`` messages through ``handle``: exceptions escaping (must be 0), internal errors (must be
    0), what was refused, the tables' sizes; ``progress(k)`` every 100 000 messages."""
    svc = svc if svc is not None else service(max_athletes=200)
    escaped: Counter[str] = Counter()
    t = 1_000_000_000
    for k, (topic, payload) in enumerate(messages(n, seed)):
        if progress is not None and k and not k % 100_000:
            progress(k)
        t += 100_000  # 10 000 messages a second of arrival time
        try:
            svc.handle(topic, payload, t)
        except Exception as exc:  # handle() must never raise
            escaped[type(exc).__name__] += 1
    snap = svc.snapshot()
    return {"messages": n, "escaped": dict(escaped), "internal_errors": snap["rejected"].get("internal_error", 0),
            "rejected": snap["rejected"], "frames_taken": snap["totals"].get("frames", 0),
            "tables": {"athletes": len(svc.athletes), "entries": len(svc.table), "counters": len(svc.counters),
                       "meta": len(svc.meta), "cursors": len(svc.cursors), "routes": len(svc._routes),
                       "topic_cache": len(svc._topics), "asked": len(svc._asked), "epochs": len(svc._epochs),
                       "caps": svc.table.caps, "evicted": dict(svc.table.evicted)}}


_ODD = (None, "", "x" * 1000, -1, 0, 1, 1e308, math.nan, math.inf, True, [], {}, [1, 2], {"a": 1}, "mqtt://",
        "mqtt://h:99999", "sqlite:///", 2**70, "\x00", "1e3", "-", [None], {"type": None})


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _set(root: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    node = root
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return root


def configs(n: int, seed: int = 1) -> Iterator[tuple[str, str, dict[str, str] | None]]:
    """``n`` malformed configs as (form, text, environment): structured mutations of
    config/track-team.yaml dumped as YAML or JSON, text mutations of its YAML and JSON, odd
    ``POSERUN__`` environment values."""
    r = random.Random(seed)
    text = (ROOT / "config" / "track-team.yaml").read_text()
    base = yaml.safe_load(text)
    as_json = json.dumps(base, indent=1)
    paths = list(_paths(base))
    for _ in range(n):
        roll = r.random()
        if roll < 0.5:
            doc = copy.deepcopy(base)
            for _ in range(r.randint(1, 3)):
                live = list(_paths(doc)) or paths
                path = r.choice(live)
                doc = _set(doc, path, copy.deepcopy(r.choice(_ODD)), delete=bool(path) and r.random() < 0.2)
            form = r.choice(["yaml", "json"])
            body = yaml.safe_dump(doc) if form == "yaml" else json.dumps(doc, allow_nan=True)
            yield form, body, None
        elif roll < 0.9:
            body = text if r.random() < 0.6 else as_json
            chars = list(body)
            for _ in range(r.randint(1, 6)):
                op = r.randrange(4)
                at = r.randrange(len(chars) + 1)
                if op == 0 and chars:
                    del chars[at:at + r.randint(1, 20)]
                elif op == 1:
                    chars[at:at] = r.choice([":", "- ", "{", "[", "}", "]", "&a ", "*a", "!!python/object ", "\t",
                                             "%YAML 1.1\n", "\x00", "'", "\"", "\n  ", "? ", "|", ">", "~", "<<: *a"])
                elif op == 2:
                    lines = "".join(chars).splitlines(keepends=True)
                    if len(lines) > 2:
                        i, j = r.randrange(len(lines)), r.randrange(len(lines))
                        lines[i], lines[j] = lines[j], lines[i]
                    chars = list("".join(lines))
                else:
                    chars[at:at] = list(r.choice(["1e999", "-1", "null", "[]", "{}", "nan", ".inf", "yes", "0x1F"]))
            yield "text", "".join(chars), None
        else:
            key = r.choice(["POSERUN__PROCESSOR__MAX_ATHLETES", "POSERUN__BROKER__URL", "POSERUN__SESSION__ID",
                            "POSERUN__PROCESSOR__CONTACT__ON_BW", "POSERUN__SINKS", "POSERUN__", "POSERUN__X__Y",
                            "POSERUN__BROKER__KEEPALIVE_S", "POSERUN__ATHLETES__0__ID", "POSERUN____"])
            value = r.choice(["", "-1", "1e999", "nan", "[", "{}", "[1,2]", "null", "x" * 500, "\u00e9", "0", "true"])
            yield "env", text, {key: value}


def fuzz_configs(n: int, seed: int = 1) -> dict[str, Any]:
    """``n`` configs through ``load_settings``: valid, refused with a ConfigError, or anything else (must be 0)."""
    outcome: Counter[str] = Counter()
    other: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "poserun.yaml"
        for form, body, env in configs(n, seed):
            path.write_text(body, encoding="utf-8", errors="surrogatepass")
            try:
                load_settings(path, environ=env or {})
                outcome[f"{form}: valid"] += 1
            except ConfigError:
                outcome[f"{form}: ConfigError"] += 1
            except Exception as exc:  # must not happen: only ConfigError is documented
                name = f"{type(exc).__name__}"
                outcome[f"{form}: {name}"] += 1
                other.setdefault(name, f"{exc!s:.300} <- {body[:300]!r} env={env}")
    return {"configs": n, "outcomes": dict(sorted(outcome.items())), "other_exceptions": other}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--configs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # (the service logs the first refusals of each reason)
    svc = service(max_athletes=200)
    for _ in messages(1000, args.seed + 1):  # warm: imports, compiled kernels, first tables
        pass
    fuzz_service(2000, args.seed + 1, svc)
    gc.collect()
    before = rss_mib()
    t0 = time.perf_counter()
    trace = {0: round(before, 1)}
    result = fuzz_service(args.messages, args.seed, svc, progress=lambda k: trace.update({k: round(rss_mib(), 1)}))
    seconds = time.perf_counter() - t0
    gc.collect()
    result["rss_mib"] = {"before": round(before, 1), "after": round(rss_mib(), 1), "by_messages": trace}
    result["seconds"] = round(seconds, 1)
    print(json.dumps(result, indent=1))
    t0 = time.perf_counter()
    cfg = fuzz_configs(args.configs, args.seed)
    cfg["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(cfg, indent=1))


if __name__ == "__main__":
    main()
