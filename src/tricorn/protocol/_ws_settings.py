"""A WebSocket's limits, apart from the framing in :mod:`.websocket`.

Every HTTP adapter's settings hold one, so the HTTP/1.1 adapter can be
configured without importing the framing (and wsproto): that happens with
the first WebSocket handshake. :mod:`.websocket` re-exports the class.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WSSettings"]


@dataclass(frozen=True, slots=True)
class WSSettings:
    """A WebSocket's limits; built from the config by the server."""

    max_message_size: int = 16 * 1024 * 1024
    ping_interval: float | None = None
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 5.0
    permessage_deflate: bool = True
