"""The soak tool: its rule checker and ledger on fabricated messages, its latency
histogram, a few scripted misbehaving servers in-process, and the real command line
against a real server process (a full soak, argument validation, Ctrl-C)."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from bots.client import MatchChecker, RoundLedger, compare_sides
from bots.soak import GapHistogram, GapStats, LatencyHistogram, SoakConfig, run_soak
from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.core.match import MatchRules
from game_server.core.service import ServiceConfig
from game_server.net.appkeys import SERVICE
from protocol import (
    Choice,
    EndReason,
    Movement,
    MovementKind,
    Opponent,
    Outcome,
    Result,
    Score,
    Start,
    Winner,
)
from tests.support.processes import FAST_GAME, ServerProcess, launch

PYTHON = sys.executable
ROCK, PAPER, SCISSORS = Choice.ROCK, Choice.PAPER, Choice.SCISSORS
WIN, LOSE, DRAW = Outcome.WIN, Outcome.LOSE, Outcome.DRAW
OPP = Opponent(id="p_b", name="B")


# ---------------------------------------------------------------- fabricated messages


def start(rnd: int, you: int = 0, opp: int = 0, *, mid: str = "m_1", best_of: int = 3) -> Start:
    return Start(
        match_id=mid,
        round=rnd,
        best_of=best_of,
        round_ms=2000,
        opponent=OPP,
        score=Score(you=you, opponent=opp),
    )


def result(
    rnd: int,
    you: Choice | None,
    opp: Choice | None,
    outcome: Outcome,
    score: tuple[int, int],
    *,
    mid: str = "m_1",
    final: tuple[Winner, EndReason, int, int] | None = None,
) -> Result:
    extra: dict[str, Any] = {}
    if final is not None:
        winner, reason, total, streak = final
        extra = {
            "match_over": True,
            "winner": winner,
            "reason": reason,
            "total_score": total,
            "win_streak": streak,
        }
    return Result(
        match_id=mid,
        round=rnd,
        you=you,
        opponent=opp,
        outcome=outcome,
        score=Score(you=score[0], opponent=score[1]),
        **extra,
    )


class Player:
    """A MatchChecker driven like the client drives it, collecting violations."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checker = MatchChecker(self.problems.append)

    def play_round(self, begin: Start, hand: Choice, end: Result) -> None:
        self.checker.start(begin)
        self.checker.chose(hand)
        self.checker.result(end)


def win_two_nil(player: Player, *, mid: str = "m_1", total: int = 1, streak: int = 1) -> None:
    player.checker.joined()
    player.play_round(start(1, mid=mid), PAPER, result(1, PAPER, ROCK, WIN, (1, 0), mid=mid))
    final = (Winner.YOU, EndReason.ROUNDS, total, streak)
    player.play_round(
        start(2, 1, 0, mid=mid),
        ROCK,
        result(2, ROCK, SCISSORS, WIN, (2, 0), mid=mid, final=final),
    )


# ---------------------------------------------------------------- the rule checker


def test_checker_accepts_a_consistent_sequence_of_matches() -> None:
    player = Player()
    win_two_nil(player, mid="m_1", total=1, streak=1)
    win_two_nil(player, mid="m_2", total=3, streak=2)  # the second win in a row is worth 2
    player.checker.joined()  # a 1-1 draw over three rounds: totals unchanged
    player.play_round(start(1, mid="m_3"), ROCK, result(1, ROCK, PAPER, LOSE, (0, 1), mid="m_3"))
    player.play_round(
        start(2, 0, 1, mid="m_3"), SCISSORS, result(2, SCISSORS, PAPER, WIN, (1, 1), mid="m_3")
    )
    final = (Winner.DRAW, EndReason.ROUNDS, 3, 2)
    player.play_round(
        start(3, 1, 1, mid="m_3"), ROCK, result(3, ROCK, ROCK, DRAW, (1, 1), mid="m_3", final=final)
    )
    player.checker.joined()  # then a loss resets the streak, the total stays
    player.play_round(
        start(1, mid="m_4", best_of=1),
        ROCK,
        result(
            1, ROCK, PAPER, LOSE, (0, 1), mid="m_4", final=(Winner.OPPONENT, EndReason.ROUNDS, 3, 0)
        ),
    )
    assert player.problems == []
    assert (player.checker.total_score, player.checker.win_streak) == (3, 0)


