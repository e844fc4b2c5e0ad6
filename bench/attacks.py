"""The hostile-client attacks of issue 15, run against a running server on this machine.

    .venv/bin/python bench/attacks.py ws://127.0.0.1:9595/applet/websocket
    .venv/bin/python bench/attacks.py URL --seconds 2 --scale 0.2 --only ping_flood

Each attack runs for about ``--seconds`` (the half-open ones until the server's deadlines
have passed, at most ``--deadline`` seconds) with counts scaled by ``--scale``, while an
honest pair of checking bots plays against each other and an honest client pings ten
times a second. One line per attack: whether the server held (defended as designed, and
the honest players kept playing with no protocol violation), what was seen, and the
honest players' p99 during the attack (app-level ping round trip; choice to result).
Exit status 0 when every attack held.

Only loopback servers (127.0.0.0/8, ::1, localhost): this is a test of your own server,
not a tool for anyone else's. Everything is bounded in time and count and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs
import orjson
from aiohttp import WSMsgType

from bots.client import BotClient
from protocol import BotMode

SOCKETIO_PATH = "/applet/websocket/socket.io/?EIO=3&transport=websocket"


def loopback_only(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise SystemExit(f"refusing {host!r}: attacks.py runs against loopback only") from None
    return url


def p99(samples: list[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


# ---------------------------------------------------------------- the honest players


@attrs.define
class Honest:
    """Two checking bots playing each other and a client pinging, all the run long."""

    url: str
    pings: list[tuple[float, float]] = attrs.Factory(list)  # (when, round trip)
    choices: list[tuple[float, float]] = attrs.Factory(list)  # (when, choice -> result)
    failures: list[str] = attrs.Factory(list)
    stop: asyncio.Event = attrs.Factory(asyncio.Event)
    bots: list[BotClient] = attrs.Factory(list)

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(self._pinger(http), *(self._player(http, n) for n in range(2)))

    def window(self, start: float, end: float) -> tuple[float | None, float | None]:
        pings = [rtt for at, rtt in self.pings if start <= at <= end]
        choices = [rtt for at, rtt in self.choices if start <= at <= end]
        return p99(pings), p99(choices)

    async def _pinger(self, http: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            try:
                async with http.ws_connect(self.url) as ws:
                    await ws.send_str('{"type":"hello","name":"honest pinger"}')
                    await ws.receive(timeout=5)
                    while not self.stop.is_set():
                        sent = time.perf_counter()
                        await ws.send_str('{"type":"ping"}')
                        while True:
                            frame = await ws.receive(timeout=5)
                            if frame.type is not WSMsgType.TEXT:
                                raise ConnectionError(f"closed: {ws.close_code}")
                            if orjson.loads(frame.data)["type"] == "pong":
                                break
                        now = time.perf_counter()
                        self.pings.append((now, now - sent))
                        await asyncio.sleep(0.1)
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                self.failures.append(f"pinger: {exc!r}")
                await asyncio.sleep(0.2)

    async def _player(self, http: aiohttp.ClientSession, number: int) -> None:
        honest = self

        class Sink:
            def append(self, seconds: float, /) -> None:
                honest.choices.append((time.perf_counter(), seconds))

        bot = BotClient(
            self.url, mode=BotMode.NEVER, name=f"honest {number}", choice_latency=Sink()
        )
        self.bots.append(bot)
        while not self.stop.is_set():
            try:
                await bot.play(None, session=http, stop=self.stop)
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                self.failures.append(f"player {number}: {exc!r}")
                await asyncio.sleep(0.2)

    @property
    def violations(self) -> int:
        return sum(bot.report.violation_count for bot in self.bots)


# ---------------------------------------------------------------- the attacks


@attrs.frozen
class Outcome:
    held: bool
    seen: str


@attrs.frozen
class Target:
    url: str  # the game socket
    base: str  # http://host:port
    host: str
    port: int
    seconds: float
    deadline: float
    scale: float

    def count(self, full: int) -> int:
        return max(1, int(full * self.scale))


async def metric(http: aiohttp.ClientSession, target: Target, name: str) -> float:
    try:
        async with http.get(f"{target.base}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse, within: float) -> list[Any]:
    """Every text frame until the server closes (or ``within`` seconds pass)."""
    frames: list[Any] = []
    end = time.monotonic() + within
    while (left := end - time.monotonic()) > 0:
        try:
            frame = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if frame.type in (WSMsgType.PING, WSMsgType.PONG):
            continue
        if frame.type is not WSMsgType.TEXT:
            break
        frames.append(frame.data)
    return frames


async def slowloris(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """Sockets that send 10 bytes of an upgrade request, then a byte a second."""
    count = target.count(1000)
    started = time.monotonic()

    async def one() -> float | None:
        try:
            reader, writer = await asyncio.open_connection(target.host, target.port)
        except OSError:
            return 0.0  # refused at once also holds
        try:
            writer.write(b"GET /appl")
            while time.monotonic() - started < target.deadline:
                try:
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        return time.monotonic() - started
                except TimeoutError:
                    writer.write(b"i")
                    await writer.drain()
            return None
        except OSError:
            return time.monotonic() - started
        finally:
            writer.close()

    cut = await asyncio.gather(*(one() for _ in range(count)))
    closed = [t for t in cut if t is not None]
    slowest = max(closed, default=0.0)
    return Outcome(
        len(closed) == count,
        f"{len(closed)}/{count} half-sent requests cut, the last after {slowest:.1f} s",
    )


async def silent_sockets(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """WebSockets that never say hello."""
    count = target.count(200)
    sockets = []
    for _ in range(count):
        try:
            sockets.append(await http.ws_connect(target.url))
        except aiohttp.ClientError:
            break
    started = time.monotonic()
    closes = await asyncio.gather(*(read_until_closed(ws, target.deadline) for ws in sockets))
    codes = [ws.close_code for ws in sockets]
    told = sum(any("hello_timeout" in f for f in frames) for frames in closes)
    for ws in sockets:
        await ws.close()
    closed = sum(code == 1008 for code in codes)
    return Outcome(
        closed == len(sockets) == count,
        f"{closed}/{count} closed 1008 ({told} told hello_timeout) within "
        f"{time.monotonic() - started:.1f} s",
    )


async def guest_flood(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """Hellos without a token from one address, as fast as they go."""
    limit = target.count(5000)
    seen: dict[str, int] = {}
    end = time.monotonic() + target.seconds
    remembered_before = await metric(http, target, "rps_players_remembered")

    async def worker() -> None:
        while time.monotonic() < end and sum(seen.values()) < limit:
            try:
                async with http.ws_connect(target.url) as ws:
                    await ws.send_str('{"type":"hello"}')
                    reply = orjson.loads((await ws.receive(timeout=5)).data)
                    key = reply.get("code", reply["type"])
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                key = type(exc).__name__
            seen[key] = seen.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(20)))
    remembered = await metric(http, target, "rps_players_remembered")
    refused = seen.get("rate_limited", 0)
    return Outcome(
        refused > 0 or seen.get("hi", 0) < 200,
        f"{seen.get('hi', 0)} guests made, {refused} refused rate_limited; players in memory "
        f"{remembered_before:g} -> {remembered:g}",
    )


async def ping_flood(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """WebSocket ping frames back to back on three sockets."""

    async def one() -> tuple[int | None, bool, int]:
        ws = await http.ws_connect(target.url, autoping=False)
        reader = asyncio.create_task(read_until_closed(ws, target.seconds + 10))
        sent = 0
        # An attacker floods until it is cut off (here: at most this long, this many).
        end = time.monotonic() + target.seconds + 5
        try:
            while time.monotonic() < end and not reader.done() and sent < target.count(200_000):
                await ws.ping(b"x")
                sent += 1
                if sent % 100 == 0:
                    await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            pass
        frames = await reader
        await ws.close()
        return ws.close_code, any("flooding" in f for f in frames), sent

    before = await metric(http, target, 'rps_limited_total{limit="flooding"}')
    results = await asyncio.gather(*(one() for _ in range(3)))
    cut = await metric(http, target, 'rps_limited_total{limit="flooding"}') - before
    told = sum(code == 1008 and bye for code, bye, _ in results)
    # A flooder too busy to read its socket may miss its bye: the server then cuts it.
    return Outcome(
        cut >= 3,
        f"{cut:g}/3 ping flooders cut for flooding ({told} read bye and 1008) after "
        f"{', '.join(str(sent) for _, _, sent in results)} pings",
    )


async def message_flood(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """App-level pings back to back."""
    before = await metric(http, target, 'rps_limited_total{limit="flooding"}')
    ws = await http.ws_connect(target.url)
    try:
        for _ in range(target.count(2000)):
            await ws.send_str('{"type":"ping"}')
    except (ConnectionError, RuntimeError):
        pass
    frames = await read_until_closed(ws, target.seconds + 5)
    await ws.close()
    cut = await metric(http, target, 'rps_limited_total{limit="flooding"}') - before
    return Outcome(
        cut >= 1, f"cut for flooding: closed {ws.close_code} after {len(frames)} replies"
    )


async def handshake_flood(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """Upgrades opened and closed as fast as they go: a log amplifier, unless sampled."""
    before = await metric(http, target, "rps_log_lines_sampled_out_total")
    count = 0
    limit = target.count(20_000)
    end = time.monotonic() + target.seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < end and count < limit:
            try:
                ws = await http.ws_connect(target.url)
                await ws.close()
            except aiohttp.ClientError:
                pass
            count += 1

    await asyncio.gather(*(worker() for _ in range(20)))
    await asyncio.sleep(0.5)
    sampled = await metric(http, target, "rps_log_lines_sampled_out_total") - before
    # Below the sampler's burst (500 lines) nothing needs to be held back.
    return Outcome(
        sampled > 0 or count * 3 < 500,
        f"{count} upgrades; {sampled:g} per-connection log lines counted instead of written",
    )


async def many_sockets(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """Many WebSockets from one address at once (the cap is off by default: carrier NATs)."""
    count = target.count(2000)
    opened, refused = [], 0
    for _ in range(count):
        try:
            opened.append(await http.ws_connect(target.url))
        except aiohttp.WSServerHandshakeError as exc:
            refused += exc.status in (429, 503)
            if refused > 10:
                break
        except aiohttp.ClientError:
            break
    async with http.get(f"{target.base}/healthz") as response:
        healthy = response.status == 200
    for ws in opened:
        await ws.close()
    cap = "capped (429)" if refused else "no cap set (--max-connections-per-address)"
    return Outcome(healthy, f"{len(opened)} open at once, {cap}; /healthz still answered")


async def unmasked_frame(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """A client frame without a mask (RFC 6455 5.1: close with 1002)."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    key = base64.b64encode(os.urandom(16)).decode()
    path = urlsplit(target.url).path
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(request.encode())
    await reader.readuntil(b"\r\n\r\n")
    payload = b'{"type":"hello"}'
    writer.write(bytes([0x81, len(payload)]) + payload)
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except TimeoutError:
        data = b""
    writer.close()
    code = None
    if b"\x88" in data:
        at = data.rindex(b"\x88")
        code = int.from_bytes(data[at + 2 : at + 4], "big")
    return Outcome(code == 1002, f"closed with {code}")


