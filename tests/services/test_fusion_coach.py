"""The fusion service turns the board's coach messages into coach records, in order with the
athlete's other records; bad ones are counted, never a crash; reps are numbered per athlete."""

from __future__ import annotations

import json

from poserun.records import CoachRecord
from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, SimSettings, load_settings
from poserun.wire import topics
from poserun.wire.coach import CoachCommand, encode_coach


def _service(partition: tuple[int, int] | None = None) -> tuple[FusionService, SimTeam]:
    team = SimTeam("s", SimSettings(athletes=2, seed=3, bundle=True, profiles=["pose"]))
    settings = load_settings(overrides={"processor": {"accept_unknown_athletes": partition is None},
                                        "athletes": [AthleteSettings(
        id=s.athlete_id, body_mass_kg=s.body_mass_kg, leg_length_m=s.leg_length_m).model_dump() for s in team.specs]})
    svc = FusionService(settings, session="s", clock=lambda: 0, partition=partition)
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    return svc, team


def _coach(athlete: str, cmd: CoachCommand) -> tuple[str, bytes]:
    return topics.coach_topic("s", athlete), encode_coach(cmd)


def test_coach_records_in_order_with_reps_numbered() -> None:
    svc, team = _service()
    a, b = (s.athlete_id for s in team.specs)
    records: list[dict] = []
    script = {2: [(a, CoachCommand("rep", 11, on=True)), (b, CoachCommand("tag", 12, label="start"))],
              5: [(a, CoachCommand("rep", 13, on=False)), (a, CoachCommand("buzz", 14, pattern="long"))],
              7: [(a, CoachCommand("rep", 15, on=True)), (b, CoachCommand("rep", 16, on=False))],
              8: [(a, CoachCommand("metronome", 17, on=True, cadence_spm=180.0)),
                  (b, CoachCommand("targets", 18, targets={"cadence_spm": [175.0, 185.0], "support_time_s": None,
                                                           "forced_share": 0.05}))]}
    for k in range(12):
        for athlete, cmd in script.get(k, []):
            records += svc.handle(*_coach(athlete, cmd), 10**18)
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            records += svc.handle(m.topic, m.payload, 10**18 + m.at_ns)
    coach = [r for r in records if r["type"] == "coach"]
    for r in coach:
        CoachRecord.model_validate(r)
    assert [(r["athlete"], r["action"], r.get("rep")) for r in coach] == [
        (a, "rep", 1), (b, "tag", None), (a, "rep", 1), (a, "buzz", None), (a, "rep", 2), (b, "rep", None),
        (a, "metronome", None), (b, "targets", None)]
    assert coach[3]["pattern"] == "long" and coach[6]["cadence_spm"] == 180.0 and coach[1]["label"] == "start"
    assert all(r["session"] == "s" and r["by"] == "board" and r["id"].startswith("s/") for r in coach)
    # in order: steps before the first coach message come before it, the next after it
    first = records.index(coach[0])
    assert any(r["type"] != "coach" for r in records[:first]) and any(r["type"] != "coach" for r in records[first:])
    assert svc.coach_records == len(coach)


def test_bad_coach_messages_are_counted_and_never_crash() -> None:
    svc, team = _service()
    a = team.specs[0].athlete_id
    bad = [b"", b"{", b"[]", json.dumps({"v": 1, "action": "tag", "t_ns": 1, "label": "x" * 500}).encode(),
           json.dumps({"v": 1, "action": "metronome", "t_ns": 1, "on": True, "cadence_spm": 1000}).encode(),
           b"\xff" * 5000]
    for payload in bad:
        assert svc.handle(topics.coach_topic("s", a), payload, 10**18) == []
    assert svc.snapshot()["rejected"].get("bad_coach") == len(bad)
    # an athlete nobody configured and no data came from: refused (strangers are accepted here)
    assert svc.handle(*_coach("stranger", CoachCommand("buzz", 1)), 10**18) == []
    assert svc.snapshot()["rejected"].get("unknown_athlete") == 1
    assert svc.handle(topics.coach_topic("s", a) + "/x", b"{}", 10**18) == []
    assert svc.coach_records == 0


def test_the_coach_channel_is_subscribed_also_by_partitions() -> None:
    svc, team = _service()
    assert topics.subscription("s", "coach") in svc.filters()
    part, _ = _service(partition=(0, 1))
    assert {topics.athlete_subscription("s", s.athlete_id, "coach") for s in team.specs} <= set(part.filters())


def test_the_jsonl_text_format_names_a_coach_action() -> None:
    from poserun.sinks.jsonl import describe

    rec = {"type": "coach", "athlete": "a01", "action": "tag", "label": "hill start", "t_ns": 1}
    line = describe(rec, {"a01": "Ann"})
    assert line.startswith("a01 Ann") and "coach    tag" in line and '"label":"hill start"' in line


def test_a_partition_makes_coach_records_for_its_athletes_only() -> None:
    from poserun.services.jetstream import partition_of

    svc, team = _service(partition=(0, 2))
    ids = [s.athlete_id for s in team.specs]
    for a in ids:
        recs = svc.handle(*_coach(a, CoachCommand("tag", 5, label="x")), 10**18)
        assert len(recs) == (partition_of("s", a, 2) == 0)
    assert svc.coach_records == sum(partition_of("s", a, 2) == 0 for a in ids)


def test_a_coach_message_delivered_twice_acts_once() -> None:
    """QoS 1 may deliver a message twice (a resend after a reconnect): one record, one rep number."""
    svc, team = _service()
    a = team.specs[0].athlete_id
    first = svc.handle(*_coach(a, CoachCommand("rep", 11, on=True)), 10**18)
    again = svc.handle(*_coach(a, CoachCommand("rep", 11, on=True)), 10**18)
    later = svc.handle(*_coach(a, CoachCommand("rep", 12, on=True)), 10**18)
    assert [r.get("rep") for r in first] == [1] and again == [] and [r.get("rep") for r in later] == [2]
    assert svc.coach_duplicates == 1 and svc.coach_records == 2
