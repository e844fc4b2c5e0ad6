"""Per-process and per-address limits at the WebSocket upgrade, and the HTTP headers that
give nothing away (in-process servers on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import os

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


async def _raw_upgrade(server: TestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /applet/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _client_frame(payload: bytes, *, masked: bool = True) -> bytes:
    mask = os.urandom(4) if masked else b""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([0x81, (0x80 if masked else 0) | len(payload)]) + mask + body


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])
async def test_an_unmasked_client_frame_closes_the_socket_with_1002(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    server = await start_server({"fast_path": fast})
    reader, writer = await _raw_upgrade(server)
    # A masked hello first, split across reads, is answered; then an unmasked frame.
    hello = _client_frame(b'{"type":"hello"}')
    writer.write(hello[:3])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(hello[3:] + _client_frame(b'{"type":"ping"}', masked=False))
    frames = await asyncio.wait_for(reader.read(), 5)  # everything, up to the server's close
    writer.close()
    if fast:  # the hello was handled (off the fast path its reply may lose to the close)
        assert b'"type":"hi"' in frames
    assert b'"type":"pong"' not in frames
    close = frames.rindex(b"\x88")
    assert int.from_bytes(frames[close + 2 : close + 4], "big") == 1002
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="unmasked_frame"} 1.0' in metrics


async def test_responses_say_nosniff_and_no_exact_server_version(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    for path in ("/healthz", "/readyz", "/metrics", "/applet/leaderboard", "/", "/nowhere"):
        async with http.get(server.make_url(path)) as response:
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert response.headers["Server"] == "rps-server", path
    ws = await http.ws_connect(server.make_url("/applet/websocket"))
    assert ws._response.headers["Server"] == "rps-server"
    await ws.close()


async def test_allowed_origins_refuse_other_browser_pages(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server({"allowed_origins": ("https://game.example.com",)})
    url = server.make_url("/applet/websocket")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url, origin="https://evil.example")
    assert refused.value.status == 403
    ok = await http.ws_connect(url, origin="https://GAME.example.com")
    no_origin = await http.ws_connect(url)  # apps and bots send none
    for ws in (ok, no_origin):
        await ws.send_str('{"type":"hello"}')
        assert (await ws.receive_json(timeout=5))["type"] == "hi"
        await ws.close()
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="origin"} 1.0' in metrics
