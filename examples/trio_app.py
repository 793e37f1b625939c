"""An application that uses trio directly: a nursery and ``trio.sleep``.

It only works when the whole server runs on trio::

    tricorn -k trio examples.trio_app:app        # or: tricorn -c config/trio.toml
    curl http://127.0.0.1:8000/

Under the asyncio or uvloop workers there is no trio run loop, so the first
trio call raises ``RuntimeError``. The request handler starts three child
tasks in a nursery. Each sleeps a little, then reports. The response is sent
after the nursery has joined them all, in start order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DELAYS = (0.03, 0.01, 0.02)


async def work(index: int, delay: float, results: list[str]) -> None:
    """Stand-in for real I/O: sleep on trio's clock, then record the result."""
    await trio.sleep(delay)
    results[index] = f"task {index} slept {delay:.2f}s"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Run a few trio tasks concurrently per request and report on them."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise NotImplementedError(f"unsupported scope type {scope['type']!r}")
    results = [""] * len(DELAYS)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index, delay in enumerate(DELAYS):
            nursery.start_soon(work, index, delay, results)
    elapsed = trio.current_time() - started
    lines = [*results, f"all done in {elapsed:.2f}s on trio {trio.__version__}", ""]
    body = "\n".join(lines).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    """Check at startup that we really are on trio, so a wrong -k fails early."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                trio.lowlevel.current_trio_token()
            except RuntimeError:
                await send(
                    {
                        "type": "lifespan.startup.failed",
                        "message": "examples.trio_app needs the trio worker: run with -k trio",
                    }
                )
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
