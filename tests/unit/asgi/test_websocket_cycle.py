"""WebSocketCycle against a recording port: the ASGI websocket messages
(spec 2.4), the state table and the app-error policy."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from tricorn.asgi.websocket import State, WebSocketCycle
from tricorn.errors import AppProtocolError, ClientDisconnected
from tricorn.protocol.events import (
    Body,
    Data,
    EndBody,
    EndData,
    Event,
    Headers,
    ResetStream,
    Response,
    StreamClosed,
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
)

from .fields import FixedFields

pytestmark = pytest.mark.anyio

SERVER = (b"server", b"tricorn")
DATE = (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")
DEFAULTS: Headers = [SERVER, DATE]
ACCEPT: dict[str, Any] = {"type": "websocket.accept"}
CLOSE: dict[str, Any] = {"type": "websocket.close"}


class FakePort:
    """A StreamPort that feeds ``inbound`` and records what the cycle sends."""

    stream_id = 1

    def __init__(self, inbound: list[Event] | None = None, *, broken: bool = False) -> None:
        self.inbound = list(inbound or [])
        self.sent: list[Event] = []
        self.writes: list[tuple[Event, ...]] = []
        self.receives = 0
        self.finished = 0
        self.broken = broken

    async def receive(self) -> Event:
        self.receives += 1
        if self.inbound:
            return self.inbound.pop(0)
        return StreamClosed(1)

    async def send(self, *events: Event) -> None:
        if self.broken:
            raise ClientDisconnected
        self.writes.append(events)
        self.sent.extend(events)

    async def send_file(self, path: str) -> int:
        raise AssertionError("a WebSocket never sends a file")

    def finish(self) -> None:
        self.finished += 1


def cycle_for(app: Any, port: FakePort, http_version: str = "1.1") -> WebSocketCycle:
    scope = {"type": "websocket", "path": "/ws", "http_version": http_version}
    return WebSocketCycle(app, scope, port, FixedFields(*DEFAULTS))


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not be called")


async def connected(port: FakePort, http_version: str = "1.1") -> WebSocketCycle:
    """A cycle whose app has received connect and accepted."""
    cycle = cycle_for(never_called, port, http_version)
    assert await cycle.receive() == {"type": "websocket.connect"}
    await cycle.send(ACCEPT)
    port.sent.clear()
    port.writes.clear()
    return cycle


def script(*messages: dict[str, Any]) -> Any:
    """An app that sends ``messages`` in order, then returns."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    return app


def state_of(cycle: WebSocketCycle) -> State:
    """``cycle.state``, unnarrowed (mypy keeps an asserted state otherwise)."""
    return cycle.state


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tricorn.error" and r.levelno >= logging.ERROR]


def error_response(status: int, body: bytes) -> list[Event]:
    headers: Headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        *DEFAULTS,
    ]
    return [Response(1, status, headers), Data(1, body), EndData(1)]


# ---------------------------------------------------------------- handshake


async def test_first_receive_is_connect_without_reading_the_port() -> None:
    port = FakePort([WebSocketMessage(1, "early")])
    cycle = cycle_for(never_called, port)
    assert await cycle.receive() == {"type": "websocket.connect"}
    assert port.receives == 0
    assert await cycle.receive() == {"type": "websocket.receive", "text": "early"}


async def test_accept_carries_subprotocol_headers_and_defaults() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.receive()
    await cycle.send({**ACCEPT, "subprotocol": "chat", "headers": [(b"X-Custom", b"1")]})
    headers = [(b"x-custom", b"1"), *DEFAULTS]
    assert port.writes == [(WebSocketAccept(1, "chat", headers),)]
    assert cycle.state is State.CONNECTED
    assert cycle.status == 101
    assert cycle.response_headers == headers
    assert port.finished == 0


async def test_accept_without_subprotocol_or_headers() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.send(ACCEPT)
    assert port.sent == [WebSocketAccept(1, None, DEFAULTS)]


async def test_app_headers_win_over_defaults() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.send({**ACCEPT, "headers": [[b"server", b"mine"]]})
    assert port.sent == [WebSocketAccept(1, None, [(b"server", b"mine"), DATE])]