def test_checker_flags_movements_out_of_turn() -> None:
    player = Player()
    player.checker.joined()
    player.checker.start(start(1))
    player.checker.movement(Movement(match_id="m_1", round=1, kind=MovementKind.CHOICE))
    assert player.problems == []
    player.checker.movement(Movement(match_id="m_1", round=1, kind=MovementKind.CHOICE))
    player.checker.movement(Movement(match_id="m_1", round=2, kind=MovementKind.CHOICE))
    player.checker.movement(Movement(match_id="m_9", round=1, kind=MovementKind.FACE, face=1))
    assert len(player.problems) == 3, player.problems


def test_checker_flags_round_skipping() -> None:
    player = Player()
    player.checker.joined()
    player.play_round(start(1), PAPER, result(1, PAPER, PAPER, DRAW, (0, 0)))
    player.checker.start(start(3))
    assert any("start of round 3 after round 1" in p for p in player.problems)


def test_checker_flags_a_first_start_that_is_not_round_one() -> None:
    player = Player()
    player.checker.joined()
    player.checker.start(start(2))
    assert any("first start is round 2" in p for p in player.problems)


def test_checker_flags_a_wrong_score_in_result_and_start() -> None:
    player = Player()
    player.checker.joined()
    player.play_round(start(1), PAPER, result(1, PAPER, ROCK, WIN, (0, 1)))
    assert any("result of round 1 says 0-1, results say 1-0" in p for p in player.problems)
    player.problems.clear()
    player.checker.start(start(2, 0, 0))
    assert any("start of round 2 says 0-0, results say 1-0" in p for p in player.problems)


def test_checker_flags_wrong_streak_arithmetic() -> None:
    player = Player()
    win_two_nil(player, total=1, streak=1)
    assert player.problems == []
    win_two_nil(player, mid="m_2", total=2, streak=2)  # should be 1 + 2 = 3
    assert any("streak scoring" in p for p in player.problems)
    player = Player()
    win_two_nil(player, total=1, streak=0)  # a win must grow the streak
    assert any("streak scoring" in p for p in player.problems)


def test_checker_flags_a_mismatched_result() -> None:
    player = Player()
    player.checker.joined()
    player.checker.start(start(1))
    player.checker.chose(ROCK)
    player.checker.result(result(1, PAPER, ROCK, LOSE, (0, 1), mid="m_2"))
    text = " | ".join(player.problems)
    assert "result for m_2 while playing m_1" in text
    assert "says we played paper, we sent rock" in text
    assert "paper vs rock is win, got lose" in text


def test_checker_flags_rounds_after_the_match_is_decided() -> None:
    player = Player()
    player.checker.joined()
    player.play_round(start(1), PAPER, result(1, PAPER, ROCK, WIN, (1, 0)))
    player.play_round(start(2, 1, 0), PAPER, result(2, PAPER, ROCK, WIN, (2, 0)))  # not final
    assert any("not over at 2-0 after round 2/3" in p for p in player.problems)
    player = Player()
    player.checker.joined()
    player.play_round(
        start(1),
        PAPER,
        result(1, PAPER, ROCK, WIN, (1, 0), final=(Winner.YOU, EndReason.ROUNDS, 1, 1)),
    )
    assert any("ended by rounds at 1-0 after round 1" in p for p in player.problems)


def test_checker_takes_forfeits_as_the_rules_say() -> None:
    player = Player()
    player.checker.joined()
    player.play_round(start(1), PAPER, result(1, PAPER, ROCK, WIN, (1, 0)))
    player.checker.start(start(2, 1, 0))
    # The opponent leaves mid-round: outcome "win" but the score does not move.
    left = (Winner.YOU, EndReason.OPPONENT_LEFT, 1, 1)
    player.checker.result(result(2, None, None, WIN, (1, 0), final=left))
    assert player.problems == []
    player = Player()
    player.checker.joined()
    player.checker.start(start(1))
    player.checker.result(result(1, None, None, WIN, (1, 0), final=left))
    assert any("says 1-0, results say 0-0" in p for p in player.problems)


def test_checker_flags_anything_about_a_match_after_its_final_result() -> None:
    player = Player()
    win_two_nil(player)
    player.checker.result(result(2, ROCK, SCISSORS, WIN, (2, 0)))
    player.checker.start(start(3, 2, 0))
    assert any("after the final result" in p for p in player.problems)


