"""How strong each house-bot strategy is: the soak behind ``BOT_RATINGS``. Prints a table.

    .venv/bin/python bench/bot_ratings.py                   # 5,000 matches a pair, ~20 s
    .venv/bin/python bench/bot_ratings.py --matches 500 --seed 7 --best-of 5

A house bot is made afresh for every match (``core/rooms.py``); the player across the
table keeps its habits from match to match. So every strategy plays as a house bot
against every strategy as a player (one player per strategy, kept for all its matches),
``--matches`` best-of-N matches a pair, with the server's own rules (``core/match.py``:
rounds, the lead that decides early, draws). A player that plays ``random`` cannot be
read, and a ``random`` house bot cannot be beaten or lose on average: so ``random``
anchors the scale at 1500. Each bot's rating is what Glicko-2's expected score (the logistic
curve, 400 points a factor of ten) gives for its mean score against the whole field of
players, who average 1500 by that anchor. Draws count half.

Sans-I/O, one process, seeded: the same arguments print the same table.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from game_server.core.match import Match, MatchRules, Seat  # noqa: E402
from game_server.core.scoring import PlayerStats  # noqa: E402
from game_server.core.strategies import STRATEGY_NAMES, Strategy, make_strategy  # noqa: E402
from protocol import Result  # noqa: E402


def play(bot: Strategy, player: Strategy, rules: MatchRules, match_id: str) -> float:
    """One match; the bot's score (1 win, 0.5 draw, 0 loss)."""
    seats = (Seat("bot", "bot", PlayerStats(), bot=True), Seat("p", "p", PlayerStats()))
    match = Match(match_id, seats, rules)
    now = 0.0
    match.begin(now)
    while not match.over:
        round_number = match.round
        sends = match.choose(0, round_number, bot.next_choice(), True, now)
        sends += match.choose(1, round_number, player.next_choice(), True, now)
        for seat, message in sends:
            if isinstance(message, Result):
                (bot if seat == 0 else player).observe(message.you, message.opponent)
        now += rules.round_pause + 0.01
        sends = match.tick(now)
    if match.winner is None:
        return 0.5
    return 1.0 if match.winner == 0 else 0.0


def rating_for(score: float) -> float:
    """The rating whose expected score against a 1500 field is ``score``."""
    score = min(max(score, 1e-4), 1 - 1e-4)
    return 1500.0 + 400.0 * math.log10(score / (1.0 - score))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matches", type=int, default=5000, help="matches per pair")
    parser.add_argument("--best-of", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    rules = MatchRules(best_of=args.best_of, round_pause=0.0)
    rng = random.Random(args.seed)
    players = {
        name: make_strategy(name, random.Random(rng.getrandbits(64))) for name in STRATEGY_NAMES
    }
    table: dict[str, dict[str, float]] = {}
    count = 0
    for bot_name in STRATEGY_NAMES:
        table[bot_name] = {}
        for player_name, player in players.items():
            scores = []
            for _ in range(args.matches):
                bot = make_strategy(bot_name, random.Random(rng.getrandbits(64)))
                count += 1
                scores.append(play(bot, player, rules, f"m{count}"))
            table[bot_name][player_name] = statistics.fmean(scores)
    width = max(len(name) for name in STRATEGY_NAMES)
    print(
        f"house bot vs player: the bot's mean score over {args.matches} best-of-{args.best_of} "
        f"matches a pair (seed {args.seed})"
    )
    print(
        " " * width
        + "  "
        + "  ".join(f"{name:>9}" for name in STRATEGY_NAMES)
        + "     mean  rating"
    )
    for bot_name, row in table.items():
        mean = statistics.fmean(row.values())
        cells = "  ".join(f"{row[name]:9.3f}" for name in STRATEGY_NAMES)
        print(f"{bot_name:<{width}}  {cells}  {mean:7.3f}  {rating_for(mean):6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