@pytest.mark.parametrize(("http_version", "status"), [("1.1", 101), ("2", 200), ("3", 200)])
async def test_accept_status_follows_http_version(http_version: str, status: int) -> None:
    cycle = await connected(FakePort(), http_version)
    assert cycle.status == status


@pytest.mark.parametrize(
    "message",
    [
        {**ACCEPT, "subprotocol": b"chat"},
        {**ACCEPT, "headers": [("x", "y")]},
        {**ACCEPT, "headers": [(b"only-one",)]},
    ],
)
async def test_malformed_accept(message: dict[str, Any]) -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    with pytest.raises(AppProtocolError):
        await cycle.send(message)
    assert port.sent == []
    assert cycle.state is State.HANDSHAKE


# ---------------------------------------------------------------- receive


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("hé", {"type": "websocket.receive", "text": "hé"}),
        ("", {"type": "websocket.receive", "text": ""}),
        (b"\x00\xff", {"type": "websocket.receive", "bytes": b"\x00\xff"}),
        (b"", {"type": "websocket.receive", "bytes": b""}),
    ],
)
async def test_receive_message(data: bytes | str, message: dict[str, Any]) -> None:
    port = FakePort([WebSocketMessage(1, data)])
    cycle = await connected(port)
    assert await cycle.receive() == message  # exactly one of text and bytes


async def test_peer_close_is_disconnect_with_code_and_reason() -> None:
    port = FakePort([WebSocketClose(1, 4000, "bye")])
    cycle = await connected(port)
    assert await cycle.receive() == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}
    assert cycle.state is State.CLOSED
    assert port.finished == 1


async def test_stream_closed_is_disconnect_1006() -> None:
    port = FakePort([StreamClosed(1, 5)])
    cycle = await connected(port)
    assert await cycle.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert cycle.state is State.CLOSED


async def test_disconnect_is_sticky() -> None:
    port = FakePort([WebSocketClose(1, 1001, "away"), WebSocketMessage(1, "late")])
    cycle = await connected(port)
    first = await cycle.receive()
    reads = port.receives
    assert await cycle.receive() == first
    assert await cycle.receive() == first
    assert port.receives == reads
    assert port.inbound == [WebSocketMessage(1, "late")]
    assert port.finished == 1


async def test_request_body_events_are_skipped() -> None:
    port = FakePort([Body(1, b""), EndBody(1), WebSocketMessage(1, b"m")])
    cycle = cycle_for(never_called, port)
    await cycle.receive()
    assert await cycle.receive() == {"type": "websocket.receive", "bytes": b"m"}
    assert port.inbound == []


# ---------------------------------------------------------------- send


@pytest.mark.parametrize(
    ("message", "payload"),
    [
        ({"text": "hé"}, "hé"),
        ({"text": ""}, ""),
        ({"bytes": b"ab"}, b"ab"),
        ({"bytes": bytearray(b"ab")}, b"ab"),
        ({"bytes": memoryview(b"ab")}, b"ab"),
        ({"bytes": b"ab", "text": None}, b"ab"),
        ({"bytes": None, "text": "t"}, "t"),
    ],
)
async def test_send(message: dict[str, Any], payload: bytes | str) -> None:
    port = FakePort()
    cycle = await connected(port)
    await cycle.send({"type": "websocket.send", **message})
    assert port.sent == [WebSocketMessage(1, payload)]
    sent = port.sent[0]
    assert isinstance(sent, WebSocketMessage)
    assert type(sent.data) is type(payload)  # bytearray and memoryview become bytes


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"bytes": None, "text": None},
        {"bytes": b"x", "text": "x"},
        {"bytes": b"", "text": ""},
        {"text": b"x"},
        {"text": 1},
        {"bytes": "x"},
        {"bytes": 1},
        {"bytes": [1, 2]},
    ],
)
async def test_malformed_send(message: dict[str, Any]) -> None:
    port = FakePort()
    cycle = await connected(port)
    with pytest.raises(AppProtocolError):
        await cycle.send({"type": "websocket.send", **message})
    assert port.sent == []
    assert cycle.state is State.CONNECTED
    assert cycle.sent_bytes == 0


# ---------------------------------------------------------------- close


