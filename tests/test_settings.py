from __future__ import annotations

from pathlib import Path

import pytest

from poserun.cli import main
from poserun.settings import ConfigError, env_overrides, json_schema, load_settings
from tests.conftest import ROOT


def test_example_configs_are_valid() -> None:
    for name in ("demo.yaml", "track-team.yaml"):
        s = load_settings(ROOT / "config" / name)
        assert s.session.id
    team = load_settings(ROOT / "config" / "track-team.yaml")
    assert team.broker.tls and team.broker.port == 8883
    assert [a.id for a in team.athletes] == ["anna", "ben"]


def test_schema_file_is_current() -> None:
    assert (ROOT / "config" / "poserun.schema.json").read_text() == json_schema(), (
        "regenerate with: poserun config schema -o config/poserun.schema.json")


def test_environment_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("sim:\n  athletes: 3\nbroker:\n  url: mqtt://a:1\n")
    env = {"POSERUN__SIM__ATHLETES": "5", "POSERUN__BROKER__PASSWORD": "s3cret", "OTHER": "x"}
    s = load_settings(f, environ=env)
    assert s.sim.athletes == 5 and s.broker.url == "mqtt://a:1"
    assert s.broker.password is not None and s.broker.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert env_overrides({"POSERUN__PROCESSOR__CONTACT__ON_BW": "0.2"}) == {
        "processor": {"contact": {"on_bw": 0.2}}}


@pytest.mark.parametrize(("text", "needle"), [
    ("athletes:\n  - id: a\n    body_mass_kg: 5\n", "athletes.0.body_mass_kg"),
    ("athletes:\n  - {id: a}\n  - {id: a}\n", "unique"),
    ("athletes:\n  - {id: 'a/b'}\n", "athletes.0.id"),
    ("broker:\n  url: http://x\n", "broker.url"),
    ("broker:\n  url: mqtt://x:99999\n", "port"),
    ("brokr: {}\n", "unknown key"),
    ("sim:\n  profiles: [fast]\n", "sim.profiles"),
    ("sim:\n  athletes: 0\n", "sim.athletes"),
    ("session:\n  id: ''\n", "session.id"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("a: [\n", "not valid YAML"),
    ("athletes:\n  - {id: a, devices: [{source: sonar}]}\n", "devices.0.source"),
])
def test_invalid_config_names_the_field(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(f)
    assert needle in str(info.value)
    assert str(f) in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings("/nonexistent/poserun.yaml")


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(ROOT / "config" / "demo.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("sim:\n  speed: -1\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sim.speed" in err and "greater than 0" in err
    bad.write_text("sinks:\n  - type: carrier_pigeon\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "carrier_pigeon" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "needle"), [
    ("{type: haptic, options: {forced_landing: {pattern: samba}}}", "sinks[0] (haptic): 1 validation error"),
    ("{type: mqtt, options: {qos: 5}}", "sinks[0] (mqtt): qos must be 0, 1 or 2"),
    ("{type: jsonl, options: {formatt: text}}", "sinks[0] (jsonl): sink 'jsonl': bad options ['formatt']"),
    ("{type: store, options: {max_backlog: 0}}", "sinks[0] (store): max_backlog must be at least 1"),
])
def test_config_check_validates_each_sinks_options(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  options: str, needle: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sinks:\n  - {options}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert needle in capsys.readouterr().err


def test_athlete_targets_default_validate_and_reach_the_sinks() -> None:
    from poserun.settings import AthleteSettings, Targets
    from poserun.sinks.base import sink_context

    t = AthleteSettings(id="a1").targets
    assert t.as_dict() == {"cadence_spm": [170.0, 190.0], "support_time_s": 0.25, "forced_share": 0.10}
    assert Targets(cadence_spm=None, support_time_s=None, forced_share=None).as_dict() == {
        "cadence_spm": None, "support_time_s": None, "forced_share": None}
    for bad in ({"cadence_spm": [190, 170]}, {"cadence_spm": [170, 170]}, {"cadence_spm": [20, 170]},
                {"cadence_spm": [170]}, {"support_time_s": 0}, {"support_time_s": 3}, {"forced_share": 1.2},
                {"forced_share": -0.1}, {"speed": 3}):
        with pytest.raises(ValueError):
            Targets.model_validate(bad)
    s = load_settings(overrides={"athletes": [{"id": "a1", "targets": {"cadence_spm": [175, 185]}}, {"id": "a2"}]})
    ctx = sink_context(s)
    assert ctx["athlete_targets"]["a1"]["cadence_spm"] == [175.0, 185.0]
    assert ctx["athlete_targets"]["a2"] == t.as_dict()


def test_bad_targets_in_a_config_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("athletes:\n  - id: a1\n    targets: {cadence_spm: [190, 170]}\n")
    with pytest.raises(ConfigError, match="targets"):
        load_settings(cfg)
