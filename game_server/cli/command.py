"""The server's command line as a list, for whoever starts it as a process (tests, bench)."""

from __future__ import annotations

import sys
from collections.abc import Mapping


def server_command(
    *args: str, env: Mapping[str, str] | None = None, python: str = sys.executable
) -> list[str]:
    """``python -m game_server`` on 127.0.0.1 with JSON logs, plus ``args``.

    Storage is in memory and the port any free one, unless ``args`` (or ``env``: ``RPS_DB``,
    ``PORT``) say otherwise: a process started this way writes no file into the working
    directory and never takes the default 9595 a developer's server may hold.
    """
    env = env or {}
    storage = () if "--db" in args or "RPS_DB" in env else ("--db", ":memory:")
    port = () if "--port" in args or "PORT" in env else ("--port", "0")
    host = () if "--host" in args else ("--host", "127.0.0.1")
    return [python, "-m", "game_server", *host, "--log-format", "json", *storage, *port, *args]
