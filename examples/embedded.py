"""Run tricorn inside your own program, on the event loop you choose.

``tricorn.serve(app, config)`` is a coroutine: it serves until its
``shutdown_trigger`` returns, then drains gracefully. Here the trigger is
SIGINT or SIGTERM, so this behaves like the CLI::

    python -m examples.embedded                   # asyncio.run()
    python -m examples.embedded --loop trio       # trio.run()
    python -m examples.embedded --port 9000 --metrics-port 9090

Under anyio, ``urls = await task_group.start(tricorn.serve, app, config)``
returns the bound addresses once the server listens (as ``main`` does).
Logging is the program's: here ``logging.basicConfig``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import anyio

import tricorn
from examples.hello import app


async def main(port: int, metrics_port: int | None) -> None:
    config = tricorn.Config(
        bind=(f"127.0.0.1:{port}",),
        metrics_bind=f"127.0.0.1:{metrics_port}" if metrics_port else None,
        graceful_timeout=5.0,
    )
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def first_signal() -> None:
            async for _ in signals:
                return

        async with anyio.create_task_group() as tg:
            urls = await tg.start(
                lambda task_status: tricorn.serve(
                    app, config, shutdown_trigger=first_signal, task_status=task_status
                )
            )
            print("serving on", ", ".join(urls), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.loop == "trio":
        import trio

        trio.run(main, args.port, args.metrics_port)
    else:
        asyncio.run(main(args.port, args.metrics_port))
