"""``Stream.offer``: a WebSocket message handed straight to a ``receive()``
that waits, never queued, so never credited back to the adapter; and a
message offered to a receive that is being cancelled is not lost."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tricorn import _backend
from tricorn.protocol.events import Event, WebSocketMessage
from tricorn.server.streams import Stream

from ..conftest import pure_core_only

pytestmark = [pytest.mark.anyio, pure_core_only]  # (a FakeConnection)

SID = 1


class FakeConnection:
    """What a Stream asks of its connection; records the credits."""

    def __init__(self) -> None:
        make = _backend.event_class()
        self.new_event: Any = make if make is not None else anyio.Event
        self.credits: list[tuple[int, int]] = []
        self._lent = None  # (the socket is never lent here: Connection.read_for)
        self._app_reader = None

    async def send_events(self, events: tuple[Event, ...], stream: Stream) -> None:
        pass  # (ReadyForBody)

    async def body_consumed(self, stream_id: int, amount: int) -> None:
        self.credits.append((stream_id, amount))


def make_stream() -> tuple[Stream, FakeConnection]:
    connection = FakeConnection()
    return Stream(connection, SID, websocket=True), connection  # type: ignore[arg-type]


async def test_offer_to_a_waiting_receive() -> None:
    stream, connection = make_stream()
    got: list[Event] = []
    message = WebSocketMessage(SID, "hi")
    async with anyio.create_task_group() as tg:

        async def receiver() -> None:
            got.append(await stream.receive())

        tg.start_soon(receiver)
        await anyio.sleep(0.01)
        assert stream.offer(message)
        assert not stream.offer(WebSocketMessage(SID, "second"))  # one at a time
    assert got == [message]
    assert connection.credits == []  # never queued: nothing to give back


async def test_offer_without_a_waiting_receive_is_refused() -> None:
    stream, connection = make_stream()
    assert not stream.offer(WebSocketMessage(SID, "nobody waits"))
    stream.feed(WebSocketMessage(SID, "queued"))
    assert await stream.receive() == WebSocketMessage(SID, "queued")
    assert connection.credits == [(SID, 1)]


async def test_offer_behind_a_queued_event_is_refused() -> None:
    stream, _ = make_stream()
    async with anyio.create_task_group() as tg:
        got: list[Event] = []

        async def receiver() -> None:
            got.append(await stream.receive())

        tg.start_soon(receiver)
        await anyio.sleep(0.01)
        stream.feed(WebSocketMessage(SID, "first"))
        assert not stream.offer(WebSocketMessage(SID, "second"))  # it would jump the queue
    assert got == [WebSocketMessage(SID, "first")]


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-offer", "offer-cancel"])
async def test_offered_to_a_cancelled_receive_is_kept(cancel_first: bool) -> None:
    """The receive's scope is cancelled (an app's timeout around
    ``receive()``) just before or after the message is offered, before the
    task runs again: the message is not lost (the next receive gets it,
    uncredited); later messages are credited as usual."""
    stream, connection = make_stream()
    message = WebSocketMessage(SID, "raced")
    got: list[Event] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def receiver() -> None:
            with scope:
                got.append(await stream.receive())

        tg.start_soon(receiver)
        await anyio.sleep(0.01)
        if cancel_first:
            scope.cancel()
        assert stream.offer(message)  # (the receive has not run since)
        scope.cancel()
    if not got:  # cancelled: the next receive has it
        with anyio.fail_after(2):
            got.append(await stream.receive())
    assert got == [message]
    assert connection.credits == []
    stream.feed(WebSocketMessage(SID, "next"))
    assert await stream.receive() == WebSocketMessage(SID, "next")
    assert connection.credits == [(SID, 1)]
