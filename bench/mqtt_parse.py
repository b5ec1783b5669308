"""MQTT receive-path micro-benchmark: packets/s of the sans-I/O core against the ingest's parser.

One buffer of 100,000 QoS 0 PUBLISH packets (the simulated team's topics, 128-byte
payloads: an IMU frame of 4 samples x 6 channels), parsed in one run by:

1. ``parse_packets``                 the ingest's former parser (kept here for comparison): tuples.
2. ``parse_packets + decode``        the same plus the topic decode that LoopSubscriber does.
3. ``MqttClient.receive``            poserun.wire.mqtt: Message events, str topics.
4. ``MqttClient.receive, bytes``     the same with ``bytes_topics=True``.

each fed the buffer in 64 KiB reads (as a socket delivers it; the tail of a split packet
carried to the next read) and in one piece. Best of ``--repeat`` runs; no network.

    python bench/mqtt_parse.py [--packets 100000] [--repeat 5] [--read 65536] [--markdown]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from poserun.wire.mqtt import Message, MqttClient, encode_publish

SOURCES = ("imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints")


def parse_packets(buf: bytearray | bytes, start: int = 0
                  ) -> tuple[list[tuple[int, int, bytes, bytes, int]], int]:
    """The former ingest parser: complete packets in ``buf`` as (type, flags, topic, payload,
    packet id) for PUBLISH, (type, flags, b"", body, 0) for others; and the offset after the last."""
    out = []
    n = len(buf)
    pos = start
    while pos + 2 <= n:
        b0 = buf[pos]
        length = 0
        mult = 1
        i = pos + 1
        while True:
            if i >= n:
                return out, pos
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128**3:
                raise ValueError("malformed remaining length")
        end = i + length
        if end > n:
            return out, pos
        kind = b0 >> 4
        if kind == 3:  # PUBLISH
            tlen = (buf[i] << 8) | buf[i + 1]
            t_end = i + 2 + tlen
            topic = bytes(buf[i + 2:t_end])
            pid = 0
            if (b0 >> 1) & 3:
                pid = (buf[t_end] << 8) | buf[t_end + 1]
                t_end += 2
            out.append((kind, b0 & 0x0F, topic, bytes(buf[t_end:end]), pid))
        else:
            out.append((kind, b0 & 0x0F, b"", bytes(buf[i:end]), 0))
        pos = end
    return out, pos


def make_buffer(n: int) -> bytes:
    rng = random.Random(7)
    topics = [f"poserun/v1/s{rng.randrange(10**6):06d}/a{k:02d}/data/{s}" for k in range(12) for s in SOURCES]
    return b"".join(encode_publish(topics[k % len(topics)], rng.randbytes(128)) for k in range(n))


def run_parse_packets(reads: list[bytes], decode_topics: bool) -> int:
    buf = bytearray()
    count = 0
    decode = bytes.decode
    for data in reads:
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        packets, used = parse_packets(src)
        if used < len(src):
            tail = src[used:]
            buf.clear()
            buf += tail
        else:
            buf.clear()
        if decode_topics:
            for _kind, _flags, topic, _payload, _pid in packets:
                decode(topic, "utf-8", "replace")
        count += len(packets)
    return count


def run_receive(reads: list[bytes], bytes_topics: bool) -> int:
    client = MqttClient("bench", keepalive_s=60, bytes_topics=bytes_topics)
    client.connect()
    client.receive(b"\x20\x02\x00\x00")
    count = 0
    for data in reads:
        count += len(client.receive(data))
    return count


def best_rate(fn: Callable[[], int], n: int, repeat: int) -> tuple[float, float]:
    """(best, median) packets/s over ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        got = fn()
        rates.append(got / (time.perf_counter() - t))
        if got != n:
            raise SystemExit(f"parsed {got} packets of {n}")
    return max(rates), statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--read", type=int, default=65_536, help="bytes per read in the chunked runs")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    n = args.packets
    stream = make_buffer(n)
    chunked = [stream[k:k + args.read] for k in range(0, len(stream), args.read)]
    whole = [stream]
    # the two parsers agree on every packet before anything is timed
    c = MqttClient("check", keepalive_s=60)
    c.connect()
    c.receive(b"\x20\x02\x00\x00")
    mine = c.receive(stream)
    theirs, _ = parse_packets(stream)
    assert len(mine) == len(theirs) == n and all(isinstance(m, Message) for m in mine)
    assert all(m.topic.encode() == t and m.payload == p for m, (_k, _f, t, p, _i) in zip(mine, theirs, strict=True))

    rows = []
    for label, fn in (
        ("parse_packets (bytes topics)", lambda r: run_parse_packets(r, False)),
        ("parse_packets + topic decode (as LoopSubscriber)", lambda r: run_parse_packets(r, True)),
        ("MqttClient.receive (str topics)", lambda r: run_receive(r, False)),
        ("MqttClient.receive (bytes topics)", lambda r: run_receive(r, True)),
    ):
        for reads_label, reads in ((f"{args.read // 1024} KiB reads", chunked), ("one buffer", whole)):
            best, median = best_rate(lambda fn=fn, reads=reads: fn(reads), n, args.repeat)
            rows.append((label, reads_label, best, median))
    print(f"{n:,} QoS 0 PUBLISH packets, {len(stream):,} bytes ({len(stream) / n:.0f} B each), "
          f"best and median of {args.repeat} runs")
    if args.markdown:
        print("\n| parser | input | packets/s (best) | packets/s (median) |\n|---|---|---:|---:|")
        for label, reads_label, best, median in rows:
            print(f"| {label} | {reads_label} | {best:,.0f} | {median:,.0f} |")
    else:
        for label, reads_label, best, median in rows:
            print(f"{label:52s} {reads_label:14s} {best:12,.0f} {median:12,.0f} packets/s")


if __name__ == "__main__":
    main()
