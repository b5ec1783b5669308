"""Fuzzed payloads and malformed configs (bench/fuzz.py's generators, at 10^4): nothing but counted
refusals and ConfigErrors, and tables that stay within their bounds. ``bench/fuzz.py`` runs 10^6."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from poserun.services.fusion import FusionService
from poserun.services.mqtt_publisher import Publisher
from poserun.settings import BrokerSettings, load_settings
from poserun.wire.mqtt import encode_publish
from tests.conftest import CEILING, until
from tests.faults.tools import mosquitto

N = 10_000


def bench_fuzz() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("bench_fuzz", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matches(pattern: str, topic: str) -> bool:
    """Whether an MQTT filter with ``+`` levels takes ``topic`` (what the broker delivers)."""
    want, got = pattern.split("/"), topic.split("/")
    return len(want) == len(got) and all(w in ("+", g) and (w != "+" or g) for w, g in zip(want, got, strict=True)) \
        and not any(c in topic for c in "+#\x00")


def assert_bounded(tables: dict[str, Any]) -> None:
    caps = tables["caps"]
    assert tables["entries"] <= sum(caps.values())
    assert tables["athletes"] <= caps["configured"] + caps["unknown"]
    for name in ("counters", "meta", "cursors", "asked"):
        assert tables[name] <= 10 * tables["entries"], name  # at most one per source of an entry
    assert tables["routes"] <= tables["counters"] and tables["topic_cache"] <= FusionService.TOPIC_CACHE


@pytest.mark.parametrize("accept", [True, False], ids=["unknown-accepted", "unknown-refused"])
def test_fuzzed_payloads_are_refused_with_a_reason_and_leave_the_tables_bounded(accept: bool) -> None:
    fz = bench_fuzz()
    logging.getLogger("poserun.services.fusion").setLevel(logging.ERROR)
    try:
        result = fz.fuzz_service(N, 7, fz.service(max_athletes=100, accept_unknown_athletes=accept))
    finally:
        logging.getLogger("poserun.services.fusion").setLevel(logging.NOTSET)
    assert result["escaped"] == {} and result["internal_errors"] == 0, result
    assert sum(result["rejected"].values()) > N / 2 and result["frames_taken"] > 0
    assert_bounded(result["tables"])


def test_fuzzed_messages_through_the_broker_cost_the_service_nothing_but_their_refusal() -> None:
    fz = bench_fuzz()
    with mosquitto() as m:
        svc = FusionService(load_settings(overrides={"broker": {"url": m.url}, "athletes": [{"id": "a01"}],
                                                     "processor": {"max_athletes": 100}}), session="fz")
        msgs = [(t, p) for t, p in fz.messages(3000, 11) if any(matches(f, t) for f in svc.filters())]

        async def main() -> None:
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(stop, ready))
            await asyncio.wait_for(ready.wait(), CEILING)

            def publish() -> None:
                pub = Publisher(BrokerSettings(url=m.url), "fuzz")
                pub.connect()
                for k in range(0, len(msgs), 200):
                    pub.send_packets([encode_publish(t, p) for t, p in msgs[k:k + 200]])
                    pub.pump()
                pub.flush()
                pub.close()

            await asyncio.to_thread(publish)
            await until(lambda: svc.snapshot()["ingest"]["received"] >= len(msgs), "every fuzzed message")
            stop.set()
            await task

        asyncio.run(main())
    snap = svc.snapshot()
    assert snap["rejected"].get("internal_error", 0) == 0
    assert snap["ingest"]["received"] == len(msgs) and snap["ingest"]["overflow"] == 0
    assert len(svc.table) <= sum(svc.table.caps.values())


def test_malformed_configs_give_only_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """10^4 mutations of config/track-team.yaml (YAML and JSON, by structure and by text, and odd
    POSERUN__ variables): each loads or is a ConfigError naming the problem, never another exception."""
    fast = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader  # (libyaml: the same YAML, 10x faster)
    monkeypatch.setattr(yaml, "safe_load", lambda text: yaml.load(text, Loader=fast))
    result = bench_fuzz().fuzz_configs(N, 3)
    assert result["other_exceptions"] == {}, result
    assert sum(n for k, n in result["outcomes"].items() if k.endswith("ConfigError")) > N / 2
