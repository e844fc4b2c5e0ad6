"""Per-process and per-address limits at the WebSocket upgrade, and the HTTP headers that
give nothing away (in-process servers on 127.0.0.1)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from game_server.net.appkeys import CONNECTIONS
from tests.conftest import ServerFactory
from tests.support.wire import connect


async def test_upgrades_beyond_max_connections_get_503(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server({"max_connections": 2})
    first, _second = await connect(http, server, "One"), await connect(http, server, "Two")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.make_url("/applet/websocket"))
    assert refused.value.status == 503
    await first.ws.close()
    for _ in range(500):  # the server lets go of it just after
        if len(server.app[CONNECTIONS]) <= 1:
            break
        await asyncio.sleep(0.01)
    third = await connect(http, server, "Three")  # a place came free
    assert third.hi["name"] == "Three"
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="max_connections"} 1.0' in metrics


async def _upgrade(
    http: aiohttp.ClientSession, server: TestServer, forwarded: str
) -> aiohttp.ClientWebSocketResponse | int:
    try:
        return await http.ws_connect(
            server.make_url("/applet/websocket"), headers={"X-Forwarded-For": forwarded}
        )
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def test_the_per_address_cap_counts_the_address_a_trusted_proxy_names(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        {"max_connections_per_address": 2, "trusted_proxies": ("127.0.0.1/32",)}
    )
    first = [await _upgrade(http, server, "198.51.100.1") for _ in range(3)]
    assert [x if isinstance(x, int) else "open" for x in first] == ["open", "open", 429]
    other = await _upgrade(http, server, "198.51.100.2")  # another client behind the proxy
    assert not isinstance(other, int)
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="address_connections"} 1.0' in metrics


async def test_forwarded_headers_from_an_untrusted_peer_change_nothing(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server({"max_connections_per_address": 2})  # no proxy trusted
    opened = [await _upgrade(http, server, f"198.51.100.{i}") for i in range(3)]
    assert [x if isinstance(x, int) else "open" for x in opened] == ["open", "open", 429]
