"""The JetStream workers' pure parts: subjects and topics, partitions, ack metadata, lease decisions
(the server's side of the mapping: tests/integration/test_jetstream_mapping.py); and a partition's
pull loop and acker over fake NATS: a delivery gap, a skipped redelivery, the sinks after a replay."""

from __future__ import annotations

from typing import Any

import pytest

from poserun.services import jetstream as jsn


def test_topics_and_subjects_map_both_ways_as_the_nats_mqtt_listener_does() -> None:
    topic = "poserun/v1/club.2026/a.01/data/bundle"
    assert jsn.mqtt_to_subject(topic) == "poserun.v1.club//2026.a//01.data.bundle"
    assert jsn.subject_to_mqtt(jsn.mqtt_to_subject(topic)) == topic
    assert jsn.records_subject("s1", "a.1") == "poserun.v1.s1.a//1.records"


def test_a_stored_subject_gives_its_partition_and_the_gateways_topic() -> None:
    assert jsn.stored_topic("poserun.part.3.club//x.a1.meta.insole_left") == (
        3, "poserun/v1/club.x/a1/meta/insole_left")
    with pytest.raises(ValueError):
        jsn.stored_topic("poserun.v1.s.a.data.bundle")


def test_partition_is_fnv1a_of_the_session_and_athlete_tokens() -> None:
    assert jsn.fnv1a32(b"") == 0x811C9DC5
    assert jsn.fnv1a32(b"a") == 0xE40C292C  # the published FNV-1a 32 test vector
    assert jsn.partition_of("s", "a1", 7) == jsn.fnv1a32(b"sa1") % 7
    assert jsn.partition_of("s.x", "a", 4) == jsn.fnv1a32(b"s//xa") % 4  # the subject's tokens, escaped
    assert {jsn.partition_of("s", f"a{k:02d}", 4) for k in range(40)} == {0, 1, 2, 3}


def test_the_transform_names_its_partition_count() -> None:
    assert jsn.transform_dest(4) == "poserun.part.{{partition(4,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.>"
    assert jsn.partitions_of_dest(jsn.transform_dest(12)) == 12
    assert jsn.partitions_of_dest("foo.{{wildcard(1)}}") is None


def test_ack_subjects_of_both_forms() -> None:
    v1 = jsn.ack_meta("$JS.ACK.POSERUN_DATA.part-1.2.345.17.1796152461138410469.9")
    assert v1 == jsn.AckMeta(stream_seq=345, timestamp_ns=1796152461138410469, pending=9, delivered=2,
                        consumer_seq=17)
    v2 = jsn.ack_meta("$JS.ACK._.ACCHASH.POSERUN_DATA.part-1.1.345.17.1796152461138410469.0.tok")
    assert (v2.stream_seq, v2.timestamp_ns, v2.pending, v2.delivered, v2.consumer_seq) == (
        345, 1796152461138410469, 0, 1, 17)
    with pytest.raises(ValueError):
        jsn.ack_meta("_INBOX.abc")


def test_fair_share_and_the_plan() -> None:
    assert [jsn.fair_share(4, n) for n in (0, 1, 2, 3, 4, 5)] == [4, 4, 2, 2, 1, 1]
    alone = jsn.plan(4, set(), 1)
    assert alone == jsn.Plan((0, 1, 2, 3), ())
    assert jsn.plan(4, set(), 2, first=3).claim == (3, 0, 1, 2)  # tried from its own place
    assert jsn.plan(4, {0, 1, 2, 3}, 2) == jsn.Plan((), (2, 3))  # another joined: the highest go back
    assert jsn.plan(4, {0, 1}, 2) == jsn.Plan((), ())  # its share: nothing to do
    assert jsn.plan(4, {1, 3}, 1).claim == (0, 2)  # the survivor takes the dead worker's
    assert jsn.plan(4, {0}, 3).claim == (1, 2, 3)  # ceil(4/3) = 2: one more, whichever it wins


def test_a_lease_is_valid_until_a_margin_before_the_server_could_expire_it() -> None:
    lease = jsn.Lease(2, revision=5, ttl_s=2.0, margin_s=0.5)
    assert not lease.valid(0.0)
    lease.renewed(6, sent=10.0)
    assert lease.revision == 6
    assert lease.valid(11.49) and not lease.valid(11.5)
    assert lease.remaining(11.0) == pytest.approx(0.5)


def test_without_the_nats_extra_the_commands_say_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from poserun.cli import main

    monkeypatch.setitem(sys.modules, "nats", None)  # (import nats: ImportError, as without nats-py)
    for argv in (["worker", "--nats", "nats://127.0.0.1:1"], ["jetstream", "setup"]):
        assert main(argv) == 2
        assert "pip install 'poserun[nats]'" in capsys.readouterr().err


