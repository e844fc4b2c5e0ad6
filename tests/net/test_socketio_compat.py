"""The 2016 demo's Socket.IO dialect end to end: a real server on 127.0.0.1, raw WebSocket
clients speaking it the way the demo's ~100-line class does, and the real socket.io-client 2.

The legacy lobby keeps the demo's own rules (one round, 3 s to choose, a robot after 1 s),
so these tests take real seconds: each game lasts until its 3 s deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yarl
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from game_server.net.appkeys import SERVICE
from game_server.net.socketio import LEGACY_BOT_AFTER, LEGACY_LOBBY, SOCKETIO_PATH
from protocol import LEGACY_NUMBERS, Outcome, judge
from tests.conftest import ServerFactory
from tests.support.processes import close_code, require_program

READ_TIMEOUT = 6.0
QUERY = "?EIO=3&transport=websocket"
# The demo's config.js: socketPath = basePath + "/socket.io". Its page connects the socket
# class to `wss://${host}${socketPath}/`, and the class dials `${url}/?EIO=3&transport=
# websocket`: two slashes.
DEMO_SOCKET_PATH = "/applet/websocket/socket.io"
ROBOT_UID = re.compile(r"robot-[1-9][0-9]*")


def demo_url(host: str, scheme: str = "ws") -> str:
    """Exactly the URL the demo's page and socket class build, for ``host`` (host:port)."""
    page_url = f"{scheme}://{host}{DEMO_SOCKET_PATH}/"
    return f"{page_url}/?EIO=3&transport=websocket"


# The demo's parser: engine.io type, socket.io type, the rest.
PACKET = re.compile(r"^(\d)(\d?)(.*)$", re.DOTALL)
NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "socketio-test"


