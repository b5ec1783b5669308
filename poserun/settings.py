"""One pydantic model tree for every poserun setting, loaded from YAML plus environment.

Environment overrides use ``POSERUN__`` and ``__`` between levels, e.g.
``POSERUN__BROKER__URL=mqtt://10.0.0.2:1883`` or ``POSERUN__SIM__ATHLETES=4``;
values are read as YAML scalars. Invalid config raises :class:`ConfigError`
whose message names the field and says how to fix it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from poserun.wire.coach import CADENCE_SPM, SUPPORT_TIME_S
from poserun.wire.streams import SOURCES
from poserun.wire.topics import check_id

ENV_PREFIX = "POSERUN__"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class BrokerSettings(_Model):
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt://host:port or mqtts://host:port for TLS",
    )
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (system CAs if unset)")
    client_id_prefix: str = "poserun"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError("use mqtt://HOST:PORT or mqtts://HOST:PORT")
        try:
            _ = u.port
        except ValueError:
            raise ValueError("the port must be a number 1-65535") from None
        return v

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        u = urlparse(self.url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"


class SessionSettings(_Model):
    id: str = Field("demo", description="session id used in topics: letters, digits, '_', '.', '-'")
    name: str = "Demo session"
    location: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_id(v, "session")


class DeviceSettings(_Model):
    source: str = Field(description=f"one of {', '.join(SOURCES)}")
    device: str | None = Field(None, description="make/model/serial")
    gateway: str | None = Field(None, description="id of the gateway that publishes this device's stream, when "
                                                  "not the athlete's gateway (e.g. a camera's)")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"unknown source; use one of {', '.join(SOURCES)}")
        return v

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str | None) -> str | None:
        return None if v is None else check_id(v, "gateway")


class Targets(_Model):
    """An athlete's targets, drawn as bands on the board and judged in the report (docs/configuration.md
    says where the defaults come from); ``null`` for no target."""

    cadence_spm: tuple[float, float] | None = Field(
        (170.0, 190.0), description="cadence band [low, high], steps/min (60-300): the spec's 'about 180' +- 10")
    support_time_s: float | None = Field(
        0.25, ge=SUPPORT_TIME_S[0], le=SUPPORT_TIME_S[1],
        description="longest support time, s: between the spec's elite (0.15-0.20) and recreational (0.25-0.30) "
                    "ranges")
    forced_share: float | None = Field(
        0.10, ge=0.0, le=1.0, description="largest share of forced landings (0-1): 2 of the board's 20 steps")

    @field_validator("cadence_spm")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return v
        lo, hi = v
        if not (CADENCE_SPM[0] <= lo <= CADENCE_SPM[1] and CADENCE_SPM[0] <= hi <= CADENCE_SPM[1]):
            raise ValueError(f"use a band within {CADENCE_SPM[0]:g}-{CADENCE_SPM[1]:g} steps/min")
        if not lo < hi:
            raise ValueError(f"the low end ({lo:g}) must be below the high end ({hi:g})")
        return v

    def as_dict(self) -> dict[str, Any]:
        """The targets as a coach message and a record carry them (``cadence_spm`` a list)."""
        return {"cadence_spm": list(self.cadence_spm) if self.cadence_spm else None,
                "support_time_s": self.support_time_s, "forced_share": self.forced_share}


class AthleteSettings(_Model):
    id: str = Field(description="athlete id used in topics")
    name: str = ""
    body_mass_kg: Annotated[float, Field(gt=20, lt=250, description="body mass in kg (20-250)")] = 68.0
    leg_length_m: Annotated[float, Field(gt=0.5, lt=1.4, description="greater trochanter to floor, m")] = 0.9
    devices: list[DeviceSettings] = Field(default_factory=list)
    profile: str | None = Field(None, description="technique profile when simulated")
    gateway: str | None = Field(None, description="id of the gateway that carries this athlete's devices "
                                                  "(default: the athlete's id; poserun access gives it their topics)")
    targets: Targets = Field(default_factory=Targets, description="cadence band, support time and forced-landing "
                                                                  "share the board and report judge against")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_id(v, "athlete")

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str | None) -> str | None:
        return None if v is None else check_id(v, "gateway")

    @field_validator("devices")
    @classmethod
    def _one_device_per_source(cls, v: list[DeviceSettings]) -> list[DeviceSettings]:
        sources = [d.source for d in v]
        dup = sorted({s for s in sources if sources.count(s) > 1})
        if dup:
            raise ValueError(f"one device per source (its topic); repeated: {', '.join(dup)}")
        return v

    def gateway_of(self, source: str | None = None) -> str:
        """The gateway that publishes ``source`` (or, without one, the athlete's gateway)."""
        for d in self.devices:
            if d.source == source and d.gateway is not None:
                return d.gateway
        return self.gateway or self.id


class ContactSettings(_Model):
    on_bw: Annotated[float, Field(gt=0, lt=1)] = 0.10
    off_bw: Annotated[float, Field(gt=0, lt=1)] = 0.05
    min_stance_s: Annotated[float, Field(gt=0, lt=2)] = 0.08
    min_swing_s: Annotated[float, Field(gt=0, lt=2)] = 0.10


class ProcessorSettings(_Model):
    contact: ContactSettings = Field(default_factory=ContactSettings)
    forced_landing_ratio: Annotated[float, Field(gt=1.0, lt=5.0)] = Field(
        1.3, description="forced landing: foot landing velocity > ratio x body fall velocity")
    heel_contact_bw: Annotated[float, Field(gt=0, lt=1)] = 0.05
    default_oscillation_m: Annotated[float, Field(gt=0, lt=0.3)] = Field(
        0.05, description="vertical oscillation for the body fall velocity model when nothing measures it")
    score_weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="pose score weight per rule R1_..R10_ (see docs/processor.md); default all 1")
    cadence_window_steps: Annotated[int, Field(ge=1, le=64)] = 8
    reorder_window_ms: Annotated[float, Field(ge=0, le=5000)] = 150.0
    accept_unknown_athletes: bool = Field(
        True, description="route frames of athletes not listed in 'athletes' with default body data"
    )
    max_athletes: Annotated[int, Field(ge=1, le=100_000)] = Field(
        2000, description="cap on athlete states (bounds memory against stray topics)"
    )
    max_frame_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    ingest_backlog_mib: Annotated[int, Field(ge=1, le=4096)] = Field(
        64, description="messages waiting in the ingest (payload, topic and 200 bytes each) before the oldest of "
                        "the biggest athlete's lane are shed, counted: 64 MiB is about 4 s of 100 athletes' full "
                        "sensor sets a message per sensor, 8 s in bundles (docs/reliability.md)")


