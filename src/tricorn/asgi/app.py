"""Recognise what kind of application was given (ASGI 3, ASGI 2 "double
callable", or WSGI) and wrap it so the rest of tricorn only ever calls ASGI 3
applications.

:func:`wrap_app` is the one entry point the server uses. Detection, in order:

1. a :class:`~tricorn.asgi.wsgi.WSGIApp` is WSGI (forced, e.g. by the
   ``wsgi:`` prefix); it takes the server's WSGI settings where it has none;
2. a coroutine function, or an object whose ``__call__`` is one, is ASGI 3;
3. a non-class callable taking exactly two required positional parameters
   (``environ, start_response``, as Flask's and Django's application
   objects do) is WSGI (:func:`is_wsgi`);
4. anything else is ASGI 2 (``app(scope)``: a class, or one required
   parameter), as before WSGI support.

What detection cannot tell (``def app(*args)``, a class that is a WSGI
app) is forced with ``wsgi:module:app`` / ``asgi:module:app``, or with
:class:`~tricorn.asgi.wsgi.WSGIApp` / :func:`as_asgi3` from Python.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any, Protocol, cast

from .types import ASGIApp, ASGIReceive, ASGISend, Scope

if TYPE_CHECKING:
    from .wsgi import WSGIApp

__all__ = ["AppSettings", "as_asgi3", "is_asgi2", "is_wsgi", "wrap_app"]


class AppSettings(Protocol):
    """The settings :func:`wrap_app` reads (a :class:`tricorn.Config` has them)."""

    @property
    def wsgi_max_body_size(self) -> int: ...

    @property
    def wsgi_max_threads(self) -> int: ...

    @property
    def workers(self) -> int: ...


def wrap_app(app: Any, settings: AppSettings) -> ASGIApp:
    """``app`` as an ASGI 3 application: WSGI apps in a
    :class:`~tricorn.asgi.wsgi.WSGIApp` with the ``settings``' body limit and
    thread bound, ASGI 2 apps in the ASGI 3 wrapper, ASGI 3 apps as they are.

    A given :class:`~tricorn.asgi.wsgi.WSGIApp` is copied (its own settings
    win), so each ``serve()`` has its own thread bound.
    """
    wsgi: WSGIApp
    if _is_wsgi_app(app):
        wsgi = app
    elif is_wsgi(app):
        from .wsgi import WSGIApp  # (imported for WSGI apps only: ASGI servers do without)

        wsgi = WSGIApp(app)
    else:
        return as_asgi3(app)
    return wsgi.with_defaults(
        max_body_size=settings.wsgi_max_body_size,
        max_threads=settings.wsgi_max_threads,
        multiprocess=settings.workers > 1,
    )


def _is_wsgi_app(app: object) -> bool:
    """``app`` is a :class:`~tricorn.asgi.wsgi.WSGIApp`, which it can only be
    once that module has been imported."""
    module = sys.modules.get("tricorn.asgi.wsgi")
    return module is not None and isinstance(app, module.WSGIApp)


def is_wsgi(app: object) -> bool:
    """``True`` if ``app`` looks like a PEP 3333 application: not a class, not
    a coroutine function, and callable with exactly two required positional
    arguments (``environ, start_response``). ASGI 2 callables take one.
    """
    if inspect.isclass(app) or not callable(app) or _is_coroutine_callable(app):
        return False
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):  # some builtins and C callables
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return False  # (*args): cannot tell
        if parameter.kind in positional and parameter.default is inspect.Parameter.empty:
            required += 1
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY and (
            parameter.default is inspect.Parameter.empty
        ):
            return False
    return required == 2


def _is_coroutine_callable(app: object) -> bool:
    call = getattr(app, "__call__", None)  # noqa: B004 - we want the method itself
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


def is_asgi2(app: object) -> bool:
    """``True`` if ``app`` follows ASGI 2: ``app(scope)`` returns a coroutine
    function taking ``(receive, send)``.

    A class is ASGI 2 (instantiating it with the scope is the first call);
    an object or function whose call is a coroutine function is ASGI 3.
    """
    if inspect.isclass(app):
        return True
    return not _is_coroutine_callable(app)


def as_asgi3(app: Any) -> ASGIApp:
    """Return ``app`` itself if it is ASGI 3, else an ASGI 3 wrapper."""
    if not is_asgi2(app):
        return cast(ASGIApp, app)

    async def asgi3(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__qualname__ = f"asgi2({getattr(app, '__qualname__', type(app).__name__)})"
    return asgi3
