"""The accept loop's adoption of a connection (server/listeners.py)."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from tricorn.server.listeners import Listener

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
async def test_a_connection_gone_before_it_is_adopted_is_dropped(unix: bool) -> None:
    """A peer that resets its connection between accept() and adoption:
    anyio refuses the socket (its peer is asked for: ENOTCONN). The
    listener closes it and counts it as started; raised on, the error
    ended the worker (HAProxy's health checks, which connect and reset,
    did it)."""
    started: list[int] = []
    ctx: Any = SimpleNamespace(started=lambda: started.append(1))
    family = socket.AF_UNIX if unix else socket.AF_INET
    with socket.socket(family) as listening:
        listener = Listener(ctx, listening, None)
        client = socket.socket(family)  # never connected: as a reset one looks to anyio
        await listener._adopt(client, unix)
    assert client.fileno() == -1
    assert started == [1]