class DemoClient:
    """The demo's hand-written Socket.IO client, over aiohttp instead of wx.connectSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, handshake: dict[str, Any]) -> None:
        self.ws = ws
        self.handshake = handshake

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, server: TestServer, path: str | None = None
    ) -> DemoClient:
        """Dial what the demo dials, or ``path`` (with the query) if one is given."""
        if path is None:
            url = demo_url(f"{server.host}:{server.port}")
        else:
            url = str(server.make_url(path)) + QUERY
        ws = await http.ws_connect(url)
        opening = await cls._text(ws)
        assert opening.startswith("0"), opening
        assert await cls._text(ws) == "40"  # connected to the default namespace
        return cls(ws, orjson.loads(opening[1:]))

    @staticmethod
    async def _text(ws: aiohttp.ClientWebSocketResponse) -> str:
        frame = await ws.receive(timeout=READ_TIMEOUT)
        assert frame.type is WSMsgType.TEXT, (frame.type, frame.data, ws.close_code)
        text: str = frame.data
        return text

    async def emit(self, event: str, data: Any = None) -> None:
        body = [event] if data is None else [event, data]
        await self.ws.send_str("42" + orjson.dumps(body).decode())

    async def frame(self) -> str:
        return await self._text(self.ws)

    async def next_event(self) -> tuple[str, Any]:
        """The next frame, which must be an event: its name and data."""
        text = await self.frame()
        match = PACKET.match(text)
        assert match is not None, text
        assert match.group(1, 2) == ("4", "2"), text
        event, *rest = orjson.loads(match.group(3))
        return event, rest[0] if rest else None

    async def event(self, name: str, *, skip: tuple[str, ...] = ()) -> Any:
        """The next event called ``name``; events in ``skip`` may come first, nothing else."""
        while True:
            event, data = await self.next_event()
            if event in skip:
                continue
            assert event == name, (event, data)
            return data

    async def hello(self, uid: Any, uname: str) -> dict[str, Any]:
        avatar = f"https://example.com/{uid}.png"
        await self.emit("hello", {"user": {"uid": uid, "uname": uname, "uavatar": avatar}})
        hi: dict[str, Any] = await self.event("hi")
        return hi

    async def closed(self) -> int | None:
        return await close_code(self.ws, READ_TIMEOUT)


def scores(entry: dict[str, Any]) -> tuple[int, int, int]:
    return entry["roundScore"], entry["totalScore"], entry["winStreak"]


async def test_a_demo_client_plays_a_robot(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(bot_think=(0.0, 0.3))
    # A native player waiting for a human: legacy players have their own queue.
    native = await http.ws_connect(server.make_url("/applet/websocket"))
    await native.send_json({"type": "hello", "name": "Native"})
    assert (await native.receive_json(timeout=READ_TIMEOUT))["type"] == "hi"
    await native.send_json({"type": "join", "bot": "never"})
    assert (await native.receive_json(timeout=READ_TIMEOUT))["type"] == "queued"

    ann = await DemoClient.connect(http, server)
    assert ann.handshake["upgrades"] == []
    assert (ann.handshake["pingInterval"], ann.handshake["pingTimeout"]) == (25000, 60000)
    assert isinstance(ann.handshake["sid"], str)
    assert len(ann.handshake["sid"]) >= 16
    await ann.ws.send_str("2probe")
    assert await ann.frame() == "3probe"
    await ann.ws.send_str("2")
    assert await ann.frame() == "3"

    await ann.emit("join")  # before hello
    assert (await ann.event("error"))["code"] == "hello_required"
    hi = await ann.hello("u-ann", "Ann")
    assert hi == {"message": "welcome", "nearby": 2}

    joined = time.monotonic()
    await ann.emit("join")
    start = await ann.event("start")
    assert time.monotonic() - joined >= 0.9  # the robot sits down after 1 s, as in the demo
    assert start["gameTime"] == 3
    users = start["roomUsers"]
    assert len(users) == 2
    mine = next(u for u in users if u["uid"] == "u-ann")
    robot = next(u for u in users if u["uid"] != "u-ann")
    assert mine == {
        "uid": "u-ann",
        "uname": "Ann",
        "uavatar": "https://example.com/u-ann.png",
        "choice": None,
        "roundScore": 0,
        "totalScore": 0,
        "winStreak": 0,
    }
    # The demo's robots: "robot-N", with a picture its page can show (the demo's page puts
    # the opponent's uavatar in an <image>: an absolute URL, on the server it reached).
    assert ROBOT_UID.fullmatch(robot["uid"]), robot
    assert robot["uname"]
    assert robot["uavatar"] == f"http://{server.host}:{server.port}/applet/avatars/robot.png"
    async with http.get(robot["uavatar"]) as picture:
        assert picture.status == 200
        assert picture.content_type == "image/png"
        assert "max-age" in picture.headers["Cache-Control"]
        assert (await picture.read()).startswith(b"\x89PNG\r\n\x1a\n")
    assert len(server.app[SERVICE].matchmaker) == 1  # the native player still waits

    started = time.monotonic()
    for choice in (1, 2, 3):  # scissors, rock, then paper: changeable until the deadline
        await ann.emit("choice", {"choice": choice})
    # The robot changes its mind a few times (tests/core/test_house_bot.py); the match tells
    # of a seat's first choice in a round, so at least one movement comes, all the robot's.
    movements = []
    while (name_and_data := await ann.next_event())[0] == "movement":
        movements.append(name_and_data[1])
    assert name_and_data[0] == "result", name_and_data
    result = name_and_data[1]["result"]
    assert time.monotonic() - started >= 2.5  # resolved at the deadline, not on the first tap
    assert movements
    assert all(m == {"uid": robot["uid"], "movement": "choice"} for m in movements), movements
    assert [e["uid"] for e in result] == [u["uid"] for u in users]
    mine = next(e for e in result if e["uid"] == "u-ann")
    robot = next(e for e in result if e["uid"] != "u-ann")
    assert mine["choice"] == 3
    assert robot["choice"] in (1, 2, 3)  # the house bot always plays
    outcome = judge(LEGACY_NUMBERS[3], LEGACY_NUMBERS[robot["choice"]])
    expected = {
        Outcome.WIN: ((1, 1, 1), (0, 0, 0)),
        Outcome.LOSE: ((0, 0, 0), (1, 1, 1)),
        Outcome.DRAW: ((0, 0, 0), (0, 0, 0)),
    }[outcome]
    assert (scores(mine), scores(robot)) == expected

    # Mistakes get error events, and the socket stays usable.
    for frame, code in (
        ('42["dance",{}]', "unknown_type"),
        ('42["choice",{"choice":2}]', "not_in_match"),
        ('42["face",{"face":9}]', "invalid_field"),
        ('42["join"', "bad_json"),
        ("x", "unknown_type"),
        ('451-["x",{"_placeholder":true,"num":0}]', "unsupported_frame"),
    ):
        await ann.ws.send_str(frame)
        error = await ann.event("error")
        assert error["code"] == code, (frame, error)
        assert error["message"]
    await ann.ws.send_bytes(b'42["join"]')
    assert (await ann.event("error"))["code"] == "unsupported_frame"
    await ann.ws.send_str('427["hello",{}]')  # acked: the outcome comes in the ack
    assert await ann.frame() == '437[{"code":"already_hello","message":"you already said hello"}]'
    await ann.ws.send_str("2")
    assert await ann.frame() == "3"
    await native.close()


async def test_two_demo_clients_play_each_other_and_see_each_others_uids(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann, bob = await DemoClient.connect(http, server), await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    assert (await bob.hello(1002, "Bob"))["nearby"] == 2
    # Ann wins twice in a row: her round score is her new streak, 1 then 2.
    for game, (ann_hands, bob_hand, ann_after) in enumerate(
        (([2, 3], 2, (1, 1, 1)), ([3, 1], 3, (2, 3, 2))), start=1
    ):
        await ann.emit("join")
        await bob.emit("join")
        ann_start, bob_start = await ann.event("start"), await bob.event("start")
        assert ann_start == bob_start  # the same room, the same list, like the demo's
        users = {u["uid"]: u for u in ann_start["roomUsers"]}
        assert set(users) == {"u-ann", 1002}
        assert (users[1002]["uname"], users[1002]["uavatar"]) == (
            "Bob",
            "https://example.com/1002.png",
        )
        assert (users["u-ann"]["totalScore"], users["u-ann"]["winStreak"]) == (
            (0, 0) if game == 1 else (1, 1)
        )

        await ann.emit("face", {"face": 2})
        assert await bob.event("movement") == {"uid": "u-ann", "movement": "face", "face": 2}
        for hand in ann_hands:
            await ann.emit("choice", {"choice": hand})
        assert await bob.event("movement") == {"uid": "u-ann", "movement": "choice"}
        await bob.emit("choice", {"choice": bob_hand})
        assert await ann.event("movement") == {"uid": 1002, "movement": "choice"}

        ann_result = (await ann.event("result"))["result"]
        bob_result = (await bob.event("result"))["result"]  # only one movement each
        assert ann_result == bob_result
        entries = {e["uid"]: e for e in ann_result}
        assert entries["u-ann"]["choice"] == ann_hands[-1]
        assert entries[1002]["choice"] == bob_hand
        assert scores(entries["u-ann"]) == ann_after
        assert scores(entries[1002]) == (0, 0, 0)
    assert server.app[SERVICE].matches_finished == 2


async def test_a_disconnect_packet_ends_the_session_at_once(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=20)
    service = server.app[SERVICE]
    queue = service.lobbies[LEGACY_LOBBY].matchmaker
    ann = await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    await ann.emit("join")
    await asyncio.sleep(0.1)
    assert len(queue) == 1
    await ann.ws.send_str("41")
    assert await ann.closed() == 1000
    assert len(queue) == 0  # no grace for a goodbye: nobody is paired with a ghost
    assert service.online == 0

    # Mid-game, the one who stays wins at once rather than at the deadline.
    bob, cat = await demo_game(http, server, "Bob", "Cat")
    await cat.emit("choice", {"choice": 2})
    left = time.monotonic()
    await cat.ws.send_str("1")  # engine.io close: the same
    result = (await bob.event("result", skip=("movement",)))["result"]
    assert time.monotonic() - left < 1.5
    entries = {e["uid"]: e for e in result}
    assert scores(entries["u-bob"]) == (1, 1, 1)
    assert scores(entries["u-cat"]) == (0, 0, 0)


async def demo_game(
    http: aiohttp.ClientSession, server: TestServer, first: str, second: str
) -> tuple[DemoClient, DemoClient]:
    """Two demo clients (uids ``u-<name>``) that said hello, joined and got one game."""
    clients = await DemoClient.connect(http, server), await DemoClient.connect(http, server)
    for client, name in zip(clients, (first, second), strict=True):
        await client.hello(f"u-{name.lower()}", name)
    for client in clients:
        await client.emit("join")
    for client in clients:
        await client.event("start")
    return clients


async def healthz(http: aiohttp.ClientSession, server: TestServer) -> dict[str, Any]:
    async with http.get(server.make_url("/healthz")) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def synced(client: DemoClient) -> None:
    """Frames are handled in order: once a ping's pong is back, so is all before it."""
    await client.ws.send_str("2")
    assert await client.frame() == "3"


