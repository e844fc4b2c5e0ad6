"""What the composition root may plug into the app besides storage: a cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from game_server.core.ports import Storage
from game_server.core.service import GameService, ServiceConfig


class Plugin(Protocol):
    """Something the composition root plugs into the game service (a cluster): started
    before the service is made, asked how to make it, and closed after the sockets."""

    async def start(self) -> None: ...

    def service_options(self, config: ServiceConfig, clock: Callable[[], float]) -> Any:
        """Keyword arguments for ``GameService`` (a queue, a locator, a forwarder)."""
        ...

    def attach(self, service: GameService, storage: Storage) -> None:
        """Plug into the service made with ``service_options``, which stores in ``storage``."""
        ...

    @property
    def ready(self) -> bool:
        """False while what it needs is unreachable: ``/readyz`` then says 503."""
        ...

    def health(self) -> dict[str, Any]: ...

    def metrics(self) -> list[tuple[str, str, str, float, dict[str, str]]]:
        """Extra Prometheus samples: name, help, "counter" or "gauge", value, labels."""
        ...

    async def close(self) -> None: ...
