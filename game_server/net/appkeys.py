"""Typed keys for what the aiohttp application holds, shared by its route modules."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import attrs
from aiohttp import web

from game_server.config import ServerConfig
from game_server.core.ports import Storage
from game_server.core.ratelimit import AddressCounts
from game_server.core.service import GameService
from game_server.net.addresses import Network
from game_server.net.connection import Connection, Flusher
from game_server.net.heartbeat import Heartbeat
from game_server.net.plugin import Plugin
from game_server.net.ticker import Ticker
from game_server.ops.memory import AllocatorTrim
from game_server.ops.metrics import PrometheusObserver
from game_server.wechat.client import WeChatClient


@attrs.define
class Lifecycle:
    """Ready once serving; draining from the first stop signal until exit."""

    ready: bool = False
    draining: bool = False


SERVICE = web.AppKey("service", GameService)
# What a socket's mask check calls on an unmasked frame: one for the app, not a closure
# per socket (200 bytes each).
ON_UNMASKED: web.AppKey[Callable[[], None]] = web.AppKey("on_unmasked")
ALLOCATOR_TRIM = web.AppKey("allocator_trim", AllocatorTrim)  # memory back once sockets left
STORE = web.AppKey("store", Storage)
WECHAT = web.AppKey("wechat", WeChatClient)  # absent when no WeChat app is configured
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)  # for calls out (WeChat)
TICKER = web.AppKey("ticker", Ticker)
FLUSHER = web.AppKey("flusher", Flusher)
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)
CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")
CONFIG = web.AppKey("config", ServerConfig)
STARTED = web.AppKey("started", float)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
METRICS = web.AppKey("metrics", PrometheusObserver)
PLUGIN = web.AppKey("plugin", Plugin)  # a cluster, when one is configured
ADDRESSES = web.AppKey("addresses", AddressCounts)  # open WebSockets per client address
# The proxies whose X-Forwarded-* headers are believed (--trusted-proxies), parsed once.
TRUSTED_PROXIES: web.AppKey[tuple[Network, ...]] = web.AppKey("trusted_proxies")
