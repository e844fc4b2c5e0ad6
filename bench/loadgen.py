"""One load-generator process: N WebSocket clients in one of four modes, a JSON report.

- ``play``: bots that hello, join (bot "never"), answer every ``start`` at once with a
  random hand and join again after each match; records choice->result latency.
- ``echo``: clients that send a game-sized text frame and wait for it to come back.
- ``idle``: clients that say hello and sit; ``--pingers`` of them send an app-level ping
  every second and record the round trip.
- ``legacy``: the 2016 demo's clients on its Socket.IO dialect (the URL its page builds):
  hello, join, and in each game (one 3-second round) choose once at a random moment,
  then join again at once; no latency (a game always lasts its 3 s).

The orchestrator (``bench/bench.py``) starts several of these so the load generator is
not the bottleneck, and merges their reports. Each prints a line on stdout as its
measured window starts and another as it ends, so the orchestrator can sample the
server's CPU over the same window, and reports its own CPU time with its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType

HANDS = ("rock", "paper", "scissors")
RESERVOIR = 20_000
ECHO_FRAME = orjson.dumps(
    {"type": "choice", "match_id": "m_0123456789ab", "round": 1, "choice": "rock"}
)


class Pacer:
    """Spaces joins evenly at ``rate`` per second across this process's clients (0: off)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.matches = 0
        self.latencies: list[float] = []  # seconds; a uniform reservoir sample
        self.latency_count = 0
        self._rng = random.Random(0)
        self.errors: dict[str, int] = {}
        self.connected = 0
        self.failed = 0
        self.measuring = False
        self.expected = 0
        self.all_settled = asyncio.Event()  # every client connected or failed

    def settle(self) -> None:
        if self.connected + self.failed >= self.expected:
            self.all_settled.set()

    def latency(self, seconds: float) -> None:
        """Reservoir sampling (algorithm R): bounded memory, unbiased percentiles."""
        self.latency_count += 1
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(seconds)
        else:
            slot = self._rng.randrange(self.latency_count)
            if slot < RESERVOIR:
                self.latencies[slot] = seconds

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def play(
    ws: aiohttp.ClientWebSocketResponse, stats: Stats, rng: random.Random, pacer: Pacer
) -> None:
    await ws.send_frame(b'{"type":"hello"}', WSMsgType.TEXT)
    await pacer.wait()
    await ws.send_frame(b'{"type":"join","bot":"never"}', WSMsgType.TEXT)
    stats.sent += 2
    chosen_at = 0.0
    loads = orjson.loads
    dumps = orjson.dumps
    async for frame in ws:
        if frame.type is not WSMsgType.TEXT:
            break
        stats.received += 1
        message = loads(frame.data)
        kind = message["type"]
        if kind == "start":
            chosen_at = time.perf_counter()
            await ws.send_frame(
                dumps(
                    {
                        "type": "choice",
                        "match_id": message["match_id"],
                        "round": message["round"],
                        "choice": rng.choice(HANDS),
                    }
                ),
                WSMsgType.TEXT,
            )
            stats.sent += 1
        elif kind == "result":
            if stats.measuring and chosen_at:
                stats.latency(time.perf_counter() - chosen_at)
            if message["match_over"]:
                if stats.measuring:
                    stats.matches += 1
                await pacer.wait()
                await ws.send_frame(b'{"type":"join","bot":"never"}', WSMsgType.TEXT)
                stats.sent += 1
        elif kind == "error" and stats.measuring:
            # Outside the window, players of a load generator that stopped first vanish
            # mid-match and in-flight choices are refused: correct, and not measured.
            stats.error(message["code"])


async def echo(ws: aiohttp.ClientWebSocketResponse, stats: Stats, rng: random.Random) -> None:
    while True:
        await ws.send_frame(ECHO_FRAME, WSMsgType.TEXT)
        stats.sent += 1
        frame = await ws.receive()
        if frame.type is not WSMsgType.TEXT:
            break
        stats.received += 1
        # Parse like a game client would, so both modes do the same client-side work.
        orjson.loads(frame.data)


async def idle(
    ws: aiohttp.ClientWebSocketResponse, stats: Stats, rng: random.Random, pinger: bool
) -> None:
    await ws.send_frame(b'{"type":"hello"}', WSMsgType.TEXT)
    frame = await ws.receive()
    if frame.type is not WSMsgType.TEXT or orjson.loads(frame.data)["type"] != "hi":
        stats.error("no hi")
        stats.failed += 1
        stats.settle()
        return
    stats.connected += 1
    stats.settle()
    if not pinger:
        await ws.receive()  # sit until the server closes
        return
    await asyncio.sleep(rng.random())
    while True:
        sent_at = time.perf_counter()
        await ws.send_frame(b'{"type":"ping"}', WSMsgType.TEXT)
        frame = await ws.receive()
        if frame.type is not WSMsgType.TEXT:
            break
        if stats.measuring:
            stats.latency(time.perf_counter() - sent_at)
        await asyncio.sleep(1.0)


LEGACY_HANDS = (1, 2, 3)  # scissors, rock, paper in the demo's numbers


