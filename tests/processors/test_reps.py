from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poserun.processors.reps import GAP_CEILING_S, GAP_FLOOR_S, RepTracker, gap_ns, segment_reps

S = 10**9


def stances(t0_s: float, n: int, spm: float, *, forced_every: int = 0, score: float = 80.0) -> list[dict[str, Any]]:
    period = 60.0 / spm
    return [{"type": "stance", "athlete": "a1", "foot": "LR"[i % 2], "emitted_ns": int((t0_s + i * period) * S),
             "cadence_spm": spm, "support_time_s": 0.22, "pose_score": score,
             "forced_landing": bool(forced_every) and i % forced_every == 0} for i in range(n)]


def rep_cmd(t_s: float, on: bool, rep: int | None = None) -> dict[str, Any]:
    r = {"type": "coach", "athlete": "a1", "action": "rep", "on": on, "t_ns": int(t_s * S), "by": "board",
         "emitted_ns": int(t_s * S)}
    return r if rep is None else r | {"rep": rep}


def streamed(st_: list[dict[str, Any]], coach: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = RepTracker()
    merged = sorted([(c["emitted_ns"], 0, c) for c in coach] + [(s["emitted_ns"], 1, s) for s in st_],
                    key=lambda x: (x[0], x[1]))
    for _, _, r in merged:
        t.feed(r)
    return list(t.reps())


def test_auto_reps_are_runs_of_stances_split_by_rest() -> None:
    st_ = stances(0, 40, 180) + stances(30, 30, 180, forced_every=3) + stances(60, 20, 170)
    reps = segment_reps(st_, [])
    assert [r["stances"] for r in reps] == [40, 30, 20]
    assert [r["rep"] for r in reps] == [1, 2, 3] and {r["source"] for r in reps} == {"auto"}
    assert reps[0]["cadence_spm"] == 180.0 and reps[2]["cadence_spm"] == 170.0
    assert reps[0]["forced_share"] == 0.0 and reps[1]["forced_share"] == 10 / 30
    assert reps[0]["start_ns"] == 0 and reps[0]["end_ns"] == st_[39]["emitted_ns"]
    assert streamed(st_, []) == reps


def test_gap_is_three_own_step_periods_within_physical_bounds() -> None:
    assert gap_ns([]) == int(GAP_CEILING_S * S)
    assert abs(gap_ns([S // 3] * 8) - S) <= 1  # 180 spm: 1 s
    assert gap_ns([S // 5] * 8) == int(GAP_FLOOR_S * S)  # 300 spm is faster than any runner
    # at 180 spm a 0.67 s hole (one lost stance) keeps the rep, a 1.1 s pause splits it
    lost = stances(0, 20, 180)
    del lost[10]
    assert [r["stances"] for r in segment_reps(lost, [])] == [19]
    paused = stances(0, 10, 180) + stances(10 / 3 - 1 / 3 + 1.1, 10, 180)
    assert [r["stances"] for r in segment_reps(paused, [])] == [10, 10]
    # the same 1.1 s pause is within a rep at 150 spm (gap 3 x 0.4 s = 1.2 s)
    slow = stances(0, 10, 150) + stances(9 * 0.4 + 1.1, 10, 150)
    assert [r["stances"] for r in segment_reps(slow, [])] == [20]


def test_walking_cadence_is_rest() -> None:
    st_ = stances(0, 30, 180) + stances(30 / 3, 20, 115) + stances(10 + 20 * 60 / 115, 12, 175)
    reps = segment_reps(st_, [])
    # the 4-stance median cadence lags: 2 walking stances still count, the first running one does not
    assert [r["stances"] for r in reps] == [32, 11]
    assert streamed(st_, []) == reps


def test_few_stances_are_not_a_rep() -> None:
    st_ = stances(0, 2, 180) + stances(10, 3, 180)
    assert [r["stances"] for r in segment_reps(st_, [])] == [3]


def test_coach_reps_replace_automatic_ones() -> None:
    st_ = stances(0, 40, 180) + stances(30, 30, 180, forced_every=2) + stances(60, 20, 170)
    coach = [rep_cmd(29.5, True, 1), rep_cmd(40, False), rep_cmd(59.9, True, 2), rep_cmd(61, True, 3),
             rep_cmd(62, False), rep_cmd(63, False)]
    reps = segment_reps(st_, coach)
    assert [(r["rep"], r["source"]) for r in reps] == [(1, "coach"), (2, "coach"), (3, "coach")]
    assert [r["stances"] for r in reps] == [30, 3, 3]
    assert reps[0]["forced_share"] == 0.5 and reps[0]["start_ns"] == int(29.5 * S) and reps[0]["end_ns"] == 40 * S
    assert streamed(st_, coach) == reps


def test_an_open_coach_rep_ends_at_its_last_stance_and_ties_follow_the_command() -> None:
    st_ = stances(0, 9, 180)
    coach = [rep_cmd(1, True), rep_cmd(2, False), rep_cmd(2, True)]  # stance 6 at exactly 2 s
    reps = segment_reps(st_, coach)
    assert [(r["rep"], r["stances"]) for r in reps] == [(1, 3), (2, 3)]
    assert reps[1]["end_ns"] == st_[-1]["emitted_ns"]
    assert streamed(st_, coach) == reps
    assert segment_reps([], [rep_cmd(1, True)])[0]["stances"] == 0


def test_tracker_state_and_clock_tick() -> None:
    t = RepTracker()
    assert t.state == "resting"
    for s in stances(0, 10, 180):
        t.feed(s)
    assert t.state == "running"
    t.advance(int(3.0 * S) + int(0.9 * S))
    assert t.state == "running"
    t.advance(int(3.0 * S) + int(1.2 * S))
    assert t.state == "resting" and [r["stances"] for r in t.reps()] == [10]
    t.feed(rep_cmd(5, True))
    assert t.state == "running" and t.reps()[0]["source"] == "coach"
    t.feed(rep_cmd(6, False))
    assert t.state == "resting"
    t.feed({"type": "stance", "emitted_ns": "bad"})
    t.feed({"type": "coach", "action": "rep"})  # no "on": ignored
    t.feed({"type": "coach", "action": "rep", "on": True, "emitted_ns": None})  # no time: ignored
    assert len(t.reps()) == 1


def test_missing_values_give_none() -> None:
    st_ = [s | {"cadence_spm": None, "pose_score": None, "forced_landing": None} for s in stances(0, 6, 180)]
    r = segment_reps(st_, [])[0]
    assert r["stances"] == 6 and r["cadence_spm"] is None and r["forced_share"] is None and r["pose_score"] is None


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    t, out = 0.0, []
    for _ in range(draw(st.integers(0, 60))):
        t += draw(st.floats(0.15, 2.5))
        spm = draw(st.sampled_from([None, 110.0, 150.0, 180.0, 200.0]))
        out.append({"type": "stance", "emitted_ns": int(t * S), "cadence_spm": spm,
                    "support_time_s": draw(st.floats(0.15, 0.35)), "pose_score": draw(st.floats(0, 100)),
                    "forced_landing": draw(st.sampled_from([None, True, False]))})
    coach = []
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 6))):
            coach.append(rep_cmd(draw(st.floats(0, max(t, 1.0))), draw(st.booleans()),
                                 draw(st.sampled_from([None, 1, 2, 7]))))
        coach.sort(key=lambda c: c["emitted_ns"])
    return out, coach


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions(), st.integers(0, 3))
def test_streaming_equals_batch(session: tuple[list[dict[str, Any]], list[dict[str, Any]]], tick: int) -> None:
    st_, coach = session
    t = RepTracker()
    merged = sorted([(c["emitted_ns"], 0, c) for c in coach] + [(s["emitted_ns"], 1, s) for s in st_],
                    key=lambda x: (x[0], x[1]))
    for _, _, r in merged:
        if tick:  # clock ticks between records change nothing
            t.advance(r["emitted_ns"] - tick * S // 4)
        t.feed(r)
    assert t.reps() == segment_reps(st_, coach)


def test_a_tracker_keeps_only_what_a_rep_reads() -> None:
    """An hour-long run holds a few numbers per step, not each step's pressure map and pose."""
    from poserun.processors.reps import KEPT, RepTracker

    tracker = RepTracker()
    for i in range(50):
        tracker.feed({"type": "stance", "emitted_ns": i * 330_000_000, "cadence_spm": 180.0, "support_time_s": 0.2,
                      "pose_score": 80.0, "forced_landing": False, "pressure_map": {"peak_bw": [1.0] * 64},
                      "pose_ic": [[0.0, 0.0]] * 8})
    assert tracker.state == "running" and tracker.reps()[0]["stances"] == 50
    assert all(set(s) <= set(KEPT) for s in tracker._run)
