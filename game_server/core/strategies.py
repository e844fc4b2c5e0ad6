"""Bot strategies for rock-paper-scissors.

The same classes drive the server's in-process bot opponent and the stand-alone bot clients,
so a strategy knows nothing about transport or timing: it is asked for a hand with
:meth:`Strategy.next_choice` and then told what happened with :meth:`Strategy.observe`.

Every strategy takes its randomness from an injected ``random.Random`` so that games are
reproducible in tests and soak runs. Memory is bounded: strategies keep counters or the last
hand or two, never a growing history, because a bot may play for days.

A round where the opponent played no hand (``theirs is None``) tells us nothing about their
habits, so learning strategies skip it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from protocol.choices import Choice, Outcome, judge

__all__ = [
    "MIX",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "CopycatStrategy",
    "CycleStrategy",
    "FrequencyStrategy",
    "MarkovStrategy",
    "RandomStrategy",
    "Strategy",
    "WinStayLoseShiftStrategy",
    "make_strategy",
]

_CHOICES: tuple[Choice, ...] = tuple(Choice)
_TIE_EPSILON = 1e-9


@runtime_checkable
class Strategy(Protocol):
    """What the server's bot opponent and the bot clients need from a strategy."""

    name: str

    def next_choice(self) -> Choice:
        """The hand to play in the coming round."""
        ...

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        """Learn from a finished round; ``None`` means that side played no hand."""
        ...


def _check_decay(decay: float) -> float:
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    return decay


def _decayed_add(weights: dict[Choice, float], hand: Choice, decay: float) -> None:
    """Age every weight by ``decay`` and count ``hand`` once, keeping recent rounds heavier."""
    for choice in _CHOICES:
        weights[choice] = weights.get(choice, 0.0) * decay
    weights[hand] += 1.0


def _most_likely(weights: Mapping[Choice, float], rng: random.Random) -> Choice | None:
    """The heaviest hand, ties broken by ``rng``; ``None`` if there is no data."""
    top = max((weights.get(choice, 0.0) for choice in _CHOICES), default=0.0)
    if top <= 0.0:
        return None
    leaders = [c for c in _CHOICES if weights.get(c, 0.0) >= top - _TIE_EPSILON]
    return leaders[0] if len(leaders) == 1 else rng.choice(leaders)


class RandomStrategy:
    """The unexploitable baseline: uniform play cannot be beaten on average."""

    name: str = "random"

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng

    def next_choice(self) -> Choice:
        return self._rng.choice(_CHOICES)

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        return None


class CycleStrategy:
    """A predictable opponent for testing whether players (and other bots) spot patterns.

    The offset is random so that two cyclers do not always start in lockstep. The cycle
    advances on every :meth:`next_choice`, i.e. per hand actually asked for.
    """

    name: str = "cycle"

    def __init__(self, *, rng: random.Random) -> None:
        self._index = rng.randrange(len(_CHOICES))

    def next_choice(self) -> Choice:
        choice = _CHOICES[self._index]
        self._index = (self._index + 1) % len(_CHOICES)
        return choice

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        return None


class FrequencyStrategy:
    """Punishes opponents who favour one hand.

    Counts decay exponentially (each observed round multiplies old counts by ``decay``) rather
    than using a fixed window: memory stays at three floats, and a change of habit overtakes
    the old favourite within a handful of rounds (about 7 with the default 0.9) however long
    the old habit lasted.
    """

    name: str = "frequency"

    def __init__(self, *, rng: random.Random, decay: float = 0.9) -> None:
        self._rng = rng
        self._decay = _check_decay(decay)
        self._weights: dict[Choice, float] = {}

    def next_choice(self) -> Choice:
        predicted = _most_likely(self._weights, self._rng)
        if predicted is None:
            return self._rng.choice(_CHOICES)
        return predicted.beaten_by

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        if theirs is not None:
            _decayed_add(self._weights, theirs, self._decay)


