"""Shared fixtures: a real MQTT broker for the session, unique session ids per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poserun.services.broker import embedded_broker, mosquitto_broker, mosquitto_exe
from poserun.services.mqtt import broker_answers
from poserun.settings import BrokerSettings

#: In CI (``CI=true``, as .ci/run is called) a test whose server or browser is missing fails
#: instead of skipping, so a green CI has tested every component it claims to.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


#: Seconds a test waits for a readiness signal (a line, a port, a file, a message): only a hung
#: process reaches it, never a slow machine. Performance is measured in bench/, not here.
CEILING = 300.0
PAGE_MS = int(CEILING * 1000)  # the same, for Playwright's waits


def wait_until(predicate: Callable[[], object], what: str, ceiling: float = CEILING) -> None:
    """Poll ``predicate`` until it is true; fail saying ``what`` was awaited if the ceiling passes."""
    deadline = time.monotonic() + ceiling
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {ceiling:.0f} s for {what}", pytrace=False)
        time.sleep(0.02)


async def until(predicate: Callable[[], object], what: str, ceiling: float = CEILING) -> None:
    """:func:`wait_until` for a test's event loop (the service under test keeps running)."""
    deadline = time.monotonic() + ceiling
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {ceiling:.0f} s for {what}", pytrace=False)
        await asyncio.sleep(0.02)


def frames_taken(service: Any, sent: int) -> Callable[[], bool]:
    """True once the fusion service has counted ``sent`` frames (what a gateway published)."""
    return lambda: service.snapshot()["totals"].get("frames", 0) >= sent


def require(present: bool, what: str) -> None:
    """Skip the calling test unless ``present`` (fail instead, in CI). ``what`` says what is missing."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {what}", pytrace=False)
    pytest.skip(what)


ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BACH = SHARED / "data" / "real" / "bach2022"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """Mosquitto on 127.0.0.1:1883 if it answers; else a private mosquitto; else amqtt (not in CI)."""
    if broker_answers("127.0.0.1", 1883, timeout=1.0):
        yield "mqtt://127.0.0.1:1883"
        return
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(mosquitto_broker())
        except OSError:  # not installed, or it did not start
            if IN_CI:
                pytest.fail("CI must test against Mosquitto, but none answers on 127.0.0.1:1883 and the "
                            "mosquitto binary is missing", pytrace=False)
            url = stack.enter_context(embedded_broker())
        yield url


@pytest.fixture(scope="session")
def private_mosquitto() -> Iterator[str]:
    """A mosquitto of the tests' own with a deep queue (for high-rate tests)."""
    require(mosquitto_exe() is not None,
            "the mosquitto binary is missing (Debian package 'mosquitto'; .ci/run installs it)")
    with mosquitto_broker() as url:
        yield url


@pytest.fixture
def broker(broker_url: str) -> BrokerSettings:
    return BrokerSettings(url=broker_url)


@pytest.fixture
def session_id() -> str:
    """A unique session id: every test has its own topic prefix."""
    return f"t{uuid.uuid4().hex[:12]}"
