"""Shared fixtures: a real MQTT broker for the session, unique session ids per test."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from poserun.services.broker import embedded_broker, mosquitto_broker
from poserun.services.mqtt import broker_answers
from poserun.settings import BrokerSettings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BACH = SHARED / "data" / "real" / "bach2022"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """Mosquitto on 127.0.0.1:1883 if it answers; else a private mosquitto; else amqtt."""
    if broker_answers("127.0.0.1", 1883, timeout=1.0):
        yield "mqtt://127.0.0.1:1883"
        return
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(mosquitto_broker())
        except (FileNotFoundError, RuntimeError):
            url = stack.enter_context(embedded_broker())
        yield url


@pytest.fixture(scope="session")
def private_mosquitto() -> Iterator[str]:
    """A mosquitto of the tests' own with a deep queue (for high-rate tests)."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("needs the mosquitto binary (Debian package 'mosquitto'); .ci/run installs it")
    with mosquitto_broker() as url:
        yield url


@pytest.fixture
def broker(broker_url: str) -> BrokerSettings:
    return BrokerSettings(url=broker_url)


@pytest.fixture
def session_id() -> str:
    """A unique session id: every test has its own topic prefix."""
    return f"t{uuid.uuid4().hex[:12]}"
