"""ASGI types: the application signature and the message shapes tricorn
reads and writes (ASGI 3.0, HTTP spec 2.4, lifespan 2.0)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "ASGIApp",
    "ASGIReceive",
    "ASGISend",
    "Message",
    "Scope",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, ASGIReceive, ASGISend], Awaitable[None]]