async def oversized_frame(http: aiohttp.ClientSession, target: Target) -> Outcome:
    ws = await http.ws_connect(target.url)
    await ws.send_str("x" * 100_000)
    await read_until_closed(ws, 5)
    return Outcome(ws.close_code == 1009, f"closed with {ws.close_code}")


async def huge_ping_t(http: aiohttp.ClientSession, target: Target) -> Outcome:
    ws = await http.ws_connect(target.url)
    await ws.send_str('{"type":"hello"}')
    await ws.receive(timeout=5)
    await ws.send_str('{"type":"ping","t":123456789012345678901234567890}')
    reply = orjson.loads((await ws.receive(timeout=5)).data)
    await ws.close()
    exact = reply.get("t") == 123456789012345678901234567890
    return Outcome(
        exact or reply.get("code") == "invalid_field", f"answered {reply.get('code', reply)}"
    )


async def legacy_names(http: aiohttp.ClientSession, target: Target) -> Outcome:
    """A 2016-dialect client declares a hostile name and a tracker avatar; what does the
    opponent see?"""
    base = target.url.split("/applet/")[0]
    url = base + SOCKETIO_PATH

    async def demo() -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(url)
        for _ in range(2):  # engine.io's open packet, socket.io's connect
            await ws.receive(timeout=5)
        return ws

    async def event(ws: aiohttp.ClientWebSocketResponse, name: str) -> Any:
        while True:
            frame = await ws.receive(timeout=10)
            text = frame.data
            if isinstance(text, str) and text.startswith("42"):
                got, *data = orjson.loads(text[2:])
                if got == name:
                    return data[0] if data else None

    mallory, bob = await demo(), await demo()
    evil = "Mallory\u202e\u0000\u0007<img src=x>"
    user = {"uid": "mallory", "uname": evil, "uavatar": "http://tracker.example/p.gif"}
    await mallory.send_str("42" + orjson.dumps(["hello", {"user": user}]).decode())
    await event(mallory, "hi")
    await bob.send_str('42["hello",{"user":{"uid":"bob","uname":"Bob"}}]')
    await event(bob, "hi")
    await mallory.send_str('42["join"]')
    await bob.send_str('42["join"]')
    start = await event(bob, "start")
    shown = next(u for u in start["roomUsers"] if u["uid"] == "mallory")
    for ws in (mallory, bob):
        await ws.close()
    clean = shown["uname"].isprintable() and shown["uavatar"] is None
    return Outcome(clean, f"opponent sees {shown['uname']!r}, avatar {shown['uavatar']!r}")


