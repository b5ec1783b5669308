"""Fusion workers over NATS JetStream, the parts without I/O (docs/scaling.md).

Names of the streams, consumers and buckets; MQTT topic <-> NATS subject; the partition of an
athlete (the server's ``{{partition(n,1,2)}}``: FNV-1a 32 of the session and athlete tokens,
concatenated, modulo n); a JetStream message's metadata from its ack subject; and the lease
decisions (fair share, what to claim and release, until when an owner may work). The I/O is in
``services/fusion_worker.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from poserun.wire import topics

DATA_STREAM = "POSERUN_DATA"
RECORDS_STREAM = "POSERUN_RECORDS"
LEASES_BUCKET = "poserun_leases"  # partition -> its owner, with a short TTL (the lease)
WORKERS_BUCKET = "poserun_workers"  # worker id -> alive, with the same TTL (who shares the partitions)
PART = "poserun.part"  # the stored subjects: poserun.part.{k}.{session}.{athlete}.{channel}.{source}
#: What gateways publish (over MQTT) that fusion needs: sensor frames and device meta.
DATA_SUBJECTS = (f"{topics.ROOT}.{topics.PROTOCOL}.*.*.data.*", f"{topics.ROOT}.{topics.PROTOCOL}.*.*.meta.*")
RECORDS_SUBJECTS = (f"{topics.ROOT}.{topics.PROTOCOL}.*.*.records",)
TRANSFORM_SRC = f"{topics.ROOT}.{topics.PROTOCOL}.*.*.>"
WORKER_HEADER = "Poserun-Worker"  # on each record published: which worker made it
MSG_ID = "Nats-Msg-Id"


def transform_dest(partitions: int) -> str:
    """The data stream's subject transform: the athlete's partition goes into the stored subject."""
    return f"{PART}.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.>"


def partitions_of_dest(dest: str) -> int | None:
    """The partition count a stream's transform destination names (``None``: not ours)."""
    head = f"{PART}.{{{{partition("
    if not dest.startswith(head):
        return None
    try:
        return int(dest[len(head):].split(",", 1)[0])
    except ValueError:
        return None


def durable(partition: int) -> str:
    """The durable consumer of one partition."""
    return f"part-{partition}"


def partition_filter(partition: int) -> str:
    return f"{PART}.{partition}.>"


def lease_key(partition: int) -> str:
    return f"part-{partition}"


def token(mqtt_level: str) -> str:
    """One MQTT topic level as the NATS MQTT listener turns it into a subject token: '.' is '//'."""
    return mqtt_level.replace(".", "//")


def level(nats_token: str) -> str:
    return nats_token.replace("//", ".")


def mqtt_to_subject(topic: str) -> str:
    """The NATS subject of an MQTT topic (poserun's topics: no empty levels, no spaces)."""
    return ".".join(token(part) for part in topic.split("/"))


def subject_to_mqtt(subject: str) -> str:
    return "/".join(level(part) for part in subject.split("."))


def stored_topic(subject: str) -> tuple[int, str]:
    """A stored data-stream subject as (partition, the MQTT topic the gateway published on)."""
    parts = subject.split(".")
    if len(parts) < 7 or f"{parts[0]}.{parts[1]}" != PART:
        raise ValueError(f"not a partitioned poserun subject: {subject[:120]!r}")
    rest = [level(p) for p in parts[3:]]
    return int(parts[2]), "/".join((topics.ROOT, topics.PROTOCOL, *rest))


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(session: str, athlete: str, partitions: int) -> int:
    """The partition the server's ``{{partition(n,1,2)}}`` puts an athlete's subjects in."""
    return fnv1a32((token(session) + token(athlete)).encode()) % partitions


def records_subject(session: str, athlete: str) -> str:
    """Where a worker publishes an athlete's records: the MQTT records topic's subject."""
    return mqtt_to_subject(topics.athlete_topic(session, athlete, "records"))


@dataclass(frozen=True, slots=True)
class AckMeta:
    """What a JetStream message's reply (ack) subject says of it."""

    stream_seq: int
    timestamp_ns: int  # when the stream stored it
    pending: int  # messages after it for its consumer, when it was delivered
    delivered: int  # how often it was delivered
    consumer_seq: int = 0  # the consumer's delivery count at it (a gap: another client was delivered some)


def ack_meta(reply: str) -> AckMeta:
    """Parse ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` or the form
    with domain and account hash in front (``$JS.ACK.<domain>.<hash>.<stream>...``, 11-12 tokens)."""
    t = reply.split(".")
    if len(t) < 9 or t[0] != "$JS" or t[1] != "ACK":
        raise ValueError(f"not a JetStream ack subject: {reply[:120]!r}")
    k = 2 if len(t) == 9 else 4
    return AckMeta(stream_seq=int(t[k + 3]), timestamp_ns=int(t[k + 5]), pending=int(t[k + 6]),
                   delivered=int(t[k + 2]), consumer_seq=int(t[k + 4]))


# ------------------------------------------------------------------ leases

def fair_share(partitions: int, live_workers: int) -> int:
    """How many partitions one worker may own: ceil(partitions / live workers)."""
    return math.ceil(partitions / max(1, live_workers))


@dataclass(frozen=True, slots=True)
class Plan:
    claim: tuple[int, ...]  # partitions to try to create the lease of (others may win)
    release: tuple[int, ...]  # owned partitions to hand back (stop, ack, delete the lease)


def plan(partitions: int, owned: set[int], live_workers: int, first: int = 0) -> Plan:
    """What a worker does with the leases: claim unowned partitions up to its fair share, trying
    them from ``first`` on (workers start at different places, so they rarely race); release the
    highest it owns beyond its share (a worker joined)."""
    share = fair_share(partitions, live_workers)
    if len(owned) > share:
        return Plan((), tuple(sorted(owned)[share:]))
    order = [(first + k) % partitions for k in range(partitions)] if partitions else []
    return Plan(tuple(p for p in order if p not in owned) if len(owned) < share else (), ())


@dataclass(slots=True)
class Lease:
    """One owned partition's lease, on the owner's monotonic clock: the key's revision, and until
    when the owner may pull and process. Each renewal is sent at ``sent`` and the server's TTL runs
    from when it stored the key, later, so ``sent + ttl - margin`` comes before the key can expire
    and a standby can take the partition: an owner that stops *sending* by then does not overlap
    with it, as long as what it sent reaches the server within the margin (docs/scaling.md,
    fencing: the worker sends nothing buffered across a reconnect, and a gap in the durable
    consumer's delivery sequence makes it read the stream again)."""

    partition: int
    revision: int
    ttl_s: float
    margin_s: float
    deadline: float = field(default=0.0)

    def renewed(self, revision: int, sent: float) -> None:
        self.revision = revision
        self.deadline = sent + self.ttl_s - self.margin_s

    def valid(self, now: float) -> bool:
        return now < self.deadline

    def remaining(self, now: float) -> float:
        return self.deadline - now