@pytest.mark.parametrize(
    ("message", "event"),
    [
        ({"code": 4001, "reason": "done"}, WebSocketClose(1, 4001, "done")),
        ({}, WebSocketClose(1, 1000, "")),
        ({"code": 1001, "reason": None}, WebSocketClose(1, 1001, "")),
        ({"code": 4999}, WebSocketClose(1, 4999, "")),
    ],
)
async def test_close_after_accept(message: dict[str, Any], event: WebSocketClose) -> None:
    port = FakePort()
    cycle = await connected(port)
    await cycle.send({**CLOSE, **message})
    assert port.sent == [event]
    assert cycle.state is State.CLOSED
    assert port.finished == 1
    assert (await cycle.receive())["type"] == "websocket.disconnect"
    assert port.receives == 0


@pytest.mark.parametrize(
    "message",
    [
        {"code": 999},
        {"code": 5000},
        {"code": "1000"},
        {"code": 1000.0},
        {"code": True},
        {"code": None},
        {"reason": b"bytes"},
    ],
)
async def test_malformed_close(message: dict[str, Any]) -> None:
    port = FakePort()
    cycle = await connected(port)
    with pytest.raises(AppProtocolError):
        await cycle.send({**CLOSE, **message})
    assert port.sent == []
    assert cycle.state is State.CONNECTED


async def test_close_before_accept_is_403() -> None:
    port = FakePort()
    cycle = cycle_for(script(CLOSE), port)
    await cycle.run()
    assert port.sent == [Response(1, 403, [(b"content-length", b"0"), *DEFAULTS]), EndData(1)]
    assert cycle.status == 403
    assert cycle.state is State.CLOSED
    assert port.finished == 1


# ---------------------------------------------------------------- denial


async def test_denial_response_streams_its_body() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.receive()
    await cycle.send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"WWW-Authenticate", b"Basic")],
        }
    )
    assert port.sent == []  # the head waits for the first body
    assert state_of(cycle) is State.RESPONSE
    head = Response(1, 401, [(b"www-authenticate", b"Basic"), *DEFAULTS])
    body = {"type": "websocket.http.response.body"}
    await cycle.send({**body, "body": b"no", "more_body": True})
    assert port.writes == [(head, Data(1, b"no"))]
    await cycle.send({**body, "body": bytearray(b"pe"), "more_body": True})
    await cycle.send({**body, "body": b"!"})
    assert port.sent == [head, Data(1, b"no"), Data(1, b"pe"), Data(1, b"!"), EndData(1)]
    assert cycle.status == 401
    assert cycle.response_headers == head.headers
    assert cycle.sent_bytes == 5
    assert cycle.state is State.CLOSED
    assert port.finished == 1


async def test_denial_with_an_empty_body() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.send({"type": "websocket.http.response.start", "status": 404})
    await cycle.send({"type": "websocket.http.response.body", "more_body": True})
    assert port.sent == [Response(1, 404, list(DEFAULTS))]  # the first body flushes the head
    await cycle.send({"type": "websocket.http.response.body"})
    assert port.sent == [Response(1, 404, list(DEFAULTS)), EndData(1)]
    assert cycle.state is State.CLOSED


@pytest.mark.parametrize("status", [101, 100, 199, 99, 600, "401", None, 401.0])
async def test_denial_status_must_be_a_final_status(status: object) -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    with pytest.raises(AppProtocolError):
        await cycle.send({"type": "websocket.http.response.start", "status": status})
    assert cycle.state is State.HANDSHAKE
    assert port.sent == []


async def test_denial_body_before_start() -> None:
    cycle = cycle_for(never_called, FakePort())
    with pytest.raises(AppProtocolError):
        await cycle.send({"type": "websocket.http.response.body", "body": b"x"})


