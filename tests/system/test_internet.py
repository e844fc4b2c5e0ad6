"""Attacks from the open internet against a real server process, over real sockets.

Each test is one attack from issue 15's list that the server used to lose to, run the
way an attacker would (raw sockets, no client library's manners), with an honest
checking bot playing meanwhile where that is the point.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from bots.client import BotClient
from protocol import BotMode
from tests.support.processes import FAST_GAME, ServerProcess, launch


async def _slow_request(port: int, trickle: float, give_up: float) -> float | None:
    """Send 10 bytes of an upgrade request, then one byte every ``trickle`` seconds;
    the seconds until the server closed the socket, or None if it never did."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0  # refused outright also holds
    try:
        writer.write(b"GET /appl")
        while time.monotonic() - started < give_up:
            try:
                if await asyncio.wait_for(reader.read(1024), trickle) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                writer.write(b"i")
                await writer.drain()
        return None
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()


async def test_half_sent_requests_are_cut_at_the_request_deadline(
    processes: list[ServerProcess],
) -> None:
    proc = await launch(*FAST_GAME, "--request-timeout", "1.5")
    processes.append(proc)
    slow = [asyncio.create_task(_slow_request(proc.port, 0.25, 8.0)) for _ in range(300)]
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
        assert _metric(metrics, "rps_http_connections") >= 300  # they show while they last
        # Meanwhile honest players connect, play, and the health check answers.
        report = await BotClient(proc.url, mode=BotMode.NOW).play(2, session=http)
        assert (report.matches, report.violations, report.errors) == (2, [], [])
        health = await http.get(f"{proc.http}/healthz")
        assert health.status == 200
    closed_after = await asyncio.gather(*slow)
    assert None not in closed_after, "a half-sent request outlived the deadline"
    assert max(t for t in closed_after if t is not None) < 4.0
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
    assert _metric(metrics, "rps_http_connections") < 10


async def test_open_websockets_count_as_tcp_connections_while_they_last(
    processes: list[ServerProcess],
) -> None:
    # On the fast path a WebSocket leaves aiohttp once upgraded; the gauge counts it still.
    proc = await launch(*FAST_GAME)
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(proc.url) for _ in range(30)]
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
        assert _metric(metrics, "rps_http_connections") >= 30
        for ws in sockets:
            await ws.close()
        for _ in range(100):
            metrics = await (await http.get(f"{proc.http}/metrics")).text()
            if _metric(metrics, "rps_http_connections") < 5:
                break
            await asyncio.sleep(0.05)
        assert _metric(metrics, "rps_http_connections") < 5


async def test_a_socket_that_never_says_hello_is_closed_with_1008(
    processes: list[ServerProcess],
) -> None:
    proc = await launch(*FAST_GAME, "--hello-timeout", "1")
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        silent = await http.ws_connect(proc.url)
        talker = await http.ws_connect(proc.url)
        await talker.send_str('{"type":"hello","name":"Talker"}')
        started = time.monotonic()
        frame = await silent.receive(timeout=5)
        assert frame.type is WSMsgType.TEXT
        assert orjson.loads(frame.data) == {"type": "bye", "reason": "hello_timeout"}
        frame = await silent.receive(timeout=5)
        assert frame.type is WSMsgType.CLOSE
        assert silent.close_code == 1008
        assert frame.extra == "hello_timeout"
        assert 0.5 < time.monotonic() - started < 3.0
        assert orjson.loads((await talker.receive(timeout=5)).data)["type"] == "hi"
        await asyncio.sleep(1.5)
        assert not talker.closed
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
        assert 'rps_limited_total{limit="hello_timeout"} 1.0' in metrics


