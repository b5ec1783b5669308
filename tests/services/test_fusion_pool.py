"""Fusion partitioned by athlete: each partition gives exactly the whole service's records of its athletes."""

from __future__ import annotations

from poserun.services.fusion import FusionService
from poserun.services.fusion_pool import FusionPool, merge_snapshots, per_athlete
from poserun.services.jetstream import partition_of
from poserun.settings import load_settings
from poserun.wire import topics
from tests.services import sim_feed


def feed(partition: tuple[int, int] | None) -> tuple[list[dict], dict]:
    return sim_feed.feed(athletes=6, seed=9, seconds=6.0, partition=partition)


def test_the_partitions_together_give_the_whole_services_records() -> None:
    whole, snap = feed(None)
    parts = [feed((k, 3)) for k in range(3)]
    got = [r for recs, _ in parts for r in recs]
    assert len(whole) > 50 and sorted(got, key=lambda r: r["id"]) == sorted(whole, key=lambda r: r["id"])
    for k, (recs, s) in enumerate(parts):
        assert {r["athlete"] for r in recs} <= {a for a in {r["athlete"] for r in whole}
                                                 if partition_of("s", a, 3) == k}
        assert s["partition"] == {"index": k, "count": 3, "elsewhere": s["partition"]["elsewhere"]}
        assert s["rejected"] == {}  # another partition's athletes are skipped, not refused
    assert sum(s["totals"]["frames"] for _, s in parts) == snap["totals"]["frames"]
    assert sum(s["partition"]["elsewhere"] for _, s in parts) > 0


def test_a_partition_admits_only_its_athletes_and_subscribes_to_them_alone() -> None:
    ids = [f"a{i:02d}" for i in range(1, 9)]
    settings = load_settings(overrides={"athletes": [{"id": a} for a in ids],
                                        "processor": {"accept_unknown_athletes": False}})
    svc = FusionService(settings, session="s", partition=(1, 2))
    mine = [a for a in ids if partition_of("s", a, 2) == 1]
    assert mine and len(mine) < len(ids)
    assert [svc.admits(f"poserun/v1/s/{a}") for a in ids] == [a in mine for a in ids]
    assert svc.admits("poserun/v1/s/_gateway")  # gateway status: every partition
    assert sorted(svc.filters()) == sorted([topics.subscription("s", "status"),
                                            *(f"poserun/v1/s/{a}/{ch}/+" for a in mine for ch in ("meta", "data")),
                                            *(f"poserun/v1/s/{a}/coach" for a in mine)])  # the board's actions
    # strangers accepted: the partition cannot name its athletes, so it takes everything and skips
    open_ = FusionService(load_settings(), session="s", partition=(0, 2))
    assert open_.filters() == FusionService(load_settings(), session="s").filters()


def test_a_partition_must_exist() -> None:
    for bad in ((2, 2), (-1, 2), (0, 0)):
        try:
            FusionService(load_settings(), partition=bad)
        except ValueError as exc:
            assert "partition" in str(exc)
        else:
            raise AssertionError(f"partition {bad} accepted")


def test_workers_counters_merge_into_one() -> None:
    a = {"totals": {"frames": 3, "late": 0}, "athletes": 2, "ingest": {"connected": True},
         "latency": {"buckets": [["0.001", 1], ["+Inf", 2]], "sum": 0.5}, "sources": {"s/a01/x": {"frames": 3}},
         "tables": {"cap": {"configured": 1}}}
    b = {"totals": {"frames": 4, "gaps": 1}, "athletes": 1, "ingest": {"connected": False},
         "latency": {"buckets": [["0.001", 5], ["+Inf", 0]], "sum": 0.25}, "sources": {"s/a02/x": {"frames": 4}},
         "tables": {"cap": {"configured": 1}}}
    assert merge_snapshots([a, b]) == {
        "totals": {"frames": 7, "late": 0, "gaps": 1}, "athletes": 3, "ingest": {"connected": False},
        "latency": {"buckets": [["0.001", 6], ["+Inf", 2]], "sum": 0.75},
        "sources": {"s/a01/x": {"frames": 3}, "s/a02/x": {"frames": 4}}, "tables": {"cap": {"configured": 2}}}
    assert merge_snapshots([]) == {}


def test_which_sinks_run_in_each_worker() -> None:
    assert per_athlete("haptic") and per_athlete("mqtt")
    assert not any(per_athlete(k) for k in ("dashboard", "prometheus", "store", "jsonl", "console", "nonexistent"))


def test_the_pools_counters_count_once_and_keep_adding_up_over_a_restart() -> None:
    pool = FusionPool(load_settings(), 2)
    assert pool.snapshot()["totals"] == {} and pool.snapshot()["records"] == 0  # before any worker reported
    worker = {"totals": {"frames": 10}, "records": 2, "athletes": 1, "ingest": {"received": 15},
              "tables": {"cap": {"configured": 4}, "idle_s": 600.0}}
    pool.snaps = {0: {**worker, "partition": {"index": 0, "count": 2, "elsewhere": 5}},
                  1: {**worker, "partition": {"index": 1, "count": 2, "elsewhere": 5}}}
    snap = pool.snapshot()
    assert snap["totals"] == {"frames": 20} and snap["records"] == 4 and snap["athletes"] == 2
    assert snap["ingest"]["received"] == 20  # what each took, not what the broker sent each
    assert snap["tables"] == {"cap": {"configured": 4}, "idle_s": 600.0}  # the whole service's, not summed
    assert [p["elsewhere"] for p in snap["workers"]["partitions"]] == [5, 5]
    # worker 0 dies: its counters stay, its athletes (a gauge) go with it
    pool.retired = [{k: worker[k] for k in ("totals", "records")}]
    pool.snaps[0] = {"totals": {"frames": 1}, "records": 0, "athletes": 0, "partition": {"elsewhere": 0}}
    snap = pool.snapshot()
    assert snap["totals"] == {"frames": 21} and snap["records"] == 4 and snap["athletes"] == 1


def test_bad_options_of_a_workers_sink_fail_in_the_parent() -> None:
    try:
        FusionPool(load_settings(overrides={"sinks": [{"type": "haptic", "options": {"no_such_option": 1}}]}), 2)
    except ValueError as exc:
        assert "no_such_option" in str(exc)
    else:
        raise AssertionError("bad haptic options accepted")