async def test_denial_body_must_be_bytes() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.send({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError):
        await cycle.send({"type": "websocket.http.response.body", "body": "text"})
    assert port.sent == []


# ---------------------------------------------------------------- the state table


@pytest.mark.parametrize(
    ("before", "message"),
    [
        ([], {"type": "websocket.send", "text": "x"}),
        ([], {"type": "websocket.receive", "text": "x"}),
        ([], {"type": "http.response.start", "status": 200}),
        ([], {"type": "no.such.type"}),
        ([], {"no": "type"}),
        ([ACCEPT], ACCEPT),
        ([ACCEPT], {"type": "websocket.http.response.start", "status": 403}),
        ([ACCEPT], {"type": "websocket.http.response.body", "body": b""}),
        ([{"type": "websocket.http.response.start", "status": 403}], ACCEPT),
        ([{"type": "websocket.http.response.start", "status": 403}], CLOSE),
        (
            [{"type": "websocket.http.response.start", "status": 403}],
            {"type": "websocket.send", "text": "x"},
        ),
        (
            [{"type": "websocket.http.response.start", "status": 403}],
            {"type": "websocket.http.response.start", "status": 403},
        ),
    ],
)
async def test_message_not_allowed_in_state(
    before: list[dict[str, Any]], message: dict[str, Any]
) -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    for earlier in before:
        await cycle.send(earlier)
    state, sent = cycle.state, list(port.sent)
    with pytest.raises(AppProtocolError):
        await cycle.send(message)
    assert cycle.state is state
    assert port.sent == sent


# ---------------------------------------------------------------- after the end


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "x"},
        {"type": "websocket.send", "bytes": b"x"},
        CLOSE,
        ACCEPT,
        {"type": "websocket.http.response.start", "status": 403},
    ],
)
async def test_send_after_peer_closed_raises_client_disconnected(message: dict[str, Any]) -> None:
    port = FakePort([WebSocketClose(1, 1000, "")])
    cycle = await connected(port)
    assert (await cycle.receive())["type"] == "websocket.disconnect"
    with pytest.raises(OSError, match="closed") as info:
        await cycle.send(message)
    assert info.type is ClientDisconnected
    assert port.sent == []


async def test_send_after_app_closed_raises_client_disconnected() -> None:
    port = FakePort()
    cycle = await connected(port)
    await cycle.send(CLOSE)
    with pytest.raises(ClientDisconnected):
        await cycle.send({"type": "websocket.send", "text": "x"})
    with pytest.raises(ClientDisconnected):
        await cycle.send(CLOSE)
    assert port.sent == [WebSocketClose(1, 1000, "")]


async def test_send_after_denial_raises_client_disconnected() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.send({"type": "websocket.http.response.start", "status": 403})
    await cycle.send({"type": "websocket.http.response.body"})
    with pytest.raises(ClientDisconnected):
        await cycle.send({"type": "websocket.http.response.body"})


async def test_port_disconnect_on_send_closes_the_cycle() -> None:
    port = FakePort([WebSocketMessage(1, "unread")])
    cycle = await connected(port)
    port.broken = True
    with pytest.raises(ClientDisconnected):
        await cycle.send({"type": "websocket.send", "text": "x"})
    assert cycle.state is State.CLOSED
    assert port.finished == 1
    assert await cycle.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert port.receives == 0
    assert cycle.sent_bytes == 0
    with pytest.raises(ClientDisconnected):
        await cycle.send(CLOSE)


async def test_port_disconnect_on_accept_closes_the_cycle() -> None:
    port = FakePort(broken=True)
    cycle = cycle_for(never_called, port)
    await cycle.receive()
    with pytest.raises(ClientDisconnected):
        await cycle.send(ACCEPT)
    assert cycle.state is State.CLOSED
    assert await cycle.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


# ---------------------------------------------------------------- run() policy


async def test_app_raising_before_accept_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("boom")

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == error_response(500, b"Internal Server Error")
    assert cycle.status == 500
    assert cycle.state is State.CLOSED
    records = error_records(caplog)
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


async def test_bad_message_before_accept_is_500(caplog: pytest.LogCaptureFixture) -> None:
    port = FakePort()
    cycle = cycle_for(script({"type": "websocket.send", "text": "x"}), port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == error_response(500, b"Internal Server Error")
    records = error_records(caplog)
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], AppProtocolError)


async def test_app_raising_after_accept_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.send", "text": "hi"})
        raise RuntimeError("boom")

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent[1:] == [WebSocketMessage(1, "hi"), WebSocketClose(1, 1011, "")]
    assert cycle.status == 101
    assert cycle.state is State.CLOSED
    records = error_records(caplog)
    assert len(records) == 1
    assert records[0].exc_info is not None


