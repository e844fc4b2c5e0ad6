"""Per-process and per-address limits at the WebSocket upgrade, and the HTTP headers that
give nothing away (in-process servers on 127.0.0.1)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

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
