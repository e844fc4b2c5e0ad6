"""What a WebSocket endpoint speaks, and the native protocol's dialect."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from game_server.core.ports import Outlet
from game_server.core.service import GameService
from game_server.core.sessions import Session
from game_server.net.connection import Connection


class Dialect(Protocol):
    """What a WebSocket endpoint speaks: the native protocol, or an adapter for another.

    The handler owns the socket, the send queue and the session's lifetime; a dialect
    only turns frames into service calls and server messages into frames.
    """

    def install(self, service: GameService) -> None:
        """Set up what the dialect needs in the service (a lobby) once at start-up."""

    def open(self, service: GameService, connection: Connection, request: web.Request) -> Session:
        """A socket was accepted: connect it as a session (and greet it if the dialect does).

        ``request`` is the upgrade request, for what the dialect needs of it now: on the
        fast path it is gone once the socket is set up (``net/fastpath.py``)."""

    def text(self, service: GameService, session: Session, data: bytes) -> None:
        """One text frame from the client."""

    def refuse(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """An HTTP error for a request this endpoint will not upgrade, or None to go on."""


class NativeDialect:
    """Wire protocol v1 (``protocol/README.md``): the connection itself is the outlet."""

    def install(self, service: GameService) -> None:
        pass

    def open(self, service: GameService, connection: Connection, request: web.Request) -> Session:
        outlet: Outlet = connection
        return service.connect(outlet, address=connection.address)

    def text(self, service: GameService, session: Session, data: bytes) -> None:
        service.receive(session, data)

    def refuse(self, request: web.BaseRequest) -> web.StreamResponse | None:
        return None
