"""Timing on its own: which source times a foot (priority, hand-over, take-over, the re-judged
cache) and which event rows become Pending records (duplicates, unmatched TOs, short contacts,
the shank impact), from hand-made clocks and rows (processors/timing.py, docs/processor.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO
from poserun.processors.timing import DUPLICATE_NS, REJUDGE_NS, STALE_NS, Pending, Timing, source_name

MS = 1e6
S = 1e9
ALL = [("insole", "insole_left"), ("imu", "imu_foot_left"), ("imu_shank", "imu_shank_left"),
       ("camera", "keypoints"), ("imu_pelvis", "imu_pelvis")]


def timing(cands: list[tuple[str, str]] | None = None) -> Timing:
    t = Timing()
    t.set_candidates({"left": list(ALL if cands is None else cands), "right": []})
    return t


def rows(*events: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(events, dtype=np.float64).reshape(-1, 4)


def ic(t_ns: float, peak: float = 0.0) -> tuple[float, float, float, float]:
    return (EV_IC, t_ns, t_ns, peak)


def to(t_ns: float, ic_ns: float, peak: float = 0.0) -> tuple[float, float, float, float]:
    return (EV_TO, t_ns, ic_ns, peak)


# ------------------------------------------------------------------ source_name

@pytest.mark.parametrize(("kind", "foot", "stream"), [
    ("insole", "left", "insole_left"), ("insole", "right", "insole_right"),
    ("imu", "left", "imu_foot_left"), ("imu", "right", "imu_foot_right"),
    ("imu_shank", "left", "imu_shank_left"), ("imu_shank", "right", "imu_shank_right"),
    ("camera", "left", "keypoints"), ("camera", "right", "keypoints"),
    ("imu_pelvis", "left", "imu_pelvis"), ("imu_pelvis", "right", "imu_pelvis"),
])
def test_source_name(kind: str, foot: str, stream: str) -> None:
    assert source_name(kind, foot) == stream


# ------------------------------------------------------------------ active: priority and hand-over

@pytest.mark.parametrize("fresh", range(len(ALL)))
def test_the_first_fresh_source_in_priority_order_times_the_foot(fresh: int) -> None:
    """Every source before ``fresh`` in the priority order is stale; ``fresh`` and the rest are fresh."""
    newest = 100 * S
    clocks = {stream: newest - (STALE_NS + 1 * MS if i < fresh else 0.0) for i, (_k, stream) in enumerate(ALL)}
    assert timing().active("left", clocks, newest) == ALL[fresh][0]


def test_all_fresh_the_insole_times_and_order_of_listing_is_the_priority() -> None:
    newest = 10 * S
    clocks = {stream: newest for _k, stream in ALL}
    assert timing().active("left", clocks, newest) == "insole"
    # the candidates' order is the priority: listed camera first, the camera times
    reordered = [ALL[3], ALL[0], ALL[1]]
    assert timing(reordered).active("left", clocks, newest) == "camera"


def test_a_source_exactly_stale_ns_behind_is_still_fresh() -> None:
    newest = 10 * S
    clocks = {"insole_left": newest - STALE_NS, "imu_foot_left": newest}
    assert timing().active("left", clocks, newest) == "insole"


def test_a_source_that_never_sent_is_skipped() -> None:
    newest = 10 * S
    assert timing().active("left", {"keypoints": newest}, newest) == "camera"


def test_no_fresh_source_falls_back_to_the_first_candidate() -> None:
    newest = 10 * S
    clocks = {stream: newest - 5 * S for _k, stream in ALL}
    assert timing().active("left", clocks, newest) == "insole"
    assert timing().active("left", {}, newest) == "insole"


def test_a_foot_without_candidates_has_no_source() -> None:
    t = timing()
    assert t.active("right", {"insole_left": 1 * S}, 1 * S) is None
    assert t.active("nowhere", {}, 1 * S) is None


def test_hand_over_when_stale_and_take_over_when_it_returns() -> None:
    t = timing([ALL[0], ALL[1]])
    clocks = {"insole_left": 1.0 * S, "imu_foot_left": 1.0 * S}
    assert t.active("left", clocks, 1.0 * S) == "insole"
    # the insole drops out: 400 ms later only the IMU has data
    clocks["imu_foot_left"] = 1.4 * S
    assert t.active("left", clocks, 1.4 * S) == "imu"
    # it returns
    clocks["insole_left"] = 1.6 * S
    clocks["imu_foot_left"] = 1.6 * S
    assert t.active("left", clocks, 1.6 * S) == "insole"


def test_the_answer_is_cached_until_rejudge_ns_of_data_time() -> None:
    t = timing([ALL[0], ALL[1]])
    clocks = {"insole_left": 1.0 * S, "imu_foot_left": 1.0 * S}
    assert t.active("left", clocks, 1.0 * S) == "insole"
    # the insole goes stale at once, but the cached answer holds for just under REJUDGE_NS
    stale = {"insole_left": 0.0, "imu_foot_left": 1.0 * S + REJUDGE_NS}
    assert t.active("left", stale, 1.0 * S + REJUDGE_NS - 1) == "insole"
    # REJUDGE_NS after the judgement it is judged afresh
    assert t.active("left", stale, 1.0 * S + REJUDGE_NS) == "imu"


def test_the_cache_is_per_foot() -> None:
    t = Timing()
    t.set_candidates({"left": [("insole", "insole_left"), ("camera", "keypoints")],
                      "right": [("insole", "insole_right"), ("camera", "keypoints")]})
    newest = 5 * S
    clocks = {"insole_left": newest, "insole_right": newest - 1 * S, "keypoints": newest}
    assert t.active("left", clocks, newest) == "insole"
    assert t.active("right", clocks, newest) == "camera"


def test_new_candidates_drop_the_cache() -> None:
    t = timing([ALL[0], ALL[1]])
    clocks = {"insole_left": 1.0 * S, "imu_foot_left": 1.0 * S}
    assert t.active("left", clocks, 1.0 * S) == "insole"
    t.set_candidates({"left": [ALL[1]]})
    assert t.active("left", clocks, 1.0 * S) == "imu"


# ------------------------------------------------------------------ accept

def test_an_ic_is_a_landing_and_its_to_a_stance() -> None:
    t = timing()
    out = t.accept("left", rows(ic(1.0 * S, 700.0)), "insole")
    assert len(out) == 1
    land = out[0]
    assert isinstance(land, Pending)
    assert (land.kind, land.foot, land.ic_ns, land.source) == ("landing", "left", 1.0 * S, "insole")
    assert math.isnan(land.to_ns) and math.isnan(land.impact)
    out = t.accept("left", rows(to(1.25 * S, 1.0 * S, 1500.0)), "insole")
    assert len(out) == 1
    st = out[0]
    assert (st.kind, st.foot, st.ic_ns, st.to_ns, st.source) == ("stance", "left", 1.0 * S, 1.25 * S, "insole")
    assert math.isnan(st.impact)  # only a shank gives one
    assert not t.warnings


def test_ic_and_to_in_one_block_in_order() -> None:
    out = timing().accept("left", rows(ic(1.0 * S), to(1.2 * S, 1.0 * S)), "imu")
    assert [(p.kind, p.source) for p in out] == [("landing", "imu"), ("stance", "imu")]


def test_a_duplicate_ic_within_duplicate_ns_is_counted_and_dropped() -> None:
    t = timing()
    assert len(t.accept("left", rows(ic(1.0 * S)), "insole")) == 1
    # the same contact seen by the foot IMU after a hand-over, 5 ms later
    assert t.accept("left", rows(ic(1.005 * S)), "imu") == []
    assert t.warnings["duplicate_ic"] == 1
    # just under DUPLICATE_NS after the accepted IC: still the same contact
    assert t.accept("left", rows(ic(1.0 * S + DUPLICATE_NS - 1 * MS)), "imu") == []
    assert t.warnings["duplicate_ic"] == 2
    # DUPLICATE_NS after it: a new contact
    out = t.accept("left", rows(ic(1.0 * S + DUPLICATE_NS)), "imu")
    assert [(p.kind, p.ic_ns) for p in out] == [("landing", 1.0 * S + DUPLICATE_NS)]
    assert t.warnings["duplicate_ic"] == 2


def test_duplicates_are_judged_per_foot() -> None:
    t = Timing()
    t.set_candidates({"left": [ALL[0]], "right": [("insole", "insole_right")]})
    assert len(t.accept("left", rows(ic(1.0 * S)), "insole")) == 1
    assert len(t.accept("right", rows(ic(1.1 * S)), "insole")) == 1
    assert not t.warnings


def test_a_contact_seen_by_two_sources_gives_one_landing_and_one_stance() -> None:
    t = timing()
    out = t.accept("left", rows(ic(1.000 * S)), "insole")
    out += t.accept("left", rows(ic(1.004 * S), to(1.22 * S, 1.004 * S)), "imu")  # after the hand-over
    assert [p.kind for p in out] == ["landing", "stance"]
    assert t.warnings["duplicate_ic"] == 1
    assert "unmatched_to" not in t.warnings


def test_a_to_whose_ic_another_source_timed_is_unmatched() -> None:
    t = timing()
    t.accept("left", rows(ic(1.0 * S)), "insole")
    # the camera's TO belongs to an IC 40 ms away (over TO_MATCH_NS): not this contact's
    assert t.accept("left", rows(to(1.25 * S, 1.04 * S)), "camera") == []
    assert t.warnings["unmatched_to"] == 1
    # within 30 ms of the accepted IC it is the same contact
    out = t.accept("left", rows(to(1.25 * S, 1.02 * S)), "camera")
    assert [(p.kind, p.to_ns) for p in out] == [("stance", 1.25 * S)]


def test_a_to_before_any_ic_is_unmatched() -> None:
    t = timing()
    assert t.accept("left", rows(to(1.25 * S, 1.0 * S)), "insole") == []
    assert t.warnings["unmatched_to"] == 1


def test_a_second_to_of_the_same_ic_is_unmatched() -> None:
    t = timing()
    t.accept("left", rows(ic(1.0 * S)), "insole")
    assert len(t.accept("left", rows(to(1.25 * S, 1.0 * S)), "insole")) == 1
    assert t.accept("left", rows(to(1.26 * S, 1.0 * S)), "imu") == []
    assert t.warnings["unmatched_to"] == 1


def test_a_short_contact_is_counted_and_gives_no_record() -> None:
    t = timing()
    out = t.accept("left", rows(ic(1.0 * S), (EV_SHORT, 1.05 * S, 1.0 * S, 300.0)), "insole")
    assert [p.kind for p in out] == ["landing"]  # the IC was accepted before the contact turned out short
    assert t.warnings["short_contact"] == 1
    assert t.accept("left", rows((EV_SHORT, 2.05 * S, 2.0 * S, 300.0)), "insole") == []
    assert t.warnings["short_contact"] == 2


def test_the_shank_impact_goes_to_the_stance_of_its_own_ic() -> None:
    t = timing()
    out = t.accept("left", rows(ic(1.0 * S, 49.0)), "imu_shank")
    assert [(p.kind, p.source) for p in out] == [("landing", "imu_shank")]
    assert math.isnan(out[0].impact)  # a landing carries no impact
    out = t.accept("left", rows(to(1.25 * S, 1.0 * S, -12.0)), "imu_shank")
    assert len(out) == 1
    assert out[0].impact == 49.0


def test_a_shank_impact_is_not_given_to_another_contact() -> None:
    t = timing()
    t.accept("left", rows(ic(1.0 * S, 49.0)), "imu_shank")
    # the insole takes over: the next contact's IC and TO are its own
    t.accept("left", rows(ic(1.7 * S, 700.0)), "insole")
    out = t.accept("left", rows(to(1.95 * S, 1.7 * S, 1500.0)), "insole")
    assert len(out) == 1 and out[0].source == "insole"
    assert math.isnan(out[0].impact)


def test_the_impact_of_another_source_kind_is_not_kept() -> None:
    """Only a shank's IC peak is an impact; an insole's IC peak (newtons) is not."""
    t = timing()
    t.accept("left", rows(ic(1.0 * S, 700.0)), "insole")
    out = t.accept("left", rows(to(1.25 * S, 1.0 * S, 1500.0)), "insole")
    assert math.isnan(out[0].impact)


# ------------------------------------------------------------------ unresolved and silent

def test_a_contact_whose_toe_off_never_comes_is_counted_when_the_next_one_lands() -> None:
    t = timing()
    t.accept("left", rows(ic(1.0 * S)), "insole")
    t.accept("left", rows(to(1.25 * S, 1.0 * S)), "insole")
    t.accept("left", rows(ic(1.7 * S)), "insole")  # its TO is lost
    assert t.warnings["stance_without_to"] == 0
    out = t.accept("left", rows(ic(2.4 * S)), "insole")
    assert [p.kind for p in out] == ["landing"] and t.warnings["stance_without_to"] == 1


def test_a_stance_timed_after_a_hand_over_or_a_short_contact_is_no_missing_toe_off() -> None:
    t = timing([("insole", "insole_left"), ("imu", "imu_foot_left")])
    t.accept("left", rows(ic(1.000 * S)), "insole")
    t.accept("left", rows(ic(1.004 * S)), "imu")  # the same contact: a duplicate
    t.accept("left", rows(to(1.25 * S, 1.004 * S)), "imu")  # its TO, within TO_MATCH_NS of the IC
    t.accept("left", rows((EV_IC, 1.7 * S, 1.7 * S, 0.0), (EV_SHORT, 1.72 * S, 1.7 * S, 0.0)), "insole")
    t.accept("left", rows(ic(2.4 * S)), "insole")
    assert t.warnings["duplicate_ic"] == 1 and t.warnings["short_contact"] == 1
    assert t.warnings["stance_without_to"] == 0


def test_a_stream_that_times_both_feet_is_silent_once_and_a_stopped_one_not_at_all() -> None:
    t = Timing()
    t.set_candidates({"left": [("insole", "insole_left"), ("imu_pelvis", "imu_pelvis")],
                      "right": [("imu_pelvis", "imu_pelvis")]})
    first = {"imu_pelvis": 0.0, "insole_left": 0.0}
    for sec in range(0, 70):
        now = sec * S
        clocks = {"imu_pelvis": now, "insole_left": min(now, 5 * S)}  # the insole stopped at 5 s
        t.check_silence(now, first, clocks)
    assert t.warnings["imu_pelvis_no_contacts"] == 1  # one stream, both feet: once
    assert t.warnings["insole_left_no_contacts"] == 0  # it stopped: not silent


def test_a_timing_source_a_minute_without_contacts_is_counted_once_a_minute() -> None:
    t = timing([("imu_shank", "imu_shank_left")])
    first = {"imu_shank_left": 0.0}
    for sec in range(0, 150):
        now = sec * S
        t.check_silence(now, first, {"imu_shank_left": now})
    assert t.warnings["imu_shank_left_no_contacts"] == 2  # at 60 s and at 120 s
    t.accept("left", rows(ic(150 * S)), "imu_shank")
    for sec in range(150, 200):
        t.check_silence(sec * S, first, {"imu_shank_left": sec * S})
    assert t.warnings["imu_shank_left_no_contacts"] == 2  # a contact restarted the minute


def test_a_support_of_minutes_is_no_stance() -> None:
    t = timing()
    t.accept("left", rows(ic(1.0 * S)), "insole")
    out = t.accept("left", rows(to(7201.0 * S, 1.0 * S)), "insole")  # a clock that jumped two hours
    assert out == [] and t.warnings["implausible_support_time"] == 1
    t.accept("left", rows(ic(7202.0 * S)), "insole")
    assert t.warnings["stance_without_to"] == 0  # its end was seen, just not believed
