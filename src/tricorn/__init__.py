"""tricorn: an ASGI server for HTTP/1.1 (HTTP/2, HTTP/3 and WebSockets to
come) on one anyio core that runs under asyncio, uvloop and trio.

The public names are imported lazily, so ``import tricorn.config`` (as the
CLI does first) does not load the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config
    from .server.serve import serve

__all__ = ["Config", "__version__", "serve"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Config":
        from .config import Config

        return Config
    if name == "serve":
        from .server.serve import serve

        return serve
    raise AttributeError(f"module 'tricorn' has no attribute {name!r}")