def test_checker_flags_a_final_result_without_its_fields() -> None:
    player = Player()
    player.checker.joined()
    player.checker.start(start(1, best_of=1))
    player.checker.chose(ROCK)
    player.checker.result(
        Result(
            match_id="m_1",
            round=1,
            you=ROCK,
            opponent=SCISSORS,
            outcome=WIN,
            score=Score(you=1, opponent=0),
            match_over=True,
        )
    )
    assert any("without winner" in p for p in player.problems)


# ---------------------------------------------------------------- the ledger


def side_a(**changes: Any) -> Result:
    return attrs.evolve(result(1, PAPER, ROCK, WIN, (1, 0)), **changes)


def side_b(**changes: Any) -> Result:
    return attrs.evolve(result(1, ROCK, PAPER, LOSE, (0, 1)), **changes)


def test_ledger_pairs_a_consistent_round_and_forgets_it() -> None:
    ledger = RoundLedger()
    assert ledger.record("p_a", "p_b", side_a()) is None
    assert len(ledger) == 1
    assert ledger.record("p_b", "p_a", side_b()) == []
    assert len(ledger) == 0
    assert ledger.paired == 1


@pytest.mark.parametrize(
    ("b", "expected"),
    [
        (side_b(you=SCISSORS, outcome=LOSE), "hands differ"),
        (side_b(opponent=ROCK, outcome=WIN), "hands differ"),
        (side_b(outcome=DRAW), "not mirrored"),
        (side_b(outcome=WIN), "outcomes win and win are not mirrored"),
        (side_b(score=Score(you=1, opponent=0)), "scores 1-0 and 1-0 are not mirrored"),
        (side_b(score=Score(you=0, opponent=2)), "not mirrored"),
    ],
)
def test_ledger_flags_an_inconsistent_pair(b: Result, expected: str) -> None:
    ledger = RoundLedger()
    assert ledger.record("p_a", "p_b", side_a()) is None
    problems = ledger.record("p_b", "p_a", b)
    assert problems
    assert any(expected in p for p in problems), problems


def test_ledger_flags_wrong_opponents_and_duplicates() -> None:
    assert any(
        "opponents" in p for p in compare_sides("p_a", "p_c", side_a(), "p_b", "p_a", side_b())
    )
    ledger = RoundLedger()
    ledger.record("p_a", "p_b", side_a())
    assert ledger.record("p_a", "p_b", side_a()) == ["m_1 round 1: two results for p_a"]


def test_a_reopened_round_voids_the_results_seen_of_it() -> None:
    # A cluster's host died after sending round 1's result to one side only, before its
    # checkpoint of that round reached Redis: the survivor replays round 1 (resume).
    ledger = RoundLedger()
    ledger.record("p_a", "p_b", side_a())
    ledger.record("p_a", "p_b", side_a(match_id="m_2"))  # another match: untouched
    assert ledger.reopen("m_1", 1) == 1
    replayed_a = side_a(you=ROCK, opponent=SCISSORS)
    replayed_b = side_b(you=SCISSORS, opponent=ROCK)
    assert ledger.record("p_a", "p_b", replayed_a) is None
    assert ledger.record("p_b", "p_a", replayed_b) == []
    assert len(ledger) == 1  # m_2's
    assert ledger.reopen("m_2", 2) == 0  # a later round: round 1's result stands


def test_ledger_compares_final_fields() -> None:
    a = side_a(
        match_over=True, winner=Winner.YOU, reason=EndReason.ROUNDS, total_score=1, win_streak=1
    )
    b = side_b(
        match_over=True, winner=Winner.YOU, reason=EndReason.AFK, total_score=0, win_streak=0
    )
    problems = compare_sides("p_a", "p_b", a, "p_b", "p_a", b)
    assert any("winners you and you" in p for p in problems)
    assert any("reasons rounds and afk" in p for p in problems)
    assert any("match_over" in p for p in compare_sides("p_a", "p_b", a, "p_b", "p_a", side_b()))


