"""The client's real address: headers believed only from trusted proxies."""

from __future__ import annotations

import pytest

from game_server.core.ratelimit import AddressCounts, address_key
from game_server.net.addresses import Network, client_address, forwarded_scheme, parse_networks

NGINX = parse_networks("127.0.0.1/32, ::1/128")
TWO_HOPS = parse_networks("127.0.0.1/32,10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        # No proxy trusted: the headers are anyone's to forge, so they are ignored.
        ("203.0.113.5", {"X-Forwarded-For": "198.51.100.1"}, (), "203.0.113.5"),
        ("127.0.0.1", {"X-Real-IP": "198.51.100.1"}, (), "127.0.0.1"),
        # A trusted peer's X-Forwarded-For, read from the right.
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1"}, NGINX, "198.51.100.1"),
        ("::1", {"X-Forwarded-For": "2001:db8::7"}, NGINX, "2001:db8::7"),
        # A client's own forged entry stays left of the address nginx appended.
        ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}, NGINX, "198.51.100.1"),
        # Through two trusted proxies.
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1, 10.1.2.3"}, TWO_HOPS, "198.51.100.1"),
        # Garbage stops the walk at the last trusted hop.
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1, junk"}, NGINX, "127.0.0.1"),
        # X-Real-IP when there is no X-Forwarded-For; a bad one is ignored.
        ("127.0.0.1", {"X-Real-IP": "198.51.100.9"}, NGINX, "198.51.100.9"),
        ("127.0.0.1", {"X-Real-IP": "nonsense"}, NGINX, "127.0.0.1"),
        # An untrusted peer behind a trusted-looking header is still itself.
        ("198.51.100.2", {"X-Forwarded-For": "127.0.0.1"}, NGINX, "198.51.100.2"),
        # Ports and IPv4-mapped IPv6 are read as the address.
        ("127.0.0.1", {"X-Forwarded-For": "198.51.100.1:5555"}, NGINX, "198.51.100.1"),
        ("127.0.0.1", {"X-Forwarded-For": "[2001:db8::1]:443"}, NGINX, "2001:db8::1"),
        ("::ffff:127.0.0.1", {"X-Forwarded-For": "198.51.100.1"}, NGINX, "198.51.100.1"),
        (None, {}, NGINX, None),
    ],
)
def test_client_address(
    peer: str | None, headers: dict[str, str], trusted: tuple[object, ...], expected: str | None
) -> None:
    assert client_address(peer, headers, trusted) == expected  # type: ignore[arg-type]


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("127.0.0.1/32,10.0.0.0/33")


def test_address_keys_group_an_ipv6_slash_64() -> None:
    assert address_key("198.51.100.1") == "198.51.100.1"
    assert (
        address_key("2001:db8:1:2:3:4:5:6")
        == address_key("2001:db8:1:2::9")
        == ("2001:db8:1:2::/64")
    )
    assert address_key("::ffff:198.51.100.1") == "198.51.100.1"
    assert address_key(None) == "-"


def test_address_counts_cap_and_forget() -> None:
    counts = AddressCounts(cap=2)
    assert counts.acquire("a")
    assert counts.acquire("a")
    assert not counts.acquire("a")
    assert counts.acquire("b")
    counts.release("a")
    assert counts.acquire("a")
    for _ in range(2):
        counts.release("a")
    counts.release("b")
    assert counts.counts == {}
    unlimited = AddressCounts(cap=0)
    assert all(unlimited.acquire("a") for _ in range(10_000))


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        ("127.0.0.1", {"X-Forwarded-Proto": "https"}, NGINX, "https"),
        ("127.0.0.1", {"X-Forwarded-Proto": "HTTP"}, NGINX, "http"),
        ("127.0.0.1", {"X-Forwarded-Proto": "https, http"}, NGINX, "https"),  # the first hop
        # From an untrusted peer, or no proxy trusted at all: anyone's to forge.
        ("198.51.100.2", {"X-Forwarded-Proto": "https"}, NGINX, None),
        ("127.0.0.1", {"X-Forwarded-Proto": "https"}, (), None),
        # Only the two schemes a URL handed out may have.
        ("127.0.0.1", {"X-Forwarded-Proto": "javascript"}, NGINX, None),
        ("127.0.0.1", {}, NGINX, None),
        (None, {"X-Forwarded-Proto": "https"}, NGINX, None),
    ],
)
def test_the_scheme_a_trusted_proxy_reports(
    peer: str | None, headers: dict[str, str], trusted: tuple[Network, ...], expected: str | None
) -> None:
    assert forwarded_scheme(peer, headers, trusted) == expected
