"""The framework's ceiling: a bare aiohttp WebSocket echo server, set up like ours.

Same event loop (uvloop where available), compression off, one text frame back per text
frame in. ``bench/bench.py`` drives it with the same load generator as the game server.
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=4097, decode_text=False)
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_frame(message.data, WSMsgType.TEXT)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/applet/websocket", echo)
    try:
        import uvloop
    except ImportError:
        loop = None
    else:
        loop = uvloop.new_event_loop()
    print("listening", flush=True, file=sys.stderr)
    web.run_app(
        app, host=args.host, port=args.port, access_log=None, print=None, loop=loop, backlog=1024
    )


if __name__ == "__main__":
    main()