async def test_leave_while_queued_takes_the_player_out_of_the_queue(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=20)
    ann = await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    await ann.emit("join")
    await synced(ann)
    assert (await healthz(http, server))["queue"] == 1
    left = time.monotonic()
    await ann.emit("leave")  # no event answers it: the demo had no "left"
    await synced(ann)
    assert (await healthz(http, server))["queue"] == 0
    # No robot sits down for a player who left: nothing arrives past the robot's delay.
    with pytest.raises(TimeoutError):
        await ann.ws.receive(timeout=LEGACY_BOT_AFTER + 0.5)
    assert time.monotonic() - left >= LEGACY_BOT_AFTER
    assert (await healthz(http, server))["matches"] == 0
    await ann.emit("leave")  # leaving again, not queued: nothing to do, no error
    await synced(ann)

    # The socket and the player stay: a new join gets the robot after its 1 s.
    await ann.ws.send_str('427["join"]')
    assert await ann.frame() == "437[null]"
    users = (await ann.event("start"))["roomUsers"]
    assert users[0]["uid"] == "u-ann"
    assert (await healthz(http, server))["queue"] == 0


async def test_leave_during_a_game_forfeits_it_to_the_other_player(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann, bob = await demo_game(http, server, "Ann", "Bob")
    await ann.emit("choice", {"choice": 1})  # scissors: Bob's rock would beat it
    assert await bob.event("movement") == {"uid": "u-ann", "movement": "choice"}
    await bob.emit("choice", {"choice": 2})
    assert await ann.event("movement") == {"uid": "u-bob", "movement": "choice"}
    left = time.monotonic()
    await bob.ws.send_str('429["leave"]')  # acked: the ack comes once the game is over
    # Both get the game's result at once, not at the 3 s deadline: the one who stays wins
    # (the demo's scoring: streak 1, round score 1, total 1), whatever the hands were.
    ann_result = (await ann.event("result"))["result"]
    bob_result = (await bob.event("result"))["result"]
    assert await bob.frame() == "439[null]"
    assert time.monotonic() - left < 1.0
    assert ann_result == bob_result
    entries = {e["uid"]: e for e in ann_result}
    assert scores(entries["u-ann"]) == (1, 1, 1)
    assert scores(entries["u-bob"]) == (0, 0, 0)
    assert (entries["u-ann"]["choice"], entries["u-bob"]["choice"]) == (1, 2)
    service = server.app[SERVICE]
    assert service.matches_finished == 1
    assert not service.rooms.by_id

    # The game is over for both: a choice is refused, and both can play again (the
    # winner keeps its streak: Bob's win now makes him 1, 1, 1 and resets Ann's).
    await bob.emit("choice", {"choice": 3})
    assert (await bob.event("error"))["code"] == "not_in_match"
    await ann.emit("join")
    await bob.emit("join")
    assert [u["winStreak"] for u in (await ann.event("start"))["roomUsers"]] == [1, 0]
    await bob.event("start")
    await bob.emit("choice", {"choice": 2})
    await ann.emit("leave")
    ann_result = (await ann.event("result", skip=("movement",)))["result"]
    entries = {e["uid"]: e for e in ann_result}
    assert scores(entries["u-bob"]) == (1, 1, 1)
    assert scores(entries["u-ann"]) == (0, 1, 0)  # a loss keeps the total, not the streak
    assert entries["u-ann"]["choice"] is None  # no hand yet: the demo's null
    assert (await bob.event("result", skip=("movement",)))["result"] == ann_result


async def test_leave_during_a_robot_game_forfeits_it_to_the_robot(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(bot_think=(2.0, 2.0))  # the robot has not chosen yet
    ann = await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    await ann.emit("join")
    users = (await ann.event("start"))["roomUsers"]
    robot = next(u["uid"] for u in users if u["uid"] != "u-ann")
    await ann.emit("choice", {"choice": 3})
    left = time.monotonic()
    await ann.emit("leave")
    result = (await ann.event("result"))["result"]
    assert time.monotonic() - left < 1.0
    entries = {e["uid"]: e for e in result}
    assert scores(entries[robot]) == (1, 1, 1)
    assert scores(entries["u-ann"]) == (0, 0, 0)
    assert (entries["u-ann"]["choice"], entries[robot]["choice"]) == (3, None)
    # The robot's pending choice died with the game: nothing else arrives.
    with pytest.raises(TimeoutError):
        await ann.ws.receive(timeout=2.5)
    assert (await healthz(http, server))["matches"] == 0


def test_the_demo_url_is_the_one_its_page_builds() -> None:
    assert demo_url("game.example.com", "wss") == (
        "wss://game.example.com/applet/websocket/socket.io//?EIO=3&transport=websocket"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/applet/websocket/socket.io",  # no trailing slash: not engine.io's, served too
        "/applet/websocket/socket.io/",
        "/applet/websocket/socket.io//",
        "/applet/websocket/socket.io///",
        "/applet/websocket/socket.io/x/y",
        "/applet/websocket/socket.io/%2F",
        "/applet/websocket/socket.io/%0A",
    ],
)
async def test_every_path_engine_io_1_took_is_served(
    start_server: ServerFactory, http: aiohttp.ClientSession, path: str
) -> None:
    """engine.io 1.x (the demo's server) took any request whose raw URL began with the
    path and a slash."""
    server = await start_server()
    url = yarl.URL(f"http://{server.host}:{server.port}{path}{QUERY}", encoded=True)
    ws = await http.ws_connect(url)
    assert (await ws.receive_str(timeout=READ_TIMEOUT)).startswith("0{")
    await ws.close()


@pytest.mark.parametrize(
    "path", ["/applet/websocket/socket.iox/", "/applet/websocket//socket.io/", "/socket.io/"]
)
async def test_paths_engine_io_1_did_not_take_are_not_found(
    start_server: ServerFactory, http: aiohttp.ClientSession, path: str
) -> None:
    server = await start_server()
    url = yarl.URL(f"http://{server.host}:{server.port}{path}{QUERY}", encoded=True)
    async with http.get(url, headers=UPGRADE) as response:
        assert response.status == 404


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.parametrize(
    ("query", "upgrade", "code", "message"),
    [
        ("?EIO=3&transport=polling", False, 0, "Transport unknown"),
        ("?EIO=3&transport=polling", True, 0, "Transport unknown"),
        ("", False, 0, "Transport unknown"),
        ("?EIO=3&transport=websocket", False, 3, "Bad request"),
        ("?EIO=4&transport=websocket", True, 5, "Unsupported protocol version"),
        ("?EIO=3&transport=websocket&sid=abc", True, 1, "Session ID unknown"),
    ],
)
async def test_what_only_a_full_socketio_server_serves_gets_engine_io_errors(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    query: str,
    upgrade: bool,
    code: int,
    message: str,
) -> None:
    server = await start_server()
    url = server.make_url(SOCKETIO_PATH + query)
    response = await http.get(url, headers=UPGRADE if upgrade else {})
    assert response.status == 400
    body = await response.json()
    assert (body["code"], body["message"]) == (code, message)
    assert "transport=websocket" in body["hint"]
    if upgrade:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(url)
        assert caught.value.status == 400


async def test_an_oversized_frame_closes_with_1009(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann = await DemoClient.connect(http, server)
    await ann.emit("hello", {"user": {"uid": "u", "uname": "x" * 5000}})
    assert await ann.closed() == 1009
    bob = await DemoClient.connect(http, server)
    assert (await bob.hello("u-bob", "Bob"))["nearby"] == 1


async def npm_ci_if_needed() -> str:
    """node's path, once the pinned socket.io-client is installed (unless node_modules
    matches the lock already)."""
    hint = "needed to run the real socket.io-client; .ci/run installs it"
    node, npm = require_program("node", hint), require_program("npm", hint)
    lock = NODE_CLIENT / "package-lock.json"
    installed = NODE_CLIENT / "node_modules" / ".package-lock.json"  # written by npm ci
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return node
    process = await asyncio.create_subprocess_exec(
        npm,
        "ci",
        "--no-audit",
        "--no-fund",
        cwd=NODE_CLIENT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, output.decode(errors="replace")
    return node


@pytest.mark.system  # a real server process, or a program from outside
async def test_the_real_socketio_client_2_plays_a_game(start_server: ServerFactory) -> None:
    node = await npm_ci_if_needed()
    server = await start_server(bot_think=(0.0, 0.3))
    process = await asyncio.create_subprocess_exec(
        node,
        "play.js",
        str(server.make_url("/")).rstrip("/"),
        "u-node",
        DEMO_SOCKET_PATH + "//",  # the client makes that ".../socket.io//?EIO=3..."
        cwd=NODE_CLIENT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, (stdout, stderr)
    seen = orjson.loads(stdout)
    assert seen["connected"] is True
    # Read once connected, when the client has added the handshake's sid to its query.
    assert seen["url"].partition("&sid=")[0] == demo_url(f"{server.host}:{server.port}")
    unknown = "unknown event 'dance'; expected one of hello, join, leave, choice, face"
    assert seen["ackErrors"] == {
        "dance": {"code": "unknown_type", "message": unknown},
        "join": None,
    }
    assert seen["errors"] == [{"code": "unknown_type", "message": unknown}]
    events = dict((name, data) for name, data in seen["events"] if name != "movement")
    assert events["hi"] == {"message": "welcome", "nearby": 1}
    users = events["start"]["roomUsers"]
    assert [u["uid"] for u in users][:1] == ["u-node"]  # seat 0: it was waiting first
    assert users[0]["uname"] == "Node u-node"
    result = {e["uid"]: e for e in events["result"]["result"]}
    assert len(result) == 2
    assert result["u-node"]["choice"] == 3  # the second tap counted
    robot = next(e for uid, e in result.items() if uid != "u-node")
    assert ROBOT_UID.fullmatch(robot["uid"]), robot
    assert users[1]["uavatar"].endswith("/applet/avatars/robot.png")
    outcome = judge(LEGACY_NUMBERS[3], LEGACY_NUMBERS[robot["choice"]])
    assert scores(result["u-node"]) == ((1, 1, 1) if outcome is Outcome.WIN else (0, 0, 0))


async def test_a_dropped_demo_client_leaves_the_queue_at_once(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=20)
    queue = server.app[SERVICE].lobbies[LEGACY_LOBBY].matchmaker
    ann = await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    await ann.emit("join")
    for _ in range(100):
        if len(queue) == 1:
            break
        await asyncio.sleep(0.01)
    service = server.app[SERVICE]
    await ann.ws.close()  # no 41: the network went away; a native player would get grace
    for _ in range(50):  # well before the robot would take the seat (1 s after the join)
        if service.online == 0:
            break
        await asyncio.sleep(0.01)
    assert service.online == 0
    assert len(queue) == 0
    assert all(p.away_timer is None for p in service.roster.by_id.values())


async def test_shutdown_says_bye_in_the_dialect(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann = await DemoClient.connect(http, server)
    await ann.hello("u-ann", "Ann")
    closing = asyncio.create_task(server.close())
    assert await ann.event("bye") == {"reason": "shutdown"}
    assert await ann.closed() == 1001
    await closing


async def test_a_declared_name_and_avatar_reach_the_opponent_cleaned_like_a_native_hello(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    mallory, bob = await DemoClient.connect(http, server), await DemoClient.connect(http, server)
    evil = "Mallory\u202e\u0000\u0007<img src=x onerror=alert(1)>"
    await mallory.emit(
        "hello", {"user": {"uid": "u-m", "uname": evil, "uavatar": "http://tracker.example/p"}}
    )
    await mallory.event("hi")
    await bob.hello("u-bob", "Bob")
    await mallory.emit("join")
    await bob.emit("join")
    users = {u["uid"]: u for u in (await bob.event("start"))["roomUsers"]}
    shown = users["u-m"]
    # What a native hello would have accepted: no control or bidi characters, 32 at most,
    # no avatar that is not https (the markup is text; clients show names as text).
    assert shown["uname"] == "Mallory<img src=x onerror=alert("
    assert shown["uavatar"] is None
    assert users["u-bob"]["uavatar"] == "https://example.com/u-bob.png"