def test_the_file_limit_is_raised_to_the_hard_limit_and_a_low_one_is_reported() -> None:
    import resource

    import structlog

    from game_server.cli.main import raise_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"needs a finite hard file limit above 256, not {hard}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        with structlog.testing.capture_logs() as logs:
            assert raise_file_limit(1000) == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert not [e for e in logs if e["event"] == "file_limit_low"]
        with structlog.testing.capture_logs() as logs:
            raise_file_limit(hard + 1)
        (low,) = [e for e in logs if e["event"] == "file_limit_low"]
        assert (low["limit"], low["needed"]) == (hard, hard + 1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_the_logs_show_the_address_a_trusted_proxy_names_and_no_other(
    processes: list[ServerProcess],
) -> None:
    proc = await launch(*FAST_GAME, "--trusted-proxies", "127.0.0.2/32")
    processes.append(proc)
    for local in ("127.0.0.2", "127.0.0.1"):
        connector = aiohttp.TCPConnector(local_addr=(local, 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            ws = await http.ws_connect(proc.url, headers={"X-Forwarded-For": "198.51.100.7"})
            await ws.send_str(orjson.dumps({"type": "hello", "name": local}).decode())
            assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "hi"
            await ws.close()
    assert await proc.stop() == 0
    await asyncio.sleep(0.1)  # the reader task drains stderr
    upgrades = [e for e in proc.events if e["event"] == "http" and e["path"] == "/applet/websocket"]
    assert [e["remote"] for e in upgrades] == ["198.51.100.7", "127.0.0.1"]
    hellos = [e for e in proc.events if e["event"] == "hello"]
    assert [e["remote"] for e in hellos] == ["198.51.100.7", "127.0.0.1"]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


async def _guest_flood(url: str, count: int, workers: int = 20) -> dict[str, int]:
    """``count`` connections that each say hello without a token and leave."""
    seen: dict[str, int] = {}
    left = iter(range(count))

    async def worker(http: aiohttp.ClientSession) -> None:
        for _ in left:
            async with http.ws_connect(url) as ws:
                await ws.send_str('{"type":"hello"}')
                reply = orjson.loads((await ws.receive(timeout=5)).data)
                key = reply.get("code", reply["type"])
                seen[key] = seen.get(key, 0) + 1

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return seen


async def test_a_guest_flood_leaves_no_rows_and_no_memory_behind(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    db = tmp_path / "rps.db"
    proc = await launch(*FAST_GAME, "--db", str(db))
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        honest = BotClient(proc.url, mode=BotMode.NOW)
        await honest.play(1, session=http)  # a player that played: stored, with a token
        warm = await _guest_flood(proc.url, 300)  # warm up what a first flood allocates
        before = _rss_kib(proc.process.pid)
        seen = await _guest_flood(proc.url, 3000)
        after = _rss_kib(proc.process.pid)
        # The address's bucket let a burst of guests in and refused the rest of the flood.
        assert warm.get("hi", 0) + seen.get("hi", 0) >= 200
        assert seen.get("rate_limited", 0) >= 1000
        # The honest player comes back with its token whatever the flood did.
        await honest.play(2, session=http)
        assert honest.report.violation_count == 0, honest.report.violations
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
    # In memory: the honest player and the guests let in this last minute, no more.
    assert _metric(metrics, "rps_players_remembered") <= 1 + warm["hi"] + seen.get("hi", 0)
    assert _metric(metrics, 'rps_limited_total{limit="guest_rate"}') >= 1000
    assert after - before < 4096, f"RSS grew {after - before} KiB over the flood"
    assert await proc.stop() == 0
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM players").fetchone()
    assert rows == 1  # the honest player; no guest that never played


async def test_a_handshake_flood_is_counted_in_metrics_not_written_to_the_log(
    processes: list[ServerProcess],
) -> None:
    proc = await launch(*FAST_GAME)
    processes.append(proc)
    lines_before = len(proc.events)
    async with aiohttp.ClientSession() as http:

        async def upgrades(count: int) -> None:
            for _ in range(count):
                ws = await http.ws_connect(proc.url)
                await ws.close()

        await asyncio.gather(*(upgrades(100) for _ in range(20)))  # 2,000 connections
        honest = await BotClient(proc.url, mode=BotMode.NOW).play(1, session=http)
        assert honest.violation_count == 0
        await asyncio.sleep(0.2)  # the log thread writes its last batch
        metrics = await (await http.get(f"{proc.http}/metrics")).text()
    written = len(proc.events) - lines_before
    # Each connection was ~3 lines (access, connected, disconnected): 6,000 before.
    assert written < 1500, written
    sampled = sum(
        _metric(metrics, f'rps_log_lines_sampled_out_total{{event="{event}"}}')
        for event in ("http", "connected", "disconnected")
    )
    assert written + sampled >= 6000
    # The match's lines are never sampled out.
    assert any(e["event"] == "match_over" for e in proc.events)