async def test_app_returning_after_accept_closes_1000(caplog: pytest.LogCaptureFixture) -> None:
    port = FakePort()
    cycle = cycle_for(script(ACCEPT), port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == [WebSocketAccept(1, None, DEFAULTS), WebSocketClose(1, 1000, "")]
    assert cycle.state is State.CLOSED
    assert error_records(caplog) == []


async def test_app_returning_after_close_sends_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = FakePort()
    cycle = cycle_for(script(ACCEPT, {**CLOSE, "code": 4000}), port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == [WebSocketAccept(1, None, DEFAULTS), WebSocketClose(1, 4000, "")]
    assert error_records(caplog) == []


async def test_app_returning_without_answer_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == error_response(500, b"Internal Server Error")
    assert len(error_records(caplog)) == 1


async def test_app_returning_a_value_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> int:
        await send(ACCEPT)
        return 42

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    records = error_records(caplog)
    assert len(records) == 1
    assert "42" in caplog.text
    assert port.sent[-1] == WebSocketClose(1, 1011, "")


async def test_app_raising_client_disconnected_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(ACCEPT)
        assert (await receive())["type"] == "websocket.disconnect"
        await send({"type": "websocket.send", "text": "too late"})

    port = FakePort([WebSocketClose(1, 1001, "")])
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == [WebSocketAccept(1, None, DEFAULTS)]
    assert error_records(caplog) == []


async def test_app_raising_mid_denial_resets_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.http.response.start", "status": 403})
        await send({"type": "websocket.http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("boom")

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == [Response(1, 403, list(DEFAULTS)), Data(1, b"x"), ResetStream(1)]
    assert cycle.state is State.CLOSED
    assert len(error_records(caplog)) == 1


async def test_app_raising_with_the_denial_head_held_is_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.http.response.start", "status": 403})
        raise RuntimeError("boom")

    port = FakePort()
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert port.sent == error_response(500, b"Internal Server Error")
    assert cycle.status == 500
    assert len(error_records(caplog)) == 1


async def test_denial_head_refused_by_the_protocol_is_500() -> None:
    class RefusingPort(FakePort):
        async def send(self, *events: Event) -> None:
            if any(isinstance(e, Response) and e.status == 401 for e in events):
                raise AppProtocolError("the protocol refuses this head")
            await super().send(*events)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.http.response.start", "status": 401})
        await send({"type": "websocket.http.response.body", "body": b"x"})

    port = RefusingPort()
    cycle = cycle_for(app, port)
    await cycle.run()
    assert port.sent == error_response(500, b"Internal Server Error")  # the head never went out


async def test_run_survives_a_broken_port(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    port = FakePort(broken=True)
    cycle = cycle_for(app, port)
    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        await cycle.run()
    assert cycle.state is State.CLOSED
    assert len(error_records(caplog)) == 1


async def test_cancellation_propagates() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(ACCEPT)
        await anyio.sleep_forever()

    port = FakePort()
    with anyio.move_on_after(0.05) as scope:
        await cycle_for(app, port).run()
    assert scope.cancelled_caught
    assert port.sent == [WebSocketAccept(1, None, DEFAULTS)]


# ---------------------------------------------------------------- refuse


async def test_refuse_is_404_without_calling_the_app() -> None:
    port = FakePort()
    cycle = cycle_for(never_called, port)
    await cycle.refuse()
    assert port.sent == error_response(404, b"Not Found")
    assert cycle.status == 404
    assert cycle.state is State.CLOSED
    assert port.finished == 1


async def test_refuse_on_a_broken_port_does_not_raise() -> None:
    port = FakePort(broken=True)
    cycle = cycle_for(never_called, port)
    await cycle.refuse()
    assert cycle.state is State.CLOSED


# ---------------------------------------------------------------- access log


async def test_access_log_fields_after_a_run() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**ACCEPT, "headers": [(b"x-a", b"1")]})
        await send({"type": "websocket.send", "text": "abc"})
        await send({"type": "websocket.send", "bytes": b"de"})
        await send({"type": "websocket.send", "bytes": bytearray(b"fghi")})
        await send(CLOSE)

    port = FakePort()
    cycle = cycle_for(app, port, "2")
    await cycle.run()
    assert cycle.status == 200
    assert cycle.response_headers == [(b"x-a", b"1"), *DEFAULTS]
    assert cycle.sent_bytes == 3 + 2 + 4
