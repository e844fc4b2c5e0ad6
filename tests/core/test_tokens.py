"""Signed session tokens: round trip, expiry, forgery, and sharing a secret."""

from __future__ import annotations

import pytest

from game_server.core.tokens import InvalidToken, TokenSigner
from tests.support.fakes import FakeClock

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_token_names_its_player_until_it_expires() -> None:
    clock = FakeClock(1_700_000_000.0)
    signer = TokenSigner(SECRET, ttl=60, clock=clock)
    token = signer.issue("p_abc123")
    assert signer.verify(token) == "p_abc123"
    clock.advance(59)
    assert signer.verify(token) == "p_abc123"
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token)


def test_another_process_with_the_same_secret_accepts_it() -> None:
    token = TokenSigner(SECRET, ttl=60).issue("p_1")
    assert TokenSigner(SECRET, ttl=5).verify(token) == "p_1"
    with pytest.raises(InvalidToken, match="not issued"):
        TokenSigner(b"another secret, sixteen+ bytes", ttl=60).verify(token)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("p_1", "p_2"),  # someone else's id
        lambda t: t.rsplit(".", 2)[0] + ".99999999999." + t.rsplit(".", 1)[1],  # expiry
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
        lambda t: "v2" + t[2:],
        lambda t: t + ".extra",
        lambda t: "garbage",
        lambda t: "",
        lambda t: "v1.p_1.notanumber." + t.rsplit(".", 1)[1],
    ],
)
def test_forged_tokens_are_refused(tamper: object) -> None:
    signer = TokenSigner(SECRET, ttl=60)
    token = signer.issue("p_1")
    assert callable(tamper)
    with pytest.raises(InvalidToken):
        signer.verify(tamper(token))


def test_weak_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short", ttl=60)
    with pytest.raises(ValueError, match="positive"):
        TokenSigner(SECRET, ttl=0)
    with pytest.raises(ValueError, match="dots"):
        TokenSigner(SECRET, ttl=1).issue("a.b")
    a, b = TokenSigner.random(60), TokenSigner.random(60)
    with pytest.raises(InvalidToken):
        b.verify(a.issue("p_1"))