def test_ledger_drops_entries_whose_partner_never_comes() -> None:
    now = [0.0]
    ledger = RoundLedger(ttl=10, clock=lambda: now[0])
    ledger.record("p_a", "p_b", side_a())
    now[0] = 5.0
    ledger.record("p_a", "p_b", side_a(round=2))
    now[0] = 12.0
    assert ledger.sweep() == 1
    assert len(ledger) == 1
    now[0] = 20.0
    assert ledger.sweep() == 1
    assert (len(ledger), ledger.expired) == (0, 2)


# ---------------------------------------------------------------- the latency histogram


def test_histogram_percentiles_are_within_a_percent_and_memory_is_fixed() -> None:
    rng = random.Random(7)
    histogram = LatencyHistogram()
    size = len(histogram._buckets)
    samples = [rng.lognormvariate(math.log(0.005), 1.0) for _ in range(50_000)]
    for sample in samples:
        histogram.append(sample)
    samples.sort()
    for q in (50, 95, 99):
        exact = samples[math.ceil(q / 100 * len(samples)) - 1]
        got = histogram.percentile(q)
        assert got is not None
        assert abs(got - exact) / exact < 0.01, (q, got, exact)
    assert histogram.percentile(100) == histogram.max == samples[-1]
    assert histogram.count == len(samples)
    assert len(histogram._buckets) == size
    assert LatencyHistogram().percentile(50) is None


def test_gap_percentiles_are_exact_points() -> None:
    gaps = GapHistogram(highest=100)
    assert GapStats.of(gaps) == GapStats()
    for gap in [0, 10, 10, 20, 30, 40, 50, 60, 70, 250]:
        gaps.append(gap)
    stats = GapStats.of(gaps)
    assert (stats.count, stats.p50, stats.p95, stats.max) == (10, 30, 250, 250)
    assert gaps.percentile(90) == 70


def test_config_must_be_bounded() -> None:
    with pytest.raises(ValueError, match="bounded"):
        SoakConfig(clients=4)
    with pytest.raises(ValueError, match="nobody to meet"):
        SoakConfig(clients=1, duration=1)
    assert SoakConfig(clients=1, duration=1, opponents="auto").clients == 1  # house bots
    with pytest.raises(ValueError, match="unknown strategy"):
        SoakConfig(duration=1, strategies=("psychic",))
    assert SoakConfig(clients=1, duration=1, opponents="now").clients == 1


# ---------------------------------------------------------------- scripted servers, in-process

ScriptedFactory = Callable[[str], Awaitable[TestServer]]


