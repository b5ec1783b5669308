"""Every record the processor emits has exactly the keys of processors/records.py, and the
pydantic models and JSON schema derived from it agree with it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from poserun.processors.records import KEYS, REQUIRED, SERVICE_KEYS
from poserun.records import LandingRecord, StanceRecord, json_schema
from poserun.services.validate import SUBSETS, run_session

MODELS = {"landing": LandingRecord, "stance": StanceRecord}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    out: list[dict] = []
    for sensors in (SUBSETS["all sensors"], SUBSETS["sacrum IMU only"], ["imu_foot_left", "insole_right"]):
        recs, _truth, _profiles = run_session(sensors, 4.0, 11, per_profile=1)
        out += recs
    return out


def test_emitted_keys_are_the_schema(records: list[dict]) -> None:
    seen: dict[str, set[str]] = {"landing": set(), "stance": set()}
    for r in records:
        kind = r["type"]
        keys = set(r)
        assert keys <= KEYS[kind], f"{kind} keys not in processors/records.py: {sorted(keys - KEYS[kind])}"
        assert REQUIRED[kind] <= keys, f"{kind} record lacks {sorted(REQUIRED[kind] - keys)}"
        seen[kind] |= keys
        MODELS[kind].model_validate(r)  # types too
    for kind in seen:  # and no key in the schema that nothing emits
        assert seen[kind] == KEYS[kind], f"{kind}: never emitted {sorted(KEYS[kind] - seen[kind])}"


def test_models_are_made_from_the_typed_dicts() -> None:
    for kind, model in MODELS.items():
        assert set(model.model_fields) == KEYS[kind]
        assert {k for k, f in model.model_fields.items() if f.is_required()} == REQUIRED[kind] | SERVICE_KEYS
    schema = json_schema()
    assert {d["title"] for d in schema["$defs"].values()} >= {"LandingRecord", "StanceRecord", "PressureMap"}


def test_a_key_outside_the_schema_is_refused(records: list[dict]) -> None:
    stance = next(r for r in records if r["type"] == "stance")
    with pytest.raises(ValidationError):
        StanceRecord.model_validate({**stance, "support_time": 0.2})
    for key in ("cadence_spm", "session", "emitted_ns", "id"):
        with pytest.raises(ValidationError):
            StanceRecord.model_validate({k: v for k, v in stance.items() if k != key})
    with pytest.raises(ValidationError):
        StanceRecord.model_validate({**stance, "support_time_s": 0.0})


def _coach(**kw: object) -> dict:
    return {"type": "coach", "athlete": "a1", "session": "s", "emitted_ns": 5, "id": "s/a1/coach/4/tag",
            "action": "tag", "t_ns": 4, "by": "board", **kw}


def test_the_coach_record_model_is_made_from_its_typed_dict() -> None:
    from poserun.records import CoachRecord

    assert set(CoachRecord.model_fields) == KEYS["coach"]
    assert {k for k, f in CoachRecord.model_fields.items() if f.is_required()} == REQUIRED["coach"] | SERVICE_KEYS
    CoachRecord.model_validate(_coach(label="hill"))
    CoachRecord.model_validate(_coach(action="rep", on=True, rep=2))
    CoachRecord.model_validate(_coach(action="targets", targets={"cadence_spm": [170.0, 190.0],
                                                                  "support_time_s": None, "forced_share": 0.1}))
    assert "CoachRecord" in {d["title"] for d in json_schema()["$defs"].values()}


@pytest.mark.parametrize("bad", [
    {"action": "explode"}, {"t_ns": "soon"}, {"colour": "red"}, {"targets": {"speed": 3}},
    {"session": None}, {"rep": "first"},
])
def test_a_bad_coach_record_is_refused(bad: dict) -> None:
    from poserun.records import CoachRecord

    with pytest.raises(ValidationError):
        CoachRecord.model_validate(_coach(**bad))


def test_the_record_union_tells_kinds_by_type() -> None:
    from pydantic import TypeAdapter

    from poserun.records import CoachRecord, Record

    assert isinstance(TypeAdapter(Record).validate_python(_coach(label="x")), CoachRecord)
