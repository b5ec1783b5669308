"""The team board at 100 athletes (issue 13): the server keeps the latest state per athlete and
sends each browser only what changed since the version it has, never a backlog; the page updates
its tiles in place, once per animation frame, shows a roster from 20 athletes, and says how old its
data is. First the server's versions and flow control without a browser, then Debian's Chromium
driven by Playwright against the real sink fed 100 runners (``board_feed.py``). Nothing here is
timed: waits end on readiness (``CEILING``); the figures are ``bench/board.py``'s."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from poserun.sinks.dashboard import WINDOW, DashboardSink
from tests.conftest import CEILING, PAGE_MS, require, until, wait_until
from tests.sinks.board_feed import Served, athlete_ids, served_board

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def stance(who: str, support: float = 0.2, cadence: float = 180.0, score: float = 80.0, **more: Any) -> dict:
    return {"type": "stance", "athlete": who, "foot": "left", "support_time_s": support, "cadence_spm": cadence,
            "pose_score": score, "sources": ["insole_left", "imu_foot_left"], "emitted_ns": time.time_ns(),
            "session": "s", **more}


def forced(who: str) -> dict:
    return {"type": "landing", "athlete": who, "foot": "right", "forced_landing": True,
            "forced_landing_severity": 1.5, "emitted_ns": time.time_ns(), "session": "s"}


# ---------------------------------------------------------------- the server, without a browser
def test_an_update_has_only_the_athletes_and_fields_that_changed() -> None:
    sink = DashboardSink(port=0)
    asyncio.run(sink.write_batch([stance("a1"), stance("a2"), stance("a3")]))
    v1 = sink.tick()
    first = sink.delta(0)
    assert first is not None and {t["athlete"] for t in first["tiles"]} == {"a1", "a2", "a3"}
    assert {"name", "session", "sources", "stances", "emitted_ns", "support_time_s"} <= set(first["tiles"][0])
    assert sink.delta(v1) is None and sink.tick() == v1  # nothing changed: no new version

    asyncio.run(sink.write_batch([stance("a1", support=0.25)]))  # only a1's support time changed
    v2 = sink.tick()
    change = sink.delta(v1)
    assert change is not None and change["alerts"] == []
    [a1] = change["tiles"]
    assert set(a1) == {"athlete", "stances", "support_time_s", "emitted_ns"}
    assert (a1["stances"], a1["support_time_s"]) == (2, 0.225)  # the tile: the median of the last steps

    asyncio.run(sink.write_batch([stance("a1", support=0.25000001)]))  # median 0.25 (3 steps): changed
    v3 = sink.tick()
    assert sink.delta(v2)["tiles"][0]["support_time_s"] == 0.25  # type: ignore[index]
    asyncio.run(sink.write_batch([stance("a1", support=0.25000002)]))  # below the board's decimals: the same
    sink.tick()
    assert set(sink.delta(v3)["tiles"][0]) == {"athlete", "stances", "emitted_ns"}  # type: ignore[index]


def test_superseded_values_are_dropped_and_a_browser_behind_gets_the_current_state() -> None:
    sink = DashboardSink(port=0)
    asyncio.run(sink.write_batch([stance(w) for w in ("a1", "a2", "a3")]))
    v1 = sink.tick()
    asyncio.run(sink.write_batch([stance("a2", support=0.21), stance("a2", support=0.22), stance("a2", support=0.23)]))
    v2 = sink.tick()
    [a2] = sink.delta(v1)["tiles"]  # type: ignore[index]
    # one entry, the latest values (the tile's support time: the median of 0.2, 0.21, 0.22, 0.23)
    assert (a2["athlete"], a2["stances"], a2["support_time_s"]) == ("a2", 4, 0.215)

    asyncio.run(sink.write_batch([stance("a3", cadence=170.0), forced("a1")]))
    v3 = sink.tick()
    up_to_date = sink.delta(v2)
    behind = sink.delta(v1)  # a browser that still has v1: the union of both ticks, at the latest values
    assert up_to_date is not None and behind is not None
    assert {t["athlete"] for t in up_to_date["tiles"]} == {"a1", "a3"}
    assert {t["athlete"]: set(t) - {"athlete", "emitted_ns"} for t in behind["tiles"]} == {
        "a1": {"flash", "forced_last_min", "level", "fault", "cue", "rule"},
        "a2": {"stances", "support_time_s", "state"},  # (a2's 4 stances in a row: "running", processors/reps.py)
        "a3": {"stances", "cadence_spm"}}
    assert [a["athlete"] for a in behind["alerts"]] == ["a1"] == [a["athlete"] for a in up_to_date["alerts"]]
    assert sink.tiles["a1"]["fault"].startswith("forced landings 1 of the last 1 steps")  # the status, a field
    assert sink.delta(v3) is None

    # a change made after a tick waits for the next one, and is not lost to a browser that was sent v3
    asyncio.run(sink.write_batch([stance("a3", cadence=171.0)]))
    assert sink.delta(v3) is None
    sink.tick()
    assert sink.delta(v3)["tiles"][0]["cadence_spm"] == 171.0  # type: ignore[index]  (median of 180, 170, 171)

    # forced landings leave the count after a minute, without a record to carry it
    sink._forced["a1"][0] -= 61.0
    v5 = sink.tick()
    assert sink.delta(v5 - 1)["tiles"] == [{"forced_last_min": 0, "athlete": "a1"}]  # type: ignore[index]


def test_a_browser_that_stops_acknowledging_is_sent_the_current_state_not_a_backlog() -> None:
    athletes = athlete_ids(20)

    async def go() -> None:
        sink = DashboardSink(port=0)
        await sink.start()
        try:
            async with connect(f"ws://127.0.0.1:{sink.port}/ws", open_timeout=CEILING) as ws:
                state = json.loads(await ws.recv())
                assert state["type"] == "state" and state["tiles"] == []
                await sink.write_batch([stance(w) for w in athletes])
                first = json.loads(await asyncio.wait_for(ws.recv(), CEILING))
                assert first["type"] == "update" and len(first["tiles"]) == 20
                assert isinstance(first["now_ns"], int)
                assert all(isinstance(t["emitted_ns"], int) for t in first["tiles"])
                await ws.send(json.dumps({"type": "ack", "seq": first["seq"]}))  # it acknowledges: a window applies
                await until(lambda: sink.browsers()[0]["acked"] == first["seq"], "the acknowledgement taken")
                for i in range(40):  # then it draws nothing more (acknowledges nothing) while the team runs
                    await sink.write_batch([stance(w, support=0.2 + i / 1000) for w in athletes])
                    sink.tick()
                    await asyncio.sleep(0)
                await until(lambda: sink.browsers()[0]["coalesced"] >= 30, "ticks coalesced")
                [b] = sink.browsers()
                assert b["updates"] == 1 + WINDOW and b["unacked"] == WINDOW  # not one per tick
                held = [json.loads(await asyncio.wait_for(ws.recv(), CEILING)) for _ in range(WINDOW)]
                await asyncio.sleep(0.3)  # the pusher ticks meanwhile: still nothing more for this browser
                assert sink.browsers()[0]["updates"] == 1 + WINDOW
                await ws.send(json.dumps({"type": "ack", "seq": held[-1]["seq"]}))
                caught_up = json.loads(await asyncio.wait_for(ws.recv(), CEILING))
                assert caught_up["seq"] == sink.version
                assert {t["athlete"]: (t["stances"], t["support_time_s"]) for t in caught_up["tiles"]} == {
                    w: (41, 0.2295) for w in athletes}  # everything that changed, at its latest value, at once
                # (the tile's support time: the median of the last 20 steps, 0.220-0.239)
                await ws.send(json.dumps({"type": "ack", "seq": caught_up["seq"] + 1}))  # not a version it was sent
                await until(lambda: sink.bad_messages == 1, "a bad acknowledgement counted")
        finally:
            await sink.close()

    asyncio.run(go())


def test_a_browser_that_does_not_read_holds_a_bounded_buffer() -> None:
    """A socket whose reader is stuck: the sink's part is its transport's buffer (the write limit and
    one message), not a queue of updates; its updates stop while the others' go on."""
    athletes = athlete_ids(100)

    async def go() -> None:
        sink = DashboardSink(port=0)
        await sink.start()
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            await asyncio.to_thread(stuck.connect, ("127.0.0.1", sink.port))
            stuck.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{sink.port}\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n".encode())  # and never reads again
            await until(lambda: len(sink.browsers()) == 1, "the stuck browser connected")
            async with connect(f"ws://127.0.0.1:{sink.port}/ws", open_timeout=CEILING) as reader:
                got = 0

                async def read() -> None:
                    nonlocal got
                    async for _m in reader:
                        got += 1
                readers = asyncio.create_task(read())
                await until(lambda: len(sink.browsers()) == 2, "the reading browser connected")
                biggest, frozen_at = 0, None
                for i in range(3000):  # about 8 KB an update: tens of MB if they queued
                    await sink.write_batch([stance(w, support=0.2 + (i % 50) / 1000, score=50 + i % 40)
                                            for w in athletes])
                    sink.tick()
                    await asyncio.sleep(0)
                    stuck_b = max(sink.browsers(), key=lambda b: b["coalesced"])
                    biggest = max(biggest, stuck_b["buffered"])
                    if frozen_at is None and stuck_b["coalesced"] > 100:
                        frozen_at = stuck_b["updates"]
                        break
                assert frozen_at is not None, "the stuck browser was sent an update per tick"
                for _ in range(200):
                    await sink.write_batch([stance(w, support=0.3) for w in athletes])
                    sink.tick()
                    await asyncio.sleep(0)
                stuck_b = max(sink.browsers(), key=lambda b: b["coalesced"])
                assert stuck_b["updates"] <= frozen_at + 1  # no more updates queued for it
                assert max(biggest, stuck_b["buffered"]) < 2**15 + 64 * 1024  # the write limit and one message
                await until(lambda: got > 100, "the reading browser's updates")  # the other browser goes on
                readers.cancel()
        finally:
            stuck.close()
            await sink.close()

    asyncio.run(go())