class SinkSettings(_Model):
    type: str = Field(description="a built-in sink (jsonl, mqtt) or an entry point in 'poserun.sinks'")
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    options: dict[str, Any] = Field(default_factory=dict)


class SimSettings(_Model):
    athletes: Annotated[int, Field(ge=1, le=500)] = 12
    profiles: list[str] = Field(
        default_factory=lambda: ["pose", "heel_striker", "forced_lander", "overstrider", "slow_cadence"],
        description="profiles assigned in turn to the simulated athletes",
    )
    sensors: list[str] = Field(
        default_factory=lambda: ["imu_foot_left", "imu_foot_right", "insole_left", "insole_right",
                                 "keypoints"]
    )
    imu_hz: Annotated[float, Field(gt=0, le=4000)] = 400.0
    insole_hz: Annotated[float, Field(gt=0, le=1000)] = 100.0
    camera_fps: Annotated[float, Field(gt=0, le=500)] = 60.0
    frame_ms: Annotated[float, Field(ge=1, le=1000)] = 10.0
    speed: Annotated[float, Field(gt=0, le=1000)] = 1.0
    seed: int = 1
    forced_share: Annotated[float, Field(ge=0, le=1)] = 0.4
    json_frames: bool = False
    bundle: bool = Field(True, description="one message per athlete per frame period with all its sensors' "
                         "frames (an athlete-worn hub, docs/protocol.md 'Bundles'); false: a message per sensor. "
                         "Sensors with a clock offset or drift of their own are sent on their own")
    truth: bool = False
    clock_offsets_ms: dict[str, Annotated[float, Field(ge=0, le=10_000)]] = Field(
        default_factory=dict,
        description="per sensor, how far its gateway clock runs ahead of the insoles' (ms, >= 0)")
    clock_drift_ppm: dict[str, Annotated[float, Field(ge=-1000, le=1000)]] = Field(
        default_factory=dict, description="per sensor, clock drift in parts per million")
    gateway_id: str = "sim"

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, v: list[str]) -> list[str]:
        from poserun.services.sim.profiles import PROFILES

        bad = [p for p in v if p not in PROFILES]
        if bad or not v:
            raise ValueError(f"unknown profile(s) {bad}; choose from {', '.join(PROFILES)}")
        return v

    @field_validator("sensors")
    @classmethod
    def _sensors(cls, v: list[str]) -> list[str]:
        allowed = {"imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints", "imu_pelvis"}
        bad = [s for s in v if s not in allowed]
        if bad or not v:
            raise ValueError(f"unknown sensor(s) {bad}; the simulator has {', '.join(sorted(allowed))}")
        return v


