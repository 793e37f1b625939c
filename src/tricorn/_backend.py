"""The one place that names asyncio, uvloop and trio.

Everything else in tricorn is written against anyio; this module picks the
event loop that anyio runs on (``-k asyncio|uvloop|trio``) and provides the
one operation anyio lacks: :func:`sendfile`, handed to the server by the
process layer (``workers.py``) so that the layers below never name a backend.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute

from .errors import StartupFailure

__all__ = ["BACKENDS", "run", "sendfile"]

T = TypeVar("T")

BACKENDS = ("asyncio", "uvloop", "trio")


def _options(worker_class: str) -> tuple[str, dict[str, Any]]:
    if worker_class == "asyncio":
        return "asyncio", {}
    if worker_class == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            raise StartupFailure(
                "worker_class 'uvloop' needs uvloop: pip install 'tricorn[uvloop]'"
            )
        return "asyncio", {"use_uvloop": True}
    if worker_class == "trio":
        if importlib.util.find_spec("trio") is None:
            raise StartupFailure("worker_class 'trio' needs trio: pip install 'tricorn[trio]'")
        return "trio", {}
    raise StartupFailure(f"unknown worker_class {worker_class!r}; use one of {BACKENDS}")


def run(fn: Callable[..., Awaitable[T]], *args: Any, worker_class: str) -> T:
    """Run ``fn(*args)`` on the event loop named by ``worker_class``.

    :raises StartupFailure: the backend's library is not installed.
    """
    backend, options = _options(worker_class)
    return anyio.run(fn, *args, backend=backend, backend_options=options)


async def sendfile(stream: ByteStream, file: IO[bytes], offset: int, count: int) -> int | None:
    """Copy ``count`` bytes of ``file`` from ``offset`` to the socket under
    ``stream`` in the kernel (``os.sendfile``), without passing them through
    Python. Returns the bytes sent (fewer if the file is shorter), or
    ``None`` when ``stream`` is not a plain socket stream this loop can do
    it on (TLS, uvloop): the caller then copies.

    The caller holds the stream's write lock: nothing else writes meanwhile.
    """
    transport = getattr(stream, "_transport", None)  # anyio's asyncio SocketStream
    if transport is not None:
        import asyncio

        if not isinstance(transport, asyncio.Transport):
            return None
        loop = asyncio.get_running_loop()
        try:
            # Waits for the transport's buffer to drain first, so the bytes
            # stay in order behind what anyio already wrote.
            return await loop.sendfile(transport, file, offset, count, fallback=False)
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            return None
    if type(stream).__module__ != "anyio._backends._trio":
        return None
    import trio

    # trio writes straight to the socket: once anyio's send returned, every
    # earlier byte is in the kernel and the raw descriptor is ours to use.
    sock = stream.extra(SocketAttribute.raw_socket)
    fd, in_fd = sock.fileno(), file.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(fd, in_fd, offset + sent, count - sent)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if n == 0:
            break  # the file is shorter than it was
        sent += n
        await anyio.lowlevel.checkpoint()
    return sent