# ---------------------------------------------------------------- in Chromium, 100 athletes
@pytest.fixture(scope="module")
def board() -> Iterator[Served]:
    with served_board(100) as served:
        wait_until(lambda: served.call(lambda: len(served.sink.tiles) == 100 and all(
            t["stances"] > 0 for t in served.sink.tiles.values())), "100 athletes' stances")
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(CHROMIUM is not None, "Debian's chromium is not installed (.ci/run installs it)")
    try:
        import playwright.sync_api as playwright
    except ModuleNotFoundError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def opener(browser: Any, board: Served) -> Iterator[Any]:
    """Opens the board in a new browser context (its own storage), once the previous pages' sockets
    closed; returns the page, once its 100 rows are there, and its script errors. Closed after the test."""
    contexts: list[Any] = []

    def open_board(frames: list[str] | None = None) -> tuple[Any, list[str]]:
        wait_until(lambda: board.call(lambda: len(board.sink.browsers())) == 0, "the previous pages' sockets closed")
        contexts.append(browser.new_context(viewport={"width": 1366, "height": 768}))
        page = contexts[-1].new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        if frames is not None:
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
        page.goto(board.url)
        page.wait_for_function("document.querySelectorAll('#roster-body tr[data-athlete]').length === 100",
                               timeout=PAGE_MS)
        return page, errors

    yield open_board
    for c in contexts:
        c.close()