class NatsSettings(_Model):
    """Fusion workers over NATS JetStream (``poserun worker``, ``poserun jetstream setup``; docs/scaling.md)."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"],
                               description="NATS URLs of the cluster (nats://HOST:PORT or tls://HOST:PORT); "
                                           "the client fails over between them")
    partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        4, description="partitions of athletes (the data stream's subject mapping, a durable consumer and a lease "
                       "each): at least the most workers that should share the work; fixed when the stream is made")
    replicas: Annotated[int, Field(ge=1, le=5)] = Field(
        3, description="replicas of the streams, consumers and lease buckets (1 on a single server)")
    lease_ttl_s: Annotated[float, Field(ge=0.5, le=60)] = Field(
        2.0, description="a partition's lease lives this long unless renewed (every quarter of it): how long a "
                         "dead worker's partitions wait for a standby")
    max_age_s: Annotated[float, Field(ge=0)] = Field(
        86400.0, description="how long the data and records streams keep messages (0: for ever); a take-over "
                             "replays a partition from the oldest message kept")
    duplicate_window_s: Annotated[float, Field(gt=0, le=86400)] = Field(
        600.0, description="the records stream drops a record whose id it stored this recently (a take-over "
                           "re-emits what the dead worker had not acknowledged)")

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one NATS server")
        for url in v:
            u = urlparse(url)
            if u.scheme not in ("nats", "tls") or not u.hostname:
                raise ValueError(f"{url!r}: use nats://HOST:PORT or tls://HOST:PORT")
            try:
                _ = u.port
            except ValueError:
                raise ValueError(f"{url!r}: the port must be a number 1-65535") from None
        return v


class Settings(_Model):
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    athletes: list[AthleteSettings] = Field(default_factory=list)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    sinks: list[SinkSettings] = Field(default_factory=lambda: [SinkSettings(type="jsonl")])
    sim: SimSettings = Field(default_factory=SimSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)

    @field_validator("athletes")
    @classmethod
    def _unique(cls, v: list[AthleteSettings]) -> list[AthleteSettings]:
        ids = [a.id for a in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"athlete ids must be unique; repeated: {', '.join(dup)}")
        return v

    def athlete(self, athlete_id: str) -> AthleteSettings | None:
        for a in self.athletes:
            if a.id == athlete_id:
                return a
        return None


class ConfigError(Exception):
    """Invalid configuration; the message names the field and the fix."""


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            node[key] = nxt
        node = nxt
    node[path[-1]] = value


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``POSERUN__A__B=value`` pairs as a nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for key, raw in (environ if environ is not None else os.environ).items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not path:  # (POSERUN____: no section named, as POSERUN__)
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        _set_path(out, path, value)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _field_help(loc: tuple[Any, ...]) -> str | None:
    """The description of the field at ``loc`` in the Settings tree, if it has one."""
    model: Any = Settings
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        ann = info.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return info.description if info is not None else None


def _explain(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        got = err.get("input")
        hint = ""
        if err.get("type") == "extra_forbidden":
            hint = " (unknown key: check its spelling against config/poserun.schema.json)"
        elif err.get("type") == "missing":
            hint = " (add this key)"
        described = _field_help(tuple(err.get("loc", ())))
        if described and not hint:
            hint = f"; expected: {described}"
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r:.60})"
        lines.append(f"{origin}: {loc}: {msg}{shown}{hint}")
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"... and {more} more")
    return "\n".join(lines)


def load_settings(
    path: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load YAML (optional), then environment, then explicit overrides (CLI flags)."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{origin}: cannot read the file: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: the top level must be a mapping of sections (broker, session, ...)")
        data = loaded
    env = env_overrides(environ)
    if env:
        data = _merge(data, env)
        origin += " + POSERUN__ environment"
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from None


def json_schema() -> str:
    """The JSON schema of the config file (written to config/poserun.schema.json)."""
    return json.dumps(Settings.model_json_schema(), indent=2, sort_keys=True) + "\n"
