"""Typed keys for what the aiohttp application holds, shared by its route modules."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from game_server.core.service import GameService
from game_server.store.sqlite import SqliteStore
from game_server.wechat.client import WeChatClient

SERVICE = web.AppKey("service", GameService)
STORE = web.AppKey("store", SqliteStore)
WECHAT = web.AppKey("wechat", WeChatClient)  # absent when no WeChat app is configured
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)  # for calls out (WeChat)