def test_100_athletes_in_a_roster_updated_in_place(opener: Any) -> None:
    frames: list[str] = []
    page, errors = opener(frames)
    assert page.evaluate("poserunBoard.view()") == "roster"  # chosen by itself from 20 athletes
    assert page.is_visible("#roster") and not page.is_visible("#board")
    ids = page.eval_on_selector_all("#roster-body tr", "rows => rows.map(r => r.dataset.athlete)")
    assert sorted(ids) == athlete_ids(100)
    page.select_option("#sort", "athlete")  # (by status, a level change re-sorts: tests/sinks/test_board_coach.py)
    page.evaluate("""() => {
        const row = document.querySelector('#roster-body tr[data-athlete="a050"]');
        row._kept = true;
        window._stances = row.querySelector('.stances').textContent;
        window._renders = poserunBoard.renders;
        window._moved = 0;
        new MutationObserver(ms => {
          for (const m of ms) window._moved += m.addedNodes.length + m.removedNodes.length;
        }).observe(document.getElementById('roster-body'), {childList: true});
    }""")
    page.wait_for_function("""poserunBoard.renders >= window._renders + 10 && document.querySelector(
        '#roster-body tr[data-athlete="a050"] .stances').textContent !== window._stances""", timeout=PAGE_MS)
    assert page.evaluate("document.querySelector('#roster-body tr[data-athlete=\"a050\"]')._kept") is True
    assert page.evaluate("window._moved") == 0  # no row re-appended, none rebuilt, no re-sort on updates
    assert page.evaluate("document.querySelectorAll('#roster-body tr').length") == 100

    # on the wire: the whole board once, then only what changed
    messages = [json.loads(f) for f in frames]
    assert messages[0]["type"] == "state" and len(messages[0]["tiles"]) == 100
    updates = [(f, m) for f, m in zip(frames, messages, strict=True) if m["type"] == "update"]
    assert len(updates) >= 10
    sizes = sorted(len(f) for f, _m in updates)
    assert sizes[-1] < len(frames[0])  # (a page behind gets more at once; bench/board.py says how much)
    known = {t["athlete"]: dict(t) for t in messages[0]["tiles"]}
    sent = differ = 0
    for _f, m in updates:
        for t in m["tiles"]:
            assert not {"name", "session", "sources"} & set(t), t  # never changed: never sent again
            assert len(t) > 1 and len(t) < len(known[t["athlete"]]), t  # some fields of the athlete's, not all
            for k, v in t.items():
                if k == "athlete":  # (which tile: always sent, never a change)
                    continue
                sent += 1
                differ += known[t["athlete"]].get(k) != v
            known[t["athlete"]].update(t)
    # what is sent differs from what the page had, but for a field that changed and came back (a strike
    # zone ball-heel-ball while the page was behind) and what the state had of the tick it came in
    assert differ > 0.8 * sent, (differ, sent)
    assert [m["seq"] for _f, m in updates] == sorted({m["seq"] for _f, m in updates})
    assert errors == []