def test_a_workers_counters_are_its_fusion_services_summed() -> None:
    from poserun.services.fusion import FusionService
    from poserun.services.fusion_worker import merge_snapshots
    from poserun.settings import Settings

    one, two = FusionService(Settings()).snapshot(), FusionService(Settings()).snapshot()
    one["totals"], two["totals"] = {"frames": 3}, {"frames": 4, "gaps": 1}
    one["records"], two["records"] = 2, 5
    two["latency"]["buckets"][0][1] = 7
    merged = merge_snapshots([one, two])
    assert merged["totals"] == {"frames": 7, "gaps": 1} and merged["records"] == 7
    assert merged["latency"]["buckets"][0][1] == 7
    assert merge_snapshots([])["records"] == 0


# ------------------------------------------------------------------ a partition's loop, over fakes

class _Msg:
    def __init__(self, reply: str = "", subject: str = "poserun.part.0.s.a1.data.bundle", status: str | None = None):
        self.reply, self.subject, self.data = reply, subject, b"not a frame"
        self.headers = {"Status": status} if status else None


def _delivery(sseq: int, cseq: int) -> _Msg:
    return _Msg(f"$JS.ACK.POSERUN_DATA.part-0.1.{sseq}.{cseq}.1796152461138410469.0")


class _Nats:
    """Core NATS as a partition uses it: each pull request is answered from ``answers`` in turn."""

    def __init__(self, answers: list[list[_Msg]], part_box: list) -> None:
        self.answers, self.part_box, self.sent, self.cb = answers, part_box, [], None

    def new_inbox(self) -> str:
        return "_INBOX.t"

    async def subscribe(self, subject: str, cb, **_: object) -> object:
        self.cb = cb

        class Sub:
            async def unsubscribe(self) -> None:
                pass

        return Sub()

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.sent.append((subject, payload))
        if subject.startswith("$JS.API.CONSUMER.MSG.NEXT"):
            if not self.answers:
                self.part_box[0].stopping = True
                await self.cb(_Msg(status="408"))
                return
            for m in self.answers.pop(0):
                await self.cb(m)


def _partition(answers: list[list[_Msg]]) -> tuple[Any, _Nats]:
    import time
    from types import SimpleNamespace

    from poserun.services.fusion_worker import Partition
    from poserun.settings import Settings

    box: list = []
    nc = _Nats(answers, box)
    worker = SimpleNamespace(settings=Settings(), session=None, runners=[], nc=nc, js=None, disconnects=0,
                             background=set(), id="w")
    lease = jsn.Lease(0, revision=1, ttl_s=2.0, margin_s=0.5)
    lease.renewed(1, time.monotonic())
    part = Partition(worker, lease)  # type: ignore[arg-type]
    box.append(part)
    return part, nc


def test_a_gap_in_the_consumers_deliveries_makes_the_partition_read_the_stream_again() -> None:
    import asyncio

    part, _ = _partition([[_delivery(11, 6), _delivery(12, 7), _delivery(20, 9), _Msg(status="408")]])
    part.cseq = 5
    assert asyncio.run(part._live()) is False  # (then run() reads the stream after 12 again)
    assert part.last_seq == 12 and part.stats.gaps == 1
    pending, _records, reply = part._acks.get_nowait()
    assert reply == _delivery(12, 7).reply and not pending


def test_a_group_ending_with_a_skipped_redelivery_acks_its_highest_message() -> None:
    import asyncio

    part, _ = _partition([[_delivery(11, 1), _delivery(5, 2), _Msg(status="408")]])
    part.last_seq = 10
    assert asyncio.run(part._live()) is True
    assert part.stats.skipped == 1 and part.last_seq == 11
    assert part._acks.get_nowait()[2] == _delivery(11, 1).reply


def test_replayed_records_reach_the_sinks_only_if_the_stream_had_not_stored_them() -> None:
    import asyncio
    from types import SimpleNamespace

    part, nc = _partition([])
    offered: list[str] = []
    part.worker.runners = [SimpleNamespace(offer=lambda r: offered.append(r["id"]))]

    async def go() -> None:
        async def publish_async(subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future:
            done: asyncio.Future = asyncio.get_running_loop().create_future()
            done.set_result(SimpleNamespace(duplicate=headers[jsn.MSG_ID] == "old"))
            return done

        part.worker.js = SimpleNamespace(publish_async=publish_async)
        recs = [{"session": "s", "athlete": "a1", "id": i} for i in ("old", "new")]
        part._publish(recs, sinks_if_new=True)
        part._flush("$JS.ACK.x")
        part._acks.put_nowait(None)
        await part._acker()

    asyncio.run(go())
    assert offered == ["new"] and part.stats.duplicates == 1 and part.stats.records == 2
    assert nc.sent[-1] == ("$JS.ACK.x", b"+ACK")