class MarkovStrategy:
    """Exploits sequential habits (cycling, "never the same twice") that frequency misses.

    Predicts the opponent's next hand from what followed their last two hands (order 2),
    falling back to their last hand (order 1) when that pair has not been seen, and to random
    play with no context. Rows decay like :class:`FrequencyStrategy` so it re-learns when the
    opponent changes pattern. A round without their hand breaks the chain: the hands either
    side of the gap are not a real transition, so the context is cleared.
    """

    name: str = "markov"

    def __init__(self, *, rng: random.Random, decay: float = 0.95) -> None:
        self._rng = rng
        self._decay = _check_decay(decay)
        self._order1: dict[Choice, dict[Choice, float]] = {}
        self._order2: dict[tuple[Choice, Choice], dict[Choice, float]] = {}
        self._last: Choice | None = None
        self._before_last: Choice | None = None

    def _predict(self) -> Choice | None:
        if self._last is None:
            return None
        if self._before_last is not None:
            row2 = self._order2.get((self._before_last, self._last))
            if row2 is not None:
                return _most_likely(row2, self._rng)
        row1 = self._order1.get(self._last)
        if row1 is not None:
            return _most_likely(row1, self._rng)
        return None

    def next_choice(self) -> Choice:
        predicted = self._predict()
        if predicted is None:
            return self._rng.choice(_CHOICES)
        return predicted.beaten_by

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        if theirs is None:
            self._last = self._before_last = None
            return
        if self._last is not None:
            _decayed_add(self._order1.setdefault(self._last, {}), theirs, self._decay)
            if self._before_last is not None:
                key = (self._before_last, self._last)
                _decayed_add(self._order2.setdefault(key, {}), theirs, self._decay)
        self._before_last, self._last = self._last, theirs


class CopycatStrategy:
    """A cheap, easily beaten opponent that still reacts to play; good filler in soak mixes."""

    name: str = "copycat"

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._last: Choice | None = None

    def next_choice(self) -> Choice:
        if self._last is None:
            return self._rng.choice(_CHOICES)
        return self._last

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        if theirs is not None:
            self._last = theirs


class WinStayLoseShiftStrategy:
    """Models a common human heuristic, so players can practise against it.

    After a win it repeats the winning hand; after a loss it plays what would have beaten the
    opponent's last hand; after a draw it plays at random. Missing our own hand counts as a
    loss (as :func:`~protocol.choices.judge` says); a round without their hand is skipped.
    """

    name: str = "wsls"

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._planned: Choice | None = None

    def next_choice(self) -> Choice:
        if self._planned is None:
            return self._rng.choice(_CHOICES)
        return self._planned

    def observe(self, mine: Choice | None, theirs: Choice | None) -> None:
        if theirs is None:
            return
        outcome = judge(mine, theirs)
        if outcome is Outcome.WIN:
            self._planned = mine
        elif outcome is Outcome.LOSE:
            self._planned = theirs.beaten_by
        else:
            self._planned = None


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    RandomStrategy.name: RandomStrategy,
    CycleStrategy.name: CycleStrategy,
    FrequencyStrategy.name: FrequencyStrategy,
    MarkovStrategy.name: MarkovStrategy,
    CopycatStrategy.name: CopycatStrategy,
    WinStayLoseShiftStrategy.name: WinStayLoseShiftStrategy,
}
"""Strategy name -> factory called as ``factory(rng=...)``."""

STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)
"""The real strategy names in a stable order (``"mix"`` is not among them)."""

MIX = "mix"


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    """Build the strategy called ``name``; ``"mix"`` picks one of the real ones with ``rng``.

    Without ``rng`` a fresh, unseeded ``random.Random()`` is used.
    """
    if rng is None:
        rng = random.Random()
    if name == MIX:
        name = rng.choice(STRATEGY_NAMES)
    factory = STRATEGIES.get(name)
    if factory is None:
        valid = ", ".join((*STRATEGY_NAMES, MIX))
        raise ValueError(f"unknown strategy {name!r}; valid names: {valid}")
    return factory(rng=rng)