def test_the_roster_toggle_is_remembered(opener: Any) -> None:
    page, errors = opener()
    assert page.inner_text("#view") == "show tiles"
    page.click("#view")
    page.wait_for_function("poserunBoard.view() === 'tiles'", timeout=PAGE_MS)
    page.wait_for_function("document.querySelectorAll('#board .tile[data-athlete]').length === 100", timeout=PAGE_MS)
    assert not page.is_visible("#roster") and page.inner_text("#view") == "show roster"
    assert page.evaluate("localStorage.getItem('poserun.board.view')") == "tiles"
    page.evaluate("""() => { document.getElementById('tile-a007')._kept = true; window._r = poserunBoard.renders; }""")
    page.wait_for_function("poserunBoard.renders >= window._r + 5", timeout=PAGE_MS)
    assert page.evaluate("document.getElementById('tile-a007')._kept") is True  # tiles too: the same node
    page.reload()
    page.wait_for_function("document.querySelectorAll('#board .tile[data-athlete]').length === 100", timeout=PAGE_MS)
    assert page.evaluate("poserunBoard.view()") == "tiles"  # remembered over the automatic choice
    page.click("#view")
    page.wait_for_function("poserunBoard.view() === 'roster'", timeout=PAGE_MS)
    assert page.evaluate("localStorage.getItem('poserun.board.view')") == "roster"
    assert errors == []


def test_the_page_keeps_up_and_its_data_is_under_a_second_old(opener: Any) -> None:
    page, errors = opener()
    page.evaluate("window._r = poserunBoard.renders")
    # readiness, not a timing: within CEILING, 50 renders more, and at the latest one the oldest
    # athlete's data on screen is under a second old (bench/board.py measures the rates)
    page.wait_for_function("poserunBoard.renders >= window._r + 50 && poserunBoard.lastAge() !== null "
                           "&& poserunBoard.lastAge() < 1", timeout=PAGE_MS)
    assert page.evaluate("poserunBoard.status()") == "live" and page.inner_text("#status") == "live"
    page.wait_for_function("/^data \\d+\\.\\d s old/.test(document.getElementById('age').textContent)",
                           timeout=PAGE_MS)
    assert errors == []


