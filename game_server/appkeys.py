"""Typed keys for what the aiohttp application holds, shared by its route modules."""

from __future__ import annotations

from aiohttp import web

from game_server.service import GameService
from game_server.storage import SqliteStore

SERVICE = web.AppKey("service", GameService)
STORE = web.AppKey("store", SqliteStore)
