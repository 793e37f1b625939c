"""A connection's life from its first task to its closed transport.

The one part of the event core that awaits while an exception is being
handled: the connection's task group exits (awaiting its tasks) when the
connection is cancelled, and the transport is closed (a bounded flush)
after that. It is kept out of ``connection.py`` so that the compiled build
(setup.py) can compile the event core: mypyc's coroutines do not keep a
handled exception to themselves across a suspension (it stayed the
thread's handled exception, and a later connection raised it), so no
compiled module awaits inside ``except``, ``finally`` or ``async with``
(tests/unit/test_compiled_build.py checks the rule). This module always
runs as Python.

It is also where a connection's failure stops: an error of the server's
own that escapes the task group is logged and ends this connection, not
the worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["serve_connection"]

log = logging.getLogger("tricorn.error")


async def serve_connection(conn: Connection) -> None:
    """Serve ``conn`` until it closes; always close its transport. An
    error of the server's own (not cancellation) is logged, with its
    traceback, and closes this connection only."""
    conn.ctx.add(conn)
    if conn.ctx.shutting_down:
        conn.begin_shutdown()
    if not conn._multiplexed and conn._set_receiver is not None:
        conn._set_receiver(conn._receive_request)  # requests skip the read loop
    try:
        async with anyio.create_task_group() as tg:
            conn._tg = tg
            tg.start_soon(conn._control_loop)
            await conn._serve()
    except Exception:
        # A fault of ours (an app's errors end at its cycle): it ends this
        # connection, not the server and everyone else's connections.
        log.exception("internal error on the connection from %s; closing it", conn.info.client)
    finally:
        conn._closed = True
        conn.ctx.discard(conn)
        try:
            await conn._close()
        finally:
            if conn._set_receiver is not None:
                # The transport holds the receiver, a method of the
                # connection: a reference cycle, collected only by a full
                # collection (RSS grew by MiBs over 100k requests).
                conn._set_receiver(None)