def test_a_slow_page_is_sent_the_current_state_not_a_backlog(opener: Any, board: Served) -> None:
    page, errors = opener()
    page.wait_for_function("poserunBoard.lastAge() !== null && poserunBoard.lastAge() < 1", timeout=PAGE_MS)

    def mine() -> dict[str, int]:  # this page's socket (the only one open)
        [b] = board.call(board.sink.browsers)
        return b

    # the page's thread busy 900 ms of every second: it draws (and acknowledges) about once a second
    page.evaluate("window._slow = setInterval(() => { const end = performance.now() + 900; "
                  "while (performance.now() < end) {} }, 1000)")
    page.wait_for_timeout(1500)
    before, v0 = mine(), board.call(lambda: board.sink.version)
    unacked = []
    for _ in range(20):
        page.wait_for_timeout(250)
        unacked.append(mine()["unacked"])
    after, v1 = mine(), board.call(lambda: board.sink.version)
    assert max(unacked) <= WINDOW  # never more in flight, whatever the page does
    assert after["updates"] - before["updates"] < 0.6 * (v1 - v0)  # fewer updates than ticks: coalesced
    assert after["coalesced"] > before["coalesced"]
    assert after["buffered"] < 2**15 + 64 * 1024
    page.evaluate("clearInterval(window._slow)")
    page.evaluate("window._r = poserunBoard.renders")
    page.wait_for_function("poserunBoard.renders >= window._r + 10 && poserunBoard.lastAge() < 1", timeout=PAGE_MS)
    assert errors == []


def test_a_forced_landing_flashes_once(opener: Any) -> None:
    page, errors = opener()
    page.wait_for_selector("#roster-body tr.flash", timeout=PAGE_MS)
    who = page.eval_on_selector("#roster-body tr.flash", "el => el.dataset.athlete")
    page.wait_for_function(f"!document.getElementById('row-{who}').classList.contains('flash')", timeout=PAGE_MS)
    assert errors == []


def test_the_board_says_stale_when_records_stop(opener: Any, board: Served) -> None:
    page, errors = opener()
    page.wait_for_function("poserunBoard.status() === 'live'", timeout=PAGE_MS)
    board.feed.paused.set()
    try:
        page.wait_for_function("poserunBoard.status() === 'stale'", timeout=PAGE_MS)
        assert page.inner_text("#status").startswith("stale")  # said in words, not only by the dot's colour
        page.wait_for_function("document.querySelectorAll('#roster-body tr.stale').length === 100", timeout=PAGE_MS)
        assert page.inner_text("#row-a001 .age").startswith("no data")
        assert page.inner_text("#age").startswith("last data")
    finally:
        board.feed.paused.clear()
    page.wait_for_function("poserunBoard.status() === 'live' && !document.querySelector('#roster-body tr.stale')",
                           timeout=PAGE_MS)
    assert page.inner_text("#status") == "live"
    assert errors == []


def test_the_board_says_disconnected_when_the_server_goes(browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        with served_board(3) as small:
            wait_until(lambda: small.call(lambda: len(small.sink.tiles)) == 3, "3 athletes' records")
            page.goto(small.url)
            page.wait_for_function("poserunBoard.status() === 'live'", timeout=PAGE_MS)
            assert page.evaluate("poserunBoard.view()") == "tiles"  # fewer than 20 athletes
        page.wait_for_function("poserunBoard.status() === 'down'", timeout=PAGE_MS)
        assert page.inner_text("#status").startswith("disconnected")
    finally:
        context.close()


def test_athletes_are_in_the_natural_order_of_their_ids(browser: Any) -> None:
    ids = ["a2", "a100", "A10", "a1", "a11", "b3"]
    with served_board(0) as served:  # (no generated runners: only these athletes)
        asyncio.run_coroutine_threadsafe(served.sink.write_batch([stance(w) for w in ids]), served.loop).result(CEILING)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        try:
            page.goto(served.url)
            page.wait_for_function("document.querySelectorAll('#board [data-athlete]').length === 6", timeout=PAGE_MS)
            order = page.eval_on_selector_all("#board [data-athlete]", "ts => ts.map(t => t.dataset.athlete)")
        finally:
            page.close()
    assert order == ["a1", "a2", "A10", "a11", "a100", "b3"]  # not a1, A10, a100, a11, a2
