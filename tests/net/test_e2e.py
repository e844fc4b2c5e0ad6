"""End to end over real sockets on 127.0.0.1: the aiohttp app, raw WebSocket clients."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from bots.client import BotClient
from game_server.core.match import MatchRules
from game_server.core.rating import BOT_RATINGS
from game_server.net.appkeys import CONNECTIONS, METRICS, SERVICE
from protocol import BotMode
from tests.conftest import ServerFactory
from tests.support.wire import Player, connect

# Both ways frames travel: aiohttp's fast path (the default: read in its parser's callback,
# written as raw frames) and its public API (receive(), send_frame(), ping()), as on an
# aiohttp release the fast path was not checked on (net/fastpath.py).
# A match sets two players' ratings apart; windows widening this fast (points a second;
# the default is 50) let a test play the same two again without waiting for them.
WIDEN_FAST = 5000.0

BOTH_PATHS = pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])


@BOTH_PATHS
async def test_two_clients_play_a_full_match(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    # Windows widen fast: the second match (1662 against 1338) need not wait 4.5 s.
    server = await start_server({"fast_path": fast}, bot_after=60, match_widen=WIDEN_FAST)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join", id=1)
    assert await ann.expect("queued") == {"type": "queued", "waiting": 1, "ref": 1}
    await bob.send(type="join", bot="never")
    assert (await bob.expect("queued"))["waiting"] == 2
    hands = {"Ann": ["rock", 3], "Bob": ["scissors", 2]}  # legacy numbers: 3 paper, 2 rock
    for round_number in (1, 2):
        starts = [await ann.expect("start"), await bob.expect("start")]
        assert starts[0]["match_id"] == starts[1]["match_id"]
        assert starts[0]["round"] == round_number
        assert starts[0]["opponent"]["id"] == bob.hi["player_id"]
        assert starts[1]["opponent"] == {
            "id": ann.hi["player_id"],
            "name": "Ann",
            "avatar": None,
            "bot": False,
            "rating": 1500,  # a new player's, as the match began
        }
        assert starts[0]["score"] == {"you": round_number - 1, "opponent": 0}
        match_id = starts[0]["match_id"]
        for player, name in ((ann, "Ann"), (bob, "Bob")):
            await player.send(
                type="choice",
                match_id=match_id,
                round=round_number,
                choice=hands[name][round_number - 1],
            )
        ann_result = await ann.expect("result", skip=("movement",))
        bob_result = await bob.expect("result", skip=("movement",))
        assert ann_result["outcome"] == "win"
        assert bob_result["outcome"] == "lose"
        if round_number == 1:  # the rating comes with the match's end only
            assert "rating" not in ann_result
            assert "rating_change" not in bob_result
        assert (ann_result["you"], ann_result["opponent"]) == (
            bob_result["opponent"],
            bob_result["you"],
        )
    assert ann_result["you"] == "paper"  # legacy 3 comes back as the word
    assert ann_result["match_over"] is True
    assert (ann_result["winner"], ann_result["reason"]) == ("you", "rounds")
    assert ann_result["score"] == {"you": 2, "opponent": 0}
    assert (ann_result["total_score"], ann_result["win_streak"]) == (1, 1)
    assert (bob_result["winner"], bob_result["total_score"], bob_result["win_streak"]) == (
        "opponent",
        0,
        0,
    )
    # Two new players (1500, RD 350), one decisive match: Glicko-2 takes the winner to
    # 1662 and the loser to 1338.
    assert (ann.hi["rating"], bob.hi["rating"]) == (1500, 1500)
    assert (ann_result["rating"], ann_result["rating_change"]) == (1662, 162)
    assert (bob_result["rating"], bob_result["rating_change"]) == (1338, -162)
    health = await (await http.get(server.make_url("/healthz"))).json()
    assert health["status"] == "ok"
    assert (health["players"], health["matches"], health["queue"]) == (2, 0, 0)
    assert health["matches_finished"] == 1
    # The profile and the leaderboard carry the ratings, and the match its before/after.
    url = server.make_url(f"/applet/players/{ann.hi['player_id']}")
    profile = await (await http.get(url)).json()
    assert (profile["player"]["rating"], profile["player"]["rating_deviation"]) == (1662, 290)
    (history,) = profile["player"]["rating_history"]
    assert (history["match_id"], history["rating"]) == (match_id, 1662)
    (played,) = profile["matches"]
    assert (played["rating_before"], played["rating_after"]) == (1500, 1662)
    board = await (await http.get(server.make_url("/applet/leaderboard"))).json()
    assert [(p["name"], p["rating"], p["rating_deviation"]) for p in board["players"]] == [
        ("Ann", 1662, 290),
        ("Bob", 1338, 290),
    ]
    # The next match shows each the other's new rating, and a new hello its own.
    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    ann_start = await ann.expect("start", skip=("queued",))
    bob_start = await bob.expect("start", skip=("queued",))
    assert (ann_start["opponent"]["rating"], bob_start["opponent"]["rating"]) == (1338, 1662)
    again = await connect(http, server, "Ann", token=ann.hi["token"])
    assert again.hi["rating"] == 1662


async def test_one_client_plays_the_house_bot(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(bot_after=0.2, bot_think=(0.0, 0.05), bot_strategy="markov")
    ann = await connect(http, server, "Ann")
    await ann.send(type="join")  # bot=auto: nobody else comes, a bot takes the seat
    await ann.expect("queued")
    while True:
        start = await ann.expect("start", skip=("movement",))
        assert start["opponent"]["bot"] is True
        assert start["opponent"]["rating"] == BOT_RATINGS["markov"].shown  # fixed, measured
        await ann.send(
            type="choice", match_id=start["match_id"], round=start["round"], choice="rock"
        )
        result = await ann.expect("result", skip=("movement",))
        assert result["opponent"] in ("rock", "paper", "scissors")
        if result["match_over"]:
            break
    assert result["reason"] == "rounds"
    assert result["winner"] in ("you", "opponent", "draw")
    # Rated against the bot's fixed rating: up on a win, down on a loss.
    assert result["rating"] - result["rating_change"] == 1500
    sign = {"you": 1, "opponent": -1, "draw": 0}[result["winner"]]
    assert sign * result["rating_change"] > 0 or (sign == 0 and abs(result["rating_change"]) < 20)


async def test_disconnect_mid_match_gives_the_opponent_the_win_after_the_grace(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=0.3)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join")
    await bob.send(type="join")
    await ann.expect("start", skip=("queued",))
    await bob.expect("start", skip=("queued",))
    await ann.ws.close()
    assert (await bob.expect("movement"))["kind"] == "left"
    result = await bob.expect("result")
    assert result["match_over"] is True
    assert (result["winner"], result["reason"]) == ("you", "opponent_left")
    assert result["you"] is None
    assert result["opponent"] is None
    assert (result["total_score"], result["win_streak"]) == (1, 1)
    assert (result["rating"], result["rating_change"]) == (1662, 162)  # a forfeit counts
    await bob.send(type="ping", t=5)
    assert (await bob.expect("pong"))["t"] == 5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "not_an_object"),
        ('{"kind": "hello"}', "invalid_field"),
        ('{"type": "dance", "id": 4}', "unknown_type"),
        ('{"type": "hello", "name": "' + "x" * 40 + '"}', "invalid_field"),
        ('{"type": "hello", "avatar": "http://insecure.example/a.png"}', "invalid_field"),
        ('{"type": "join", "id": 3}', "hello_required"),
    ],
)
async def test_bad_input_gets_an_error_and_the_socket_stays_open(
    start_server: ServerFactory, http: aiohttp.ClientSession, frame: str, code: str
) -> None:
    server = await start_server()
    ws = await http.ws_connect(server.make_url("/applet/websocket"))
    player = Player(ws)
    await ws.send_str(frame)
    error = await player.expect("error")
    assert error["code"] == code
    assert error["message"]
    if '"id"' in frame:
        assert error["ref"] == orjson.loads(frame)["id"]
    await player.send(type="hello", name="Still here")
    assert (await player.expect("hi"))["name"] == "Still here"


async def test_game_errors_over_the_wire(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="choice", match_id="m_nope", round=1, choice="rock", id="c0")
    assert (await ann.expect("error"))["code"] == "not_in_match"
    await ann.send(type="join", bot="never")
    await ann.expect("queued")
    await ann.send(type="join", id="again")
    assert await ann.expect("error") == {
        "type": "error",
        "code": "already_queued",
        "message": "you are already in the queue",
        "ref": "again",
    }
    await bob.send(type="join")
    start = await ann.expect("start")
    await bob.expect("start", skip=("queued",))
    base = {"type": "choice", "match_id": start["match_id"]}
    await ann.send(**base, round=2, choice="rock", id="c1")
    assert (await ann.expect("error"))["code"] == "wrong_round"
    await ann.send(**base, round=1, choice="rock", id="c2")
    await ann.send(**base, round=1, choice="paper", id="c3")
    error = await ann.expect("error")
    assert (error["code"], error["ref"]) == ("choice_locked", "c3")
    await ann.send(type="join", id="j")
    assert (await ann.expect("error"))["code"] == "already_in_match"


async def test_binary_frames_are_refused(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann = await connect(http, server, "Ann")
    await ann.ws.send_bytes(b'{"type": "ping"}')
    assert (await ann.expect("error"))["code"] == "unsupported_frame"
    await ann.send(type="ping", t=1)
    assert (await ann.expect("pong"))["t"] == 1


async def test_oversized_frame_closes_with_1009(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann = await connect(http, server, "Ann")
    await ann.ws.send_str('{"type": "ping", "pad": "' + "x" * 5000 + '"}')
    assert await ann.closed() == 1009
    bob = await connect(http, server, "Bob")  # the server is fine
    await bob.send(type="ping", t=2)
    assert (await bob.expect("pong"))["t"] == 2


@BOTH_PATHS
async def test_slow_consumer_is_dropped_without_hurting_others(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    """A client that never reads fills its queue and is cut off; the server stays healthy."""
    server = await start_server({"fast_path": fast}, flood_rate=1e9, flood_burst=1e9)
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(
        b"GET /applet/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    # Each tiny frame asks for a ~130-byte error; this client reads none of them.
    payload = b'{"type":"' + b"z" * 40 + b'"}'
    frame = bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload
    ann = await connect(http, server, "Ann")
    dropped = False
    for _ in range(400):
        try:
            writer.write(frame * 500)
            await writer.drain()
        except ConnectionError:
            dropped = True
            break
        if reader.at_eof():
            dropped = True
            break
    writer.close()
    assert dropped, "the server never dropped a client that does not read"
    drops = server.app[METRICS].render().decode()
    assert "rps_send_queue_drops_total 1.0" in drops
    await ann.send(type="ping", t=3)
    assert (await ann.expect("pong"))["t"] == 3


async def test_fifty_bot_clients_play_many_matches(start_server: ServerFactory) -> None:
    server = await start_server(
        rules=MatchRules(best_of=3, round_seconds=2.0, round_pause=0.0),
        bot_think=(0.0, 0.01),
        flood_rate=1000.0,
        flood_burst=2000.0,
        # Any two fit: each bot must finish exactly 10 matches, and a bot whose rating
        # drifted far from the rest would be passed over for closer pairs until nobody is
        # left to play it (matchmaking by rating has its own tests).
        match_window=1e9,
    )
    url = str(server.make_url("/applet/websocket"))
    rng = random.Random(42)
    bots = [
        BotClient(
            url,
            mode=BotMode.NOW if i % 10 == 0 else BotMode.NEVER,
            name=f"bot{i}",
            rng=random.Random(rng.getrandbits(32)),
            think=(0.0, 0.005),
        )
        for i in range(50)
    ]
    async with aiohttp.ClientSession() as session:
        reports = await asyncio.wait_for(
            asyncio.gather(*(bot.play(10, session=session) for bot in bots)), timeout=60
        )
    assert all(r.matches == 10 for r in reports)
    assert [v for r in reports for v in r.violations] == []
    assert [e for r in reports for e in r.errors] == []
    assert sum(r.bot_opponents for r in reports) == 50  # the five bot=now clients
    assert sum(r.wins for r in reports) + sum(r.draws for r in reports) > 0
    # Wins and losses among humans mirror each other exactly.
    human_reports = [r for bot, r in zip(bots, reports, strict=True) if bot.mode is BotMode.NEVER]
    assert sum(r.wins for r in human_reports) == sum(r.losses for r in human_reports)


RAW_NEAR_MISSES = [
    '{"type": "choice", "match_id": "m", "round": 100000000000000000000000000000, "choice": 1}',
    '{"type": "ping", "t": 1e999}',
    '{"type": "ping", "t": NaN}',
    '{"type": "ping"',
    '{"type": "ping"}{"type": "ping"}',
    r"""{"type": "\ud800"}""",
    '[{"type": "ping"}]',
    "null",
]


@BOTH_PATHS
async def test_garbage_barrage_never_breaks_the_connection(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    """Random bytes, random JSON, near-miss messages: every one answered, socket kept."""
    server = await start_server({"fast_path": fast}, flood_rate=1000.0, flood_burst=2000.0)
    ann = await connect(http, server, "Ann")
    rng = random.Random(2016)
    near_misses: list[Any] = [
        {"type": "choice", "match_id": 5, "round": "1", "choice": "lizard"},
        {"type": "join", "bot": "later"},
        {"type": "face", "face": 1.5},
        {"type": "hello", "token": "x" * 600},
        {"type": "ping", "t": "now"},
        {"type": ["hello"]},
        {"id": {"nested": True}, "type": "ping"},
    ]
    frames: list[str] = []
    for _ in range(300):
        kind = rng.randrange(3)
        if kind == 0:
            frames.append("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(60))))
        elif kind == 1:
            frames.append(orjson.dumps(rng.choice(near_misses)).decode())
        else:
            frames.append(rng.choice(RAW_NEAR_MISSES))
    for text in frames:
        await ann.ws.send_str(text)
    for _ in frames:
        reply = await ann.recv()
        assert reply["type"] == "error", reply
        assert reply["code"] in {
            "bad_json",
            "not_an_object",
            "invalid_field",
            "unknown_type",
            "already_hello",
        }
    await ann.send(type="ping", t=9, id="after")
    assert await ann.expect("pong") == {"type": "pong", "t": 9, "ref": "after"}


async def test_frames_up_to_4096_bytes_are_read(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    ann = await connect(http, server, "Ann")
    prefix, suffix = '{"type": "ping", "t": 4, "pad": "', '"}'
    frame = prefix + "x" * (4096 - len(prefix) - len(suffix)) + suffix
    assert len(frame.encode()) == 4096
    await ann.ws.send_str(frame)
    assert (await ann.expect("pong"))["t"] == 4
    await ann.ws.send_str(frame.replace('"pad": "', '"pad": "y'))
    assert await ann.closed() == 1009


@BOTH_PATHS
async def test_shutdown_says_bye_and_closes_with_1001(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    server = await start_server({"fast_path": fast})
    ann = await connect(http, server, "Ann")
    closing = asyncio.create_task(server.close())
    assert await ann.expect("bye") == {"type": "bye", "reason": "shutdown"}
    assert await ann.closed() == 1001
    await asyncio.wait_for(closing, 10)


# ---------------------------------------------------------------- reconnecting


async def rejoin(http: aiohttp.ClientSession, server: TestServer, token: str) -> Player:
    ws = await http.ws_connect(server.make_url("/applet/websocket"))
    player = Player(ws)
    await player.send(type="hello", token=token)
    player.hi = await player.expect("hi")
    return player


async def test_a_dropped_player_resumes_mid_match_over_a_new_socket(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=5.0, bot_after=60)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    start = await ann.expect("start", skip=("queued",))
    await bob.expect("start", skip=("queued",))
    await ann.send(type="choice", match_id=start["match_id"], round=1, choice="rock")
    await bob.expect("movement")
    await ann.ws.close()
    assert (await bob.expect("movement"))["kind"] == "left"
    ann2 = await rejoin(http, server, ann.hi["token"])
    assert ann2.hi["player_id"] == ann.hi["player_id"]
    resume = await ann2.expect("resume")
    assert (resume["match_id"], resume["round"], resume["choice"], resume["final"]) == (
        start["match_id"],
        1,
        "rock",
        True,
    )
    assert 0 < resume["deadline_ms"] <= 2000
    assert resume["opponent"]["name"] == "Bob"
    assert (await bob.expect("movement"))["kind"] == "back"
    await bob.send(type="choice", match_id=start["match_id"], round=1, choice="scissors")
    assert (await ann2.expect("result", skip=("movement",)))["outcome"] == "win"


async def test_a_dropped_player_keeps_its_place_in_the_queue(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=5.0, bot_after=60)
    ann = await connect(http, server, "Ann")
    await ann.send(type="join", bot="never")
    await ann.expect("queued")
    await ann.ws.close()
    ann2 = await rejoin(http, server, ann.hi["token"])
    assert (await ann2.expect("queued"))["waiting"] == 1
    bob = await connect(http, server, "Bob")
    await bob.send(type="join", bot="never")
    start = await ann2.expect("start")
    assert start["opponent"]["name"] == "Bob"


async def test_past_the_grace_the_match_is_forfeited(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=0.3, bot_after=60)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    await bob.expect("start", skip=("queued",))
    await ann.ws.close()
    assert (await bob.expect("movement"))["kind"] == "left"
    result = await bob.expect("result")
    assert (result["match_over"], result["reason"]) == (True, "opponent_left")
    ann2 = await rejoin(http, server, ann.hi["token"])  # same identity, no match any more
    await ann2.send(type="ping", t=1)
    assert await ann2.expect("pong") == {"type": "pong", "t": 1}


async def test_a_second_connection_replaces_the_first(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(bot_after=60)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    start = await ann.expect("start", skip=("queued",))
    ann2 = await rejoin(http, server, ann.hi["token"])
    assert await ann.expect("bye") == {"type": "bye", "reason": "replaced"}
    assert await ann.closed() == 1000
    assert (await ann2.expect("resume"))["match_id"] == start["match_id"]


async def test_forged_and_expired_tokens_get_invalid_token(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(server={"token_ttl": 0.5})
    ann = await connect(http, server, "Ann")
    token = ann.hi["token"]
    stranger = Player(await http.ws_connect(server.make_url("/applet/websocket")))
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await stranger.send(type="hello", token=forged, id=1)
    error = await stranger.expect("error")
    assert (error["code"], error["ref"]) == ("invalid_token", 1)
    await asyncio.sleep(1.0)  # expiry has a one-second resolution
    await stranger.send(type="hello", token=token, id=2)
    error = await stranger.expect("error")
    assert (error["code"], error["ref"]) == ("invalid_token", 2)
    assert "expired" in error["message"]
    await stranger.send(type="hello", id=3)  # the client starts over as a guest
    assert (await stranger.expect("hi"))["player_id"] != ann.hi["player_id"]


async def test_a_bot_client_dropped_mid_match_comes_back_cleanly(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(reconnect_grace=5.0, bot_think=(0.0, 0.02))
    url = str(server.make_url("/applet/websocket"))
    bot = BotClient(url, mode=BotMode.NOW, name="Dropsy", think=(0.2, 0.2))
    playing = asyncio.create_task(bot.play(1, session=http))
    service = server.app[SERVICE]
    for _ in range(500):  # until its match has started
        if service.rooms.by_id:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the bot's match never started")
    for connection in server.app[CONNECTIONS]:
        transport = connection.transport
        assert transport is not None
        transport.abort()  # the network goes away under it
    with pytest.raises(ConnectionError):
        await playing
    # Within the grace the server still holds its seat; the bot leaves that match on
    # reconnecting and plays on without tripping its own protocol checks.
    report = await bot.play(1, session=http)
    assert report.violation_count == 0, report.violations
    assert report.matches == 1
    # A token the server does not accept: the bot starts over as a new guest.
    bot.token = "v1.p_other.1.forged"
    first_id = report.player_id
    report = await bot.play(report.matches + 1, session=http)
    assert report.violation_count == 0, report.violations
    assert report.player_id != first_id
