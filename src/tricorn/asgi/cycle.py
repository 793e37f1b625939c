"""What every ASGI call shares, HTTP or WebSocket: the application, its
scope and stream port, the fields the access log reads, and the one
app-error boundary (STYLE.md principle 14).

:meth:`Cycle.run` calls the application once. How it ended picks a row of
the subclass's ``policy`` table ("raised", "returned a value"); a plain
return goes to the subclass's :meth:`Cycle._returned`. ``ClientDisconnected``
escaping the app is the expected end of a closed exchange: a debug line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final, Protocol

import anyio

from ..errors import AppProtocolError, ClientDisconnected
from ..protocol.events import Headers
from .types import ASGIApp, ASGIReceive, ASGISend, Message, Scope

__all__ = ["Cycle", "DefaultFields", "add_defaults"]

log: Final = logging.getLogger("tricorn.error")

Policy = dict[str, Callable[[Any, BaseException | None], Awaitable[None]]]


class DefaultFields(Protocol):
    """The response fields every response gets unless the app set them
    (``server``, ``date``; precomputed by the server)."""

    names: frozenset[bytes]  # their names, for the app's headers to be checked against

    def __call__(self) -> Headers:
        """The fields, now (the date changes once a second)."""


class Cycle:
    """The common part of :class:`~tricorn.asgi.http.HTTPCycle` and
    :class:`~tricorn.asgi.websocket.WebSocketCycle`.

    :param app: the ASGI 3 application.
    :param scope: the call's scope.
    :param port: the stream's connection to the event core (a
        :class:`~tricorn.asgi.http.StreamPort`).
    :param default_headers: the headers to add to every response unless
        the app set them (see :class:`DefaultFields`).
    """

    __slots__ = (
        "_default_headers",
        "_port",
        "app",
        "response_headers",
        "scope",
        "sent_bytes",
        "status",
    )

    policy: ClassVar[Policy]  # how an application call can end, and what follows

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        port: Any,
        default_headers: DefaultFields,
    ) -> None:
        # What the call returns is checked (a value is an error), so it is
        # typed as any object here (the compiled build checks the type).
        self.app: Callable[[Scope, ASGIReceive, ASGISend], Awaitable[object]] = app
        self.scope = scope
        self._port = port
        self._default_headers = default_headers
        self.status = 0  # for the access log
        self.sent_bytes = 0
        self.response_headers: Headers = []

    async def receive(self) -> Message:
        raise NotImplementedError

    async def send(self, message: Message) -> None:
        raise NotImplementedError

    async def _returned(self) -> None:
        """The application returned ``None``: finish what it left open."""
        raise NotImplementedError

    def _add_defaults(self, headers: Headers) -> None:
        add_defaults(headers, self._default_headers())

    async def run(self) -> None:
        """Call the application once and apply the error policy to how it
        ended. Never raises, except cancellation."""
        raised: BaseException | None = None
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except anyio.get_cancelled_exc_class():
            raise
        except ClientDisconnected:
            log.debug(
                "client disconnected during %s %s",
                self.scope.get("method", "WebSocket"),
                self.scope["path"],
            )
            return
        except BaseException as exc:  # the app-error boundary
            raised = exc  # the policy runs after the handler: see below
        if raised is not None:
            # Not awaited inside the ``except``: a compiled coroutine
            # suspended while handling an exception leaves it as the
            # thread's handled exception for whatever runs next (see
            # setup.py; tests/unit/test_compiled_build.py checks the rule).
            await self.policy["raised"](self, raised)
            raised = None  # (as ``except ... as`` does: no cycle through the traceback)
            return
        if result is not None:
            await self.policy["returned a value"](self, AppProtocolError(f"returned {result!r}"))
        else:
            await self._returned()


def add_defaults(headers: Headers, defaults: Headers) -> None:
    """Append the ``defaults`` (``server``, ``date``) the app did not set."""
    for item in defaults:  # two at most: no set needed
        name = item[0]
        for present, _ in headers:
            if present == name:
                break
        else:
            headers.append(item)
