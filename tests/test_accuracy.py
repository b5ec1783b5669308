"""The accuracy targets of docs/accuracy.md, kept honest on a shorter run."""

from __future__ import annotations

from poserun.services import validate as accuracy


def test_all_sensors_meet_the_targets() -> None:
    records, truth, _ = accuracy.run_session(accuracy.SUBSETS["all sensors"], seconds=20.0, seed=11)
    res = accuracy.evaluate(records, truth)
    assert res["matched"] >= 0.98 * res["stances"]
    assert res["ic"][1] <= 3.0 and res["to"][1] <= 3.0  # MAE, ms
    _precision, _recall, f1, n = res["forced"]
    assert n > 10 and f1 >= 0.95


def test_insole_only_makes_no_forced_landing_decisions() -> None:
    records, truth, _ = accuracy.run_session(accuracy.SUBSETS["insole only"], seconds=8.0, seed=11)
    assert all(r.get("forced_landing") is None for r in records)
    assert accuracy.evaluate(records, truth)["to"][1] <= 3.0
