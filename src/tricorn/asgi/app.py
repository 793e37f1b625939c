"""Recognise ASGI 2 ("double callable") applications and wrap them so the
rest of tricorn only ever calls ASGI 3 applications."""

from __future__ import annotations

import inspect
from typing import Any, cast

from .types import ASGIApp, ASGIReceive, ASGISend, Scope

__all__ = ["as_asgi3", "is_asgi2"]


def is_asgi2(app: object) -> bool:
    """``True`` if ``app`` follows ASGI 2: ``app(scope)`` returns a coroutine
    function taking ``(receive, send)``.

    A class is ASGI 2 (instantiating it with the scope is the first call);
    an object or function whose call is a coroutine function is ASGI 3.
    """
    if inspect.isclass(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we want the method itself
    return not (inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call))


def as_asgi3(app: Any) -> ASGIApp:
    """Return ``app`` itself if it is ASGI 3, else an ASGI 3 wrapper."""
    if not is_asgi2(app):
        return cast(ASGIApp, app)

    async def asgi3(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__qualname__ = f"asgi2({getattr(app, '__qualname__', type(app).__name__)})"
    return asgi3