ATTACKS: dict[str, Callable[[aiohttp.ClientSession, Target], Awaitable[Outcome]]] = {
    "slowloris": slowloris,
    "silent_sockets": silent_sockets,
    "ping_flood": ping_flood,
    "message_flood": message_flood,
    "handshake_flood": handshake_flood,
    "many_sockets": many_sockets,
    "unmasked_frame": unmasked_frame,
    "oversized_frame": oversized_frame,
    "huge_ping_t": huge_ping_t,
    "legacy_names": legacy_names,
    # Last: it spends this address's bucket for new guests (the honest players keep
    # their tokens, so they are not affected).
    "guest_flood": guest_flood,
}


async def run(args: argparse.Namespace) -> int:
    url = loopback_only(args.url)
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if scheme == "https" else 80)
    target = Target(
        url=url,
        base=f"{scheme}://{parts.netloc}",
        host=host,
        port=port,
        seconds=args.seconds,
        deadline=args.deadline,
        scale=args.scale,
    )
    names = args.only or list(ATTACKS)
    connector = aiohttp.TCPConnector(limit=0)
    failed = 0
    async with aiohttp.ClientSession(connector=connector) as http:
        honest = Honest(url)
        players = asyncio.create_task(honest.run(http))
        await asyncio.sleep(args.warmup)
        start, end = time.perf_counter() - args.warmup, time.perf_counter()
        ping, choice = honest.window(start, end)
        print(f"{'baseline':<16} {'-':<8} {'no attack':<72} honest p99 {ms(ping)} / {ms(choice)}")
        for name in names:
            violations, failures = honest.violations, len(honest.failures)
            start = time.perf_counter()
            try:
                async with asyncio.timeout(args.deadline + args.seconds + 30):
                    outcome = await ATTACKS[name](http, target)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                outcome = Outcome(False, f"the attack itself failed: {exc!r}")
            await asyncio.sleep(0.3)  # the honest players' latest samples
            end = time.perf_counter()
            ping, choice = honest.window(start, end)
            honest_ok = honest.violations == violations and len(honest.failures) == failures
            held = outcome.held and honest_ok
            failed += not held
            verdict = "held" if held else "NOT HELD"
            note = "" if honest_ok else f" [honest players hurt: {honest.failures[failures:][:2]}]"
            print(
                f"{name:<16} {verdict:<8} {outcome.seen:<72} "
                f"honest p99 {ms(ping)} / {ms(choice)}{note}",
                flush=True,
            )
        honest.stop.set()
        players.cancel()
        await asyncio.gather(players, return_exceptions=True)
    print("honest p99: app-level ping round trip / choice -> result")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="the game socket, e.g. ws://127.0.0.1:9595/applet/websocket")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each flood")
    parser.add_argument(
        "--deadline",
        type=float,
        default=20.0,
        help="how long half-open sockets wait to be cut (above the server's request and "
        "hello timeouts)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every count")
    parser.add_argument("--warmup", type=float, default=2.0, help="honest play before the first")
    parser.add_argument("--only", action="append", choices=list(ATTACKS), help="these attacks")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