@pytest.fixture
async def scripted_server() -> AsyncIterator[ScriptedFactory]:
    """A tiny fake game server that plays best-of-1 house-bot matches, with one bug."""
    servers: list[TestServer] = []
    ids = itertools.count(1)

    async def start_server(bug: str) -> TestServer:
        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            total = streak = hellos = 0
            match_id = ""
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    break
                message = orjson.loads(frame.data)
                kind = message["type"]
                out: list[dict[str, Any]] = []
                hellos += kind == "hello"
                if kind == "hello" and bug == "busy" and hellos == 1:
                    # Storage failing for a moment: the player cannot be read (protocol §3).
                    message = {"code": "unavailable", "message": "say hello again in a moment"}
                    out.append({"type": "error", **message})
                elif kind == "hello":
                    n = next(ids)
                    out.append(
                        {
                            "type": "hi",
                            "player_id": f"p_{n}",
                            "name": "x",
                            "token": f"t{n}",
                            "online": 1,
                            "protocol": 1,
                        }
                    )
                elif kind == "join":
                    if bug == "drop":
                        await ws.close()
                        break
                    match_id = f"m_{next(ids)}"
                    out.append({"type": "queued", "waiting": 1})
                    if bug != "stall":
                        out.append(
                            {
                                "type": "start",
                                "match_id": match_id,
                                "round": 1,
                                "best_of": 1,
                                "round_ms": 2000,
                                "score": {"you": 0, "opponent": 0},
                                "opponent": {
                                    "id": "bot_1",
                                    "name": "Bot",
                                    "avatar": None,
                                    "bot": True,
                                },
                            }
                        )
                elif kind == "choice":
                    hand = Choice(message["choice"])
                    streak += 1
                    total += streak if bug != "streak" else 1
                    out.append(
                        {
                            "type": "result",
                            "match_id": match_id,
                            "round": 1,
                            "you": hand.value,
                            "opponent": hand.beats.value,
                            "outcome": "win",
                            "score": {"you": 0 if bug == "score" else 1, "opponent": 0},
                            "match_over": True,
                            "winner": "you",
                            "reason": "rounds",
                            "total_score": total,
                            "win_streak": streak,
                        }
                    )
                    if bug == "after_final":
                        out.append(
                            {"type": "movement", "match_id": match_id, "round": 1, "kind": "choice"}
                        )
                for item in out:
                    await ws.send_str(orjson.dumps(item).decode())
            return ws

        app = web.Application()
        app.router.add_get("/applet/websocket", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start_server
    for server in servers:
        await server.close()


def soak_config(server: TestServer, **changes: Any) -> SoakConfig:
    options: dict[str, Any] = {
        "url": str(server.make_url("/applet/websocket")),
        "clients": 3,
        "duration": 1.0,
        "opponents": "now",
        "seed": 1,
        **changes,
    }
    return SoakConfig(**options)


async def test_soak_of_a_correct_scripted_server_is_clean(
    scripted_server: ScriptedFactory,
) -> None:
    server = await scripted_server("none")
    summary = await run_soak(soak_config(server, duration=None, matches=50))
    assert summary.ok, summary.format_table()
    assert summary.matches >= 50
    assert summary.house_bot_matches == summary.matches
    assert summary.stopped == "matches"


@pytest.mark.parametrize("opponents", ["auto", "mix"])
async def test_a_bot_nobody_fits_gets_a_house_bot_with_auto_and_mix(
    aiohttp_server: Callable[..., Awaitable[TestServer]], opponents: str
) -> None:
    """One bot alone, as a bot rated far from a busy queue's crowd is: with ``auto`` (and
    ``mix``, which joins as the page does) a house bot sits down after ``--bot-after``;
    with ``never`` it would wait for a human for ever."""
    rules = MatchRules(best_of=1, round_seconds=2.0, round_pause=0.0)
    service = ServiceConfig(rules=rules, bot_after=0.05, bot_think=(0.0, 0.0))
    server = await aiohttp_server(create_app(ServerConfig(service=service)), host="127.0.0.1")
    config = soak_config(server, clients=1, duration=20.0, matches=3, opponents=opponents)
    summary = await run_soak(config)
    assert summary.ok, summary.format_table()
    assert summary.stopped == "matches"  # not the 20 s bound: nobody waited
    assert summary.house_bot_matches == summary.matches >= 3


async def test_friends_meet_in_pairs_by_room_code_and_rematch(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    """``--opponents friends``: each pair meets by a private room's code or a rematch,
    never the queue nor a house bot, and every round is cross-checked from both sides."""
    rules = MatchRules(best_of=3, round_seconds=2.0, round_pause=0.0)
    # Bots answer at once: far faster than the flood guard lets a person send.
    service = ServiceConfig(rules=rules, flood_rate=10_000.0, flood_burst=10_000.0)
    server = await aiohttp_server(create_app(ServerConfig(service=service)), host="127.0.0.1")
    # A new room every 0.4 s for 1.6 s: 5 codes a guest at most, within its first 10.
    config = soak_config(server, clients=4, duration=1.6, opponents="friends", room_every=0.4)
    summary = await run_soak(config)
    assert summary.ok, summary.format_table()
    assert summary.house_bot_matches == 0
    assert summary.unpaired_rounds == 0
    counts = server.app[SERVICE].friends.counts
    assert counts["room_joined"] >= 4  # each pair met again in a new room at least once
    assert counts["rematch_started"] >= 10  # in between, rematches
    assert counts["room_joined"] + counts["rematch_started"] >= summary.matches


def test_friends_come_in_pairs_that_do_not_reconnect() -> None:
    with pytest.raises(ValueError, match="even number"):
        SoakConfig(clients=3, duration=1, opponents="friends")
    with pytest.raises(ValueError, match="do not reconnect"):
        SoakConfig(clients=2, duration=1, opponents="friends", max_reconnects=1)


async def test_a_hello_answered_unavailable_is_said_again(
    scripted_server: ScriptedFactory,
) -> None:
    server = await scripted_server("busy")
    summary = await run_soak(soak_config(server, clients=2, duration=None, matches=4))
    assert summary.violations == 0, summary.format_table()
    assert summary.errors_by_code == {"unavailable": 2}  # one a client, then hi
    assert summary.matches >= 4


@pytest.mark.parametrize(
    ("bug", "expected"),
    [
        ("score", "says 0-0, results say 1-0"),
        ("streak", "streak scoring"),
        ("after_final", "expected queued after join"),
    ],
)
async def test_soak_catches_a_server_that_breaks_the_rules(
    scripted_server: ScriptedFactory, bug: str, expected: str
) -> None:
    server = await scripted_server(bug)
    summary = await run_soak(soak_config(server, duration=1.0, max_reconnects=100))
    assert not summary.ok
    assert summary.exit_code == 1
    assert summary.violations > 0
    assert any(expected in text for text in summary.violation_samples), summary.violation_samples


async def test_soak_counts_dropped_connections_and_bounded_reconnects(
    scripted_server: ScriptedFactory,
) -> None:
    server = await scripted_server("drop")
    summary = await run_soak(soak_config(server, clients=2, duration=10.0, max_reconnects=2))
    assert (summary.connection_failures, summary.reconnects) == (6, 4)
    assert summary.clients_failed == 2
    assert summary.stopped == "clients_done"
    assert summary.seconds < 5
    assert summary.exit_code == 1


async def test_soak_flags_a_stalled_server(scripted_server: ScriptedFactory) -> None:
    server = await scripted_server("stall")
    config = soak_config(server, clients=2, duration=3.0, stall_timeout=1.0, max_reconnects=5)
    summary = await run_soak(config)
    assert any("stalled" in text for text in summary.violation_samples), summary
    assert summary.reconnects >= 2
    assert summary.seconds < 4


# ---------------------------------------------------------------- the real thing


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    process = await launch("--port", "0", "--rate-limit", "1000", *FAST_GAME)
    try:
        yield process
        process.process.send_signal(signal.SIGTERM)
        assert await process.exit_code() == 0
    finally:
        if process.process.returncode is None:
            process.process.kill()
            await process.process.wait()


async def soak_process(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bots", "soak", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@pytest.mark.system  # a real server process, or a program from outside
async def test_soak_command_against_a_real_server(server: ServerProcess) -> None:
    soak = await soak_process(
        "--url", server.url, "--clients", "40", "--duration", "20", "--matches", "400",
        "--json", "--opponents", "mix", "--seed", "3",
    )  # fmt: skip
    out, err = await asyncio.wait_for(soak.communicate(), 40)
    assert soak.returncode == 0, (out, err)
    summary = orjson.loads(out)
    assert summary["ok"] is True
    assert summary["matches"] >= 400
    assert summary["stopped"] == "matches"
    assert summary["violations"] == 0, summary["violation_samples"]
    assert summary["errors"] == 0, summary["errors_by_code"]
    assert summary["connection_failures"] == 0
    assert 0 < summary["house_bot_matches"] < summary["matches"]
    assert summary["rounds_cross_checked"] > summary["matches"]
    assert summary["sent"] > 0
    assert summary["received"] > summary["sent"]
    for name in ("choice_to_result", "join_to_start"):
        latency = summary[name]
        assert latency["count"] > 0
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # Every human match was seen from both sides as it began, with both ratings (and a
    # few more began than finished before the stop).
    gap = summary["rating_gap"]
    assert gap["count"] >= 2 * (summary["matches"] - summary["house_bot_matches"])
    assert 0 <= gap["p50"] <= gap["p95"] <= gap["max"]


@pytest.mark.system  # a real server process, or a program from outside
def test_soak_command_needs_a_bound() -> None:
    run = subprocess.run(
        [PYTHON, "-m", "bots", "soak", "--clients", "4"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "--duration" in run.stderr


@pytest.mark.system  # a real server process, or a program from outside
async def test_ctrl_c_stops_the_soak_with_a_summary(server: ServerProcess) -> None:
    soak = await soak_process(
        "--url", server.url, "--clients", "20", "--duration", "60", "--json",
        "--opponents", "mix", "--think", "0-0.2",
    )  # fmt: skip
    await asyncio.sleep(3)
    soak.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(soak.communicate(), 5)
    assert soak.returncode == 0, (out, err)
    summary = orjson.loads(out)
    assert summary["stopped"] == "interrupted"
    assert summary["seconds"] < 10
    assert summary["matches"] > 0
    assert summary["violations"] == 0
