"""The server's own opponent: a strategy from ``strategies.py`` with a human-like think time
(the same strategies the bot clients in ``bots/`` play with)."""

from __future__ import annotations

import random

import attrs

from game_server.core.strategies import Strategy
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
# No changing of its mind: one final choice per round (the native lobby's bot).
STEADY = (0, 0)


@attrs.frozen
class PlannedChoice:
    """A choice the service plays at ``when``; ``then`` is the bot's next change of mind
    (the service plays it in turn), so only the last choice of a chain is ``final``."""

    when: float
    round: int
    choice: Choice
    final: bool = True
    then: PlannedChoice | None = None

    def chain(self) -> list[PlannedChoice]:
        """This choice and every change after it, in order."""
        plans = [self]
        while plans[-1].then is not None:
            plans.append(plans[-1].then)
        return plans


class HouseBot:
    """Reacts to the messages its seat receives; the service turns plans into timers.

    ``changes`` is how many times (low, high) it changes its mind in a round after its
    first choice, at random moments before it settles (the 2016 demo's robot did): each
    change a hand other than the one before, the last one its strategy's, and final.
    """

    def __init__(
        self,
        player_id: str,
        name: str,
        strategy: Strategy,
        think: tuple[float, float],
        rng: random.Random,
        changes: tuple[int, int] = STEADY,
    ) -> None:
        self.player_id = player_id
        self.name = name
        self.strategy = strategy
        self.think = think
        self.rng = rng
        self.changes = changes

    def on_message(self, message: ServerMessage, now: float) -> PlannedChoice | None:
        if isinstance(message, Start):
            low, high = self.think
            cap = message.round_ms / 1000 * _THINK_CAP
            delay = min(self.rng.uniform(low, high), cap)
            if self.changes == STEADY:
                return PlannedChoice(now + delay, message.round, self.strategy.next_choice())
            return self._fickle(message.round, now + delay, now + cap)
        if isinstance(message, Result):
            self.strategy.observe(message.you, message.opponent)
        return None

    def _fickle(self, round_number: int, first: float, last: float) -> PlannedChoice:
        """A first choice at ``first``, then changes at random moments up to ``last``."""
        rng = self.rng
        count = rng.randint(*self.changes)
        times = [first, *sorted(rng.uniform(first, last) for _ in range(count))]
        # Settled on the strategy's hand; each earlier hand differs from the one after it.
        hands = [self.strategy.next_choice()]
        for _ in range(count):
            hands.insert(0, rng.choice([c for c in Choice if c is not hands[0]]))
        plan: PlannedChoice | None = None
        for index in reversed(range(count + 1)):
            final = plan is None
            plan = PlannedChoice(times[index], round_number, hands[index], final, plan)
        assert plan is not None
        return plan
