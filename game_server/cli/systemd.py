"""systemd's notify protocol (``Type=notify``): READY=1, STOPPING=1, STATUS=...

The protocol is one datagram per state change to the socket named by ``NOTIFY_SOCKET``
(``@`` marks Linux's abstract namespace). Without the variable it does nothing, so the
same binary runs under pm2, a terminal or tests unchanged.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("game_server")


def notify(*states: str) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``) to systemd; False when not under it or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc))
        return False
    return True
