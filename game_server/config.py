"""What one server process is configured with; ``cli/settings.py`` fills it from options."""

from __future__ import annotations

import attrs

from game_server.core.service import TOKEN_TTL, ServiceConfig
from game_server.wechat.client import WeChatConfig


@attrs.frozen
class ServerConfig:
    service: ServiceConfig = attrs.Factory(ServiceConfig)
    heartbeat: float | None = 30.0  # WebSocket ping interval; None turns it off
    send_queue: int = 256
    close_timeout: float = 2.0
    drain_seconds: float = 30.0  # how long matches may finish after SIGTERM
    # Players and matches: a SQLite file, or a postgresql:// (postgres://) URL nodes share
    db: str = ":memory:"
    # Days finished matches (and past days' and weeks' leaderboard points) are kept; None:
    # for ever. Players and their totals are never swept for it.
    keep_matches_days: float | None = None
    token_secret: bytes | None = None  # None: a random one, so tokens die with the process
    token_ttl: float = TOKEN_TTL
    wechat: WeChatConfig | None = None  # None: no POST /applet/login, guests only
    # aiohttp's fast path (net/fastpath.py): frames read in its parser's callback, written
    # and pinged as raw frames. False takes its public API, as on a release it was not
    # checked on.
    fast_path: bool = True
    redis: str | None = None  # a Redis URL: this process is one node of a cluster
    node_id: str | None = None  # its name in the cluster (default: host-pid)
    node_ttl: float = 10.0  # a node silent this long is dead: its matches are taken over
    # Seconds a new TCP connection has to send its whole request head (also how long an
    # idle keep-alive HTTP connection is kept): half-sent requests are cut.
    request_timeout: float = 10.0
    # WebSockets one process holds at most; upgrades beyond get 503. The file limit is
    # checked against it at start-up.
    max_connections: int = 50_000
    # WebSockets one client address (an IPv6 /64) may hold at once; 0 = no cap (a carrier
    # NAT puts thousands of phones behind one address).
    max_connections_per_address: int = 0
    # Proxies (CIDRs) whose X-Forwarded-For / X-Real-IP name the client; from anyone else
    # those headers are ignored and the peer's address is the client's.
    trusted_proxies: tuple[str, ...] = ()
    # Origins (scheme://host[:port]) a browser's WebSocket upgrade may come from; empty:
    # any. Requests without an Origin header (apps, bots) are never refused for it.
    allowed_origins: tuple[str, ...] = ()
    # The origin (scheme://host[:port]) clients reach this server at, for the absolute
    # URLs it hands out (pictures: the demo's robot, uploaded avatars). None: each
    # request's own (its Host, and https behind TLS or a trusted proxy's X-Forwarded-Proto).
    public_url: str | None = None
