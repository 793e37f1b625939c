"""An HTTP/1.1 WebSocket whose application reads the socket itself.

On trio (cleartext), once a message has been handed to a waiting
``receive()``, the read loop lends the socket to the application's task:
its next ``receive()`` reads and routes the next message itself, one task
switch per message instead of two (``Connection._lend``). These tests hold
that path to everything the read loop guarantees -- pings answered, a
Close answered while the application only sends, a shutdown heard at
once, a cancelled ``receive()`` losing nothing, messages that arrive
together kept in order -- and check that the path is taken where it
exists (trio, cleartext HTTP/1.1) and nowhere else. They run on every
backend: the behaviour is the same everywhere.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from tricorn.asgi.types import ASGIReceive, ASGISend, Message, Scope
from tricorn.server.connection import Connection
from tricorn.server.streams import Stream

from ..conftest import TLSFiles, pure_core_only, running_server
from .test_websocket_limits import GOING_AWAY, TEXT, answer_pings, frame, stoppable_server
from .wsclient import Closed, WSClient, ws_connect

pytestmark = pytest.mark.anyio


class App:
    """A route per behaviour; records how each call ended."""

    def __init__(self) -> None:
        self.codes: list[int] = []  # websocket.disconnect codes
        self.disconnected = anyio.Event()
        self.disconnected_at = 0.0
        self.cancelled_receives = 0  # /impatient
        self.push_ended: BaseException | str | None = None  # /push

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await getattr(self, "route_" + scope["path"].strip("/"))(receive, send)

    def _ended(self, message: Message) -> None:
        self.codes.append(message["code"])
        self.disconnected_at = time.monotonic()
        self.disconnected.set()

    async def route_echo(self, receive: ASGIReceive, send: ASGISend) -> None:
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message["text"]})
        self._ended(message)

    async def route_away(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Echo one message, then stay out of receive() for 3 s."""
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await anyio.sleep(3)
        await self.route_echo(receive, send)

    async def route_push(self, receive: ASGIReceive, send: ASGISend) -> None:
        """After one message, send a tick every 20 ms, never reading."""
        await receive()
        try:
            with anyio.move_on_after(5):
                while True:
                    await send({"type": "websocket.send", "text": "tick"})
                    await anyio.sleep(0.02)
            self.push_ended = "still sending after 5 s"
        except OSError as exc:  # ClientDisconnected
            self.push_ended = exc
        self.disconnected.set()

    async def route_pause(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Echo 3 messages, stay away for 0.5 s, then echo the rest."""
        for _ in range(3):
            message = await receive()
            await send({"type": "websocket.send", "text": message["text"]})
        await anyio.sleep(0.5)
        await self.route_echo(receive, send)

    async def route_impatient(self, receive: ASGIReceive, send: ASGISend) -> None:
        """receive() under a 10 ms timeout, again and again."""
        while True:
            message = None
            with anyio.move_on_after(0.01):
                message = await receive()
            if message is None:
                self.cancelled_receives += 1
                continue
            if message["type"] == "websocket.disconnect":
                self._ended(message)
                return
            await send({"type": "websocket.send", "text": message["text"]})


async def warm_up(ws: WSClient, count: int = 3) -> None:
    """Echo a few messages: from the first on the socket is lent."""
    for number in range(count):
        await ws.send(f"warm-up {number}")
        assert await ws.receive() == f"warm-up {number}"


async def wait_for_pong(ws: WSClient, payload: bytes, timeout: float) -> float:
    """Seconds until the pong for ``payload`` arrived."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while payload not in ws.pongs:
            await ws._read()
    return time.monotonic() - start


@pure_core_only  # (a spy on the class)
@pytest.mark.parametrize("tls", [False, True], ids=["h1", "h1-tls"])
async def test_the_app_reads_the_socket_itself_on_trio_only(
    anyio_backend_name: str, tls: bool, tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first message, trio's cleartext connection lets the app's
    receive() read: the read loop stays asleep. asyncio routes messages
    in the transport's callback instead, and trio's TLS stream is not
    lent (a cancelled TLS read could lose decrypted bytes)."""
    reads: list[int] = []
    read_for = Connection.read_for
    wake_ups: list[int] = []  # the control task's (it checks for a stuck write each time)
    write_stuck = Connection._write_stuck

    async def spy(self: Connection, stream: Any) -> Any:
        reads.append(1)
        return await read_for(self, stream)

    def count(self: Connection, now: float) -> bool:
        wake_ups.append(1)
        return write_stuck(self, now)

    monkeypatch.setattr(Connection, "read_for", spy)
    monkeypatch.setattr(Connection, "_write_stuck", count)
    app = App()
    settings = {"certfile": tls_files.certfile, "keyfile": tls_files.keyfile} if tls else {}
    context = None
    if tls:
        context = tls_files.client_context
    with anyio.fail_after(10):
        async with (
            running_server(app, **settings) as url,
            ws_connect(url, "/echo", ssl_context=context) as ws,
        ):
            for number in range(20):
                await ws.send(f"message {number}")
                assert await ws.receive() == f"message {number}"
                await anyio.sleep(0.06)  # the app waits (reads) meanwhile
            # Nor is the control task woken per message: it looks at the
            # lent socket once a second while messages come.
            assert len(wake_ups) <= 4, len(wake_ups)
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
            await app.disconnected.wait()
    assert app.codes == [1000]
    if anyio_backend_name == "trio" and not tls:
        assert len(reads) >= 19  # every message after the first
    else:
        assert reads == []


async def test_a_ping_is_answered_while_the_app_waits_in_receive() -> None:
    app = App()
    with anyio.fail_after(10):
        async with running_server(app) as url, ws_connect(url, "/echo") as ws:
            await warm_up(ws)
            await anyio.sleep(0.05)  # the app waits in receive() (on trio: reading)
            await ws.ping(b"are you there")
            assert await wait_for_pong(ws, b"are you there", 2) < 1.0
            await warm_up(ws)  # and messages go on
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)


async def test_a_ping_is_answered_while_the_app_stays_away() -> None:
    """The app takes a message and then stays out of receive() for 3 s:
    the read loop takes the socket back within about a second (not when
    the app comes back) and answers the ping."""
    app = App()
    with anyio.fail_after(10):
        async with running_server(app) as url, ws_connect(url, "/away") as ws:
            await ws.send("one")
            assert await ws.receive() == "one"
            await ws.ping(b"still there")
            assert await wait_for_pong(ws, b"still there", 2.8) < 2.2
            await ws.send("two")  # read after the app's sleep
            assert await ws.receive(timeout=5) == "two"


async def test_a_close_is_answered_while_the_app_only_sends() -> None:
    """An app that sends without reading does not keep the socket: the
    read loop takes it back at its second message, reads the client's
    Close and answers it (keep_alive_timeout, the timer's bound, is long
    here), and the app's sends fail from then."""
    app = App()
    with anyio.fail_after(10):
        async with (
            running_server(app, keep_alive_timeout=30) as url,
            ws_connect(url, "/push") as ws,
        ):
            await ws.send("start")
            for _ in range(3):
                assert await ws.receive() == "tick"
            start = time.monotonic()
            await ws.close(1000)
            assert await ws.wait_closed(timeout=3) == Closed(1000)
            assert time.monotonic() - start < 1.0
            await app.disconnected.wait()
    assert isinstance(app.push_ended, OSError), app.push_ended


async def test_shutdown_reaches_an_app_that_waits_in_receive_at_once() -> None:
    """Graceful shutdown tells the app (websocket.disconnect 1001) at once,
    though its receive() is reading the socket and the client never
    answers the Close: the read is interrupted, not left to the close
    timeout."""
    app = App()
    settings = {"graceful_timeout": 5.0, "websocket_close_timeout": 3.0}
    with anyio.fail_after(10):
        async with (
            stoppable_server(app, **settings) as (url, stop, finished),
            ws_connect(url, "/echo") as ws,
        ):
            await warm_up(ws)
            await anyio.sleep(0.05)  # the app waits in receive()
            start = time.monotonic()
            stop.set()
            await app.disconnected.wait()
            assert app.codes == [GOING_AWAY]
            assert app.disconnected_at - start < 1.0
            assert (await ws.wait_closed()).code == GOING_AWAY
            await ws.close(GOING_AWAY)
            with anyio.fail_after(3):
                await finished.wait()


async def test_a_cancelled_receive_loses_nothing() -> None:
    """receive() cancelled again and again (a timeout around it) while it
    reads the socket: every message still arrives, once and in order."""
    app = App()
    with anyio.fail_after(10):
        async with running_server(app) as url, ws_connect(url, "/impatient") as ws:
            for number in range(10):
                await anyio.sleep(0.03)  # past the app's timeout
                await ws.send(f"slow {number}")
                assert await ws.receive() == f"slow {number}"
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
            await app.disconnected.wait()
    assert app.cancelled_receives >= 10
    assert app.codes == [1000]


async def test_messages_that_arrive_together_keep_their_order() -> None:
    """Several messages, a ping and a message split across two writes,
    each arriving while the app reads: all routed, in order."""
    app = App()
    with anyio.fail_after(10):
        async with running_server(app) as url, ws_connect(url, "/echo") as ws:
            await warm_up(ws)
            batch = b"".join(frame(TEXT, f"batch {n}".encode()) for n in range(5))
            await ws.send_raw(batch + frame(0x9, b"mid") + frame(TEXT, b"after the ping"))
            for number in range(5):
                assert await ws.receive() == f"batch {number}"
            assert await ws.receive() == "after the ping"
            assert await wait_for_pong(ws, b"mid", 2) < 1.0
            split = frame(TEXT, b"in two parts")
            await ws.send_raw(split[:5])
            await anyio.sleep(0.05)
            await ws.send_raw(split[5:])
            assert await ws.receive() == "in two parts"
            await warm_up(ws)
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)


@pure_core_only  # (a spy on the class)
async def test_a_flood_while_the_app_is_away_stays_bounded_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app holds the socket and stays away while the client sends 200
    messages of 16 KiB: the server stops reading past max_app_queue_size
    messages (and what one read brought), and once the app reads again
    every message arrives, in order."""
    app = App()
    longest = [0]
    feed = Stream.feed

    def spy(self: Stream, event: Any) -> None:
        feed(self, event)
        longest[0] = max(longest[0], len(self._events))

    monkeypatch.setattr(Stream, "feed", spy)
    payload = "x" * 16384
    with anyio.fail_after(20):
        async with (
            running_server(app, max_app_queue_size=4) as url,
            ws_connect(url, "/pause") as ws,
        ):
            await warm_up(ws)  # the app's three echoes: it goes away now

            async def flood() -> None:
                for number in range(200):
                    await ws.send_raw(frame(TEXT, f"{number} {payload}".encode()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                for number in range(200):
                    assert await ws.receive() == f"{number} {payload}"
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
    # 4, and the messages of one read (256 KiB on asyncio): never the 200
    assert longest[0] <= 4 + 17


async def test_server_pings_are_answered_through_the_apps_read() -> None:
    """Server pings every 0.2 s while the app waits in receive() (on trio
    reading the socket): the client's pongs reach the connection (no ping
    timeout), and messages go on between them."""
    app = App()
    settings = {"websocket_ping_interval": 0.2, "websocket_ping_timeout": 0.3}
    with anyio.fail_after(10):
        async with running_server(app, **settings) as url, ws_connect(url, "/echo") as ws:
            for _ in range(3):
                await warm_up(ws)
                await answer_pings(ws, 0.7)
                assert ws.close_code is None
                assert not ws.ended
            assert len(ws.pings) >= 6, ws.pings
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
            await app.disconnected.wait()
    assert app.codes == [1000]
