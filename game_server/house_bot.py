"""The server's own opponent: a strategy from ``bots/`` with a human-like think time."""

from __future__ import annotations

import random

import attrs

from bots.strategies import Strategy
from protocol import Choice, Result, ServerMessage, Start

BOT_NAMES = (
    "Rocky",
    "Paper Tiger",
    "Edward S.",
    "Stone Cold",
    "Origami",
    "Snip Snap",
    "Pebble",
    "Flatpack",
)

# A bot never thinks past this share of the round, so it never forfeits on time.
_THINK_CAP = 0.8


@attrs.frozen
class PlannedChoice:
    when: float
    round: int
    choice: Choice


class HouseBot:
    """Reacts to the messages its seat receives; the service turns plans into timers."""

    def __init__(
        self,
        player_id: str,
        name: str,
        strategy: Strategy,
        think: tuple[float, float],
        rng: random.Random,
    ) -> None:
        self.player_id = player_id
        self.name = name
        self.strategy = strategy
        self.think = think
        self.rng = rng

    def on_message(self, message: ServerMessage, now: float) -> PlannedChoice | None:
        if isinstance(message, Start):
            low, high = self.think
            delay = min(self.rng.uniform(low, high), message.round_ms / 1000 * _THINK_CAP)
            return PlannedChoice(now + delay, message.round, self.strategy.next_choice())
        if isinstance(message, Result):
            self.strategy.observe(message.you, message.opponent)
        return None
