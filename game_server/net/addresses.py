"""The client's real address: the peer's, or what a trusted proxy says it is.

Behind nginx every peer is nginx. Its ``X-Forwarded-For`` (or ``X-Real-IP``) names the
client, but anyone can send those headers, so they are believed only from peers in
``--trusted-proxies``. ``X-Forwarded-For`` is read from the right (each proxy appends the
address it got the request from): the first address that is not itself a trusted proxy
is the client's. An entry that is not an IP address stops the walk at the last proxy
that was trusted, so a forged or garbled header can never name an address of its
sender's choosing for a peer that is not trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.1/32, 10.0.0.0/8 ::1"``: CIDRs (or bare addresses), comma- or
    space-separated; ``ValueError`` names the first one that is not."""
    networks = []
    for part in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {part!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted: Sequence[Network]
) -> str | None:
    """The client's address for a request from ``peer`` with ``headers``."""
    if peer is None:
        return None
    current = _address(peer)
    if current is None or not trusted or not _trusted(current, trusted):
        return peer if current is None else str(current)
    forwarded = headers.get("X-Forwarded-For")
    if forwarded:
        for hop in reversed(forwarded.split(",")):
            address = _address(hop)
            if address is None:
                break  # garbage: the last trusted proxy is as far as we can tell
            current = address
            if not _trusted(address, trusted):
                break
        return str(current)
    real = headers.get("X-Real-IP")
    if real:
        address = _address(real)
        if address is not None:
            return str(address)
    return str(current)


def forwarded_scheme(
    peer: str | None, headers: Mapping[str, str], trusted: Sequence[Network]
) -> str | None:
    """The scheme a trusted proxy says the client used (``X-Forwarded-Proto``: nginx
    terminates TLS, so the request it passes on is plain HTTP), or None: not from a
    trusted proxy, or no such header, or not http/https."""
    current = None if peer is None else _address(peer)
    if current is None or not trusted or not _trusted(current, trusted):
        return None
    # A chain of proxies appends: the first entry is what the client reached.
    proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto if proto in ("http", "https") else None
