"""The ASGI lifespan protocol (spec 2.0) with ``state``.

:class:`Lifespan` runs the application's lifespan call in a task of the
server's task group. ``startup()`` and ``shutdown()`` exchange one message
each with it, bounded by the configured timeouts.

An application that raises or returns before answering ``lifespan.startup``
does not support lifespan: that is logged at debug level and serving goes
on. ``lifespan.startup.failed`` (or a timeout) is a :class:`StartupFailure`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import StartupFailure
from .scope import ASGI_VERSION
from .types import ASGIApp, Message

__all__ = ["Lifespan"]

log = logging.getLogger("tricorn.error")


class Lifespan:
    """One application's lifespan.

    :param app: the ASGI 3 application.
    :param state: the dictionary offered as ``scope["state"]``; request
        scopes get shallow copies of it after startup.
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.supported = True
        self._to_app_send, self._to_app = anyio.create_memory_object_stream[Message](1)
        self._from_app_send, self._from_app = anyio.create_memory_object_stream[Message](1)
        self._app_done = anyio.Event()

    async def startup(self, tg: TaskGroup, timeout: float) -> None:
        """Start the lifespan task in ``tg`` and wait for startup.

        :raises StartupFailure: the app sent ``lifespan.startup.failed``, or
            did not answer within ``timeout`` seconds.
        """
        tg.start_soon(self._run)
        reply = await self._exchange("lifespan.startup", timeout)
        if reply is None:
            return
        if reply["type"] == "lifespan.startup.failed":
            raise StartupFailure(f"lifespan startup failed: {reply.get('message', '')}")
        if reply["type"] != "lifespan.startup.complete":
            # An app that ignores scope["type"] (many simple ones do): it
            # does not support lifespan. End its call's channels.
            log.debug("ASGI lifespan unsupported: the app sent %r", reply.get("type"))
            self.supported = False
            self._close_channels()

    async def shutdown(self, timeout: float) -> None:
        """Ask the app to shut down; failures and timeouts are logged."""
        if not self.supported:
            return
        try:
            reply = await self._exchange("lifespan.shutdown", timeout)
        except StartupFailure as exc:
            log.error("%s", exc)
            return
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            log.error("lifespan shutdown failed: %s", reply.get("message", ""))

    async def _exchange(self, message_type: str, timeout: float) -> Message | None:
        """Send one message and wait for the reply; ``None`` when the app
        turned out not to support lifespan."""
        if self._app_done.is_set():
            self.supported = False
            return None
        with anyio.move_on_after(timeout if timeout > 0 else math.inf) as scope:
            async with anyio.create_task_group() as tg:

                async def watch_exit() -> None:
                    await self._app_done.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_exit)
                try:
                    await self._to_app_send.send({"type": message_type})
                    reply: Message | None = await self._from_app.receive()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                    reply = None  # the app's call ended meanwhile
                tg.cancel_scope.cancel()
                if reply is not None:
                    return reply
        if scope.cancelled_caught:
            raise StartupFailure(f"{message_type} timed out after {timeout} s")
        self.supported = False
        return None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            if self.supported:
                log.debug("ASGI lifespan unsupported or failed: %r", exc, exc_info=exc)
        else:
            log.debug("ASGI lifespan call returned")
        finally:
            self._app_done.set()
            self._close_channels()

    def _close_channels(self) -> None:
        for stream in (self._to_app_send, self._to_app, self._from_app_send, self._from_app):
            stream.close()

    async def _receive(self) -> Message:
        return await self._to_app.receive()

    async def _send(self, message: Message) -> None:
        await self._from_app_send.send(message)
