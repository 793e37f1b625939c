"""tricorn: an ASGI server for HTTP/1.1, HTTP/2, HTTP/3 and WebSockets on
one anyio core that runs under asyncio, uvloop and trio.

The public names are imported lazily, so ``import tricorn.config`` (as the
CLI does first) does not load the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .config import Config
    from .server.serve import ShutdownTrigger

__all__ = ["Config", "__version__", "serve"]

__version__ = "0.1.0"


async def serve(
    app: Any,
    config: Config | None = None,
    *,
    shutdown_trigger: ShutdownTrigger | None = None,
    task_status: TaskStatus[list[str]] | None = None,
) -> None:
    """Serve ``app`` in the running event loop (asyncio, uvloop or trio)
    until ``shutdown_trigger()`` returns, then shut down gracefully.

    ``config`` defaults to ``Config()``. Under anyio,
    ``urls = await task_group.start(tricorn.serve, app, config)`` reports
    the bound addresses once the server listens. With ``metrics_bind`` set,
    the metrics endpoint is served too. Logging is left as the program set
    it up (the CLI configures it from the settings).

    :raises StartupFailure: binding, or the app's lifespan startup, failed.
    """
    import anyio

    from . import _backend
    from .config import Config
    from .server.serve import serve as serve_here

    await serve_here(
        app,
        config if config is not None else Config(),
        shutdown_trigger=shutdown_trigger,
        io=_backend,
        task_status=task_status if task_status is not None else anyio.TASK_STATUS_IGNORED,
    )


def __getattr__(name: str) -> Any:
    if name == "Config":
        from .config import Config

        return Config
    raise AttributeError(f"module 'tricorn' has no attribute {name!r}")