async def legacy(ws: aiohttp.ClientWebSocketResponse, stats: Stats, rng: random.Random) -> None:
    """A demo client: its frames are Socket.IO events (``42["event",data]``)."""
    loop = asyncio.get_running_loop()
    me = f"u{rng.getrandbits(40):x}"
    hello = orjson.dumps(["hello", {"user": {"uid": me, "uname": "bench"}}])
    join = b'42["join"]'
    await ws.send_frame(b"42" + hello, WSMsgType.TEXT)
    stats.sent += 1
    robot = False
    choosing: asyncio.TimerHandle | None = None
    sending: set[asyncio.Task[None]] = set()

    async def send(frame: bytes) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):  # closing: the end
            await ws.send_frame(frame, WSMsgType.TEXT)

    def choose() -> None:
        frame = b"42" + orjson.dumps(["choice", {"choice": rng.choice(LEGACY_HANDS)}])
        stats.sent += 1
        task = loop.create_task(send(frame))
        sending.add(task)
        task.add_done_callback(sending.discard)

    async for frame in ws:
        if frame.type is not WSMsgType.TEXT:
            break
        stats.received += 1
        data = frame.data
        if not data.startswith("42"):
            continue  # the Engine.IO open and Socket.IO connect packets
        event, payload = orjson.loads(data[2:])
        if event == "hi":
            await ws.send_frame(join, WSMsgType.TEXT)
            stats.sent += 1
        elif event == "start":
            robot = any(
                u["uid"] != me and str(u["uid"]).startswith("robot-") for u in payload["roomUsers"]
            )
            choosing = loop.call_later(rng.uniform(0.1, 2.5), choose)
        elif event == "result":
            if choosing is not None:
                choosing.cancel()
            if stats.measuring:
                # Two humans count a game once each; a robot's game is counted here alone.
                stats.matches += 2 if robot else 1
            await ws.send_frame(join, WSMsgType.TEXT)
            stats.sent += 1
        elif event == "error" and stats.measuring:
            stats.error(payload["code"])
    if choosing is not None:
        choosing.cancel()


async def client(
    session: aiohttp.ClientSession,
    url: str,
    mode: str,
    stats: Stats,
    rng: random.Random,
    pinger: bool,
    gate: asyncio.Semaphore,
    pacer: Pacer,
) -> None:
    try:
        async with gate:
            ws = await session.ws_connect(url, autoping=True, max_msg_size=1 << 16)
        async with ws:
            if mode == "play":
                await play(ws, stats, rng, pacer)
            elif mode == "echo":
                await echo(ws, stats, rng)
            elif mode == "legacy":
                await legacy(ws, stats, rng)
            else:
                await idle(ws, stats, rng, pinger)
    except (aiohttp.ClientError, OSError) as exc:
        stats.failed += 1
        stats.error(type(exc).__name__)
        stats.settle()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    stats.expected = args.clients
    rng = random.Random(args.seed)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    pacer = Pacer(2 * args.match_rate)  # two joins make a match
    gate = asyncio.Semaphore(200)  # connects in flight; the server's backlog is finite
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [
            asyncio.create_task(
                client(
                    session,
                    args.url,
                    args.mode,
                    stats,
                    random.Random(rng.getrandbits(64)),
                    index < args.pingers,
                    gate,
                    pacer,
                )
            )
            for index in range(args.clients)
        ]
        # Warm up until told to measure (a line on stdin), or for --warmup seconds.
        await asyncio.sleep(args.warmup)
        if args.mode == "idle":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.all_settled.wait(), args.connect_timeout)
            print(orjson.dumps({"connected": stats.connected}).decode(), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stats.measuring = True
        sent0, received0, started = stats.sent, stats.received, time.perf_counter()
        cpu0 = time.process_time()
        # The orchestrator samples the server's CPU between these two lines.
        print(orjson.dumps({"window": "start"}).decode(), flush=True)
        await asyncio.sleep(args.duration)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        stats.measuring = False
        print(orjson.dumps({"window": "end"}).decode(), flush=True)
        sent, received = stats.sent - sent0, stats.received - received0
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "mode": args.mode,
        "clients": args.clients,
        "connected": stats.connected,
        "seconds": elapsed,
        "cpu_seconds": cpu,  # this process's, over the window
        "sent": sent,
        "received": received,
        "matches": stats.matches,
        "latencies": stats.latencies,
        "errors": stats.errors,
        "failed": stats.failed,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["play", "echo", "idle", "legacy"], required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--pingers", type=int, default=0)
    parser.add_argument(
        "--match-rate",
        type=float,
        default=0.0,
        help="play mode: matches/s this process offers (joins are paced); 0 = as fast as possible",
    )
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, help="write the JSON report here, not stdout")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(main(parse_args()))
    else:
        report = uvloop.run(main(parse_args()))
    arguments = parse_args()
    data = orjson.dumps(report)
    if arguments.report:
        # A file, not the pipe: stdout may be non-blocking under the event loop and cut a
        # large report short.
        arguments.report.write_bytes(data)
    else:
        sys.stdout.write(data.decode() + "\n")
