"""HTTPCycle against a recording port: the message state machine and the
app-error policy, one case each."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from tricorn.asgi.http import HTTPCycle, State
from tricorn.errors import ClientDisconnected
from tricorn.protocol.events import (
    Body,
    Data,
    EndBody,
    EndData,
    Event,
    InformationalResponse,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
)

from .fields import FixedFields

pytestmark = pytest.mark.anyio


class RecordingPort:
    """A StreamPort that records what the cycle sends."""

    stream_id = 1

    def __init__(self, inbound: list[Event] | None = None, *, broken: bool = False) -> None:
        self.inbound = list(inbound or [EndBody(1)])
        self.sent: list[Event] = []
        self.writes = 0
        self.finished = False
        self.broken = broken

    async def receive(self) -> Event:
        if self.inbound:
            return self.inbound.pop(0)
        return StreamClosed(1)

    async def send(self, *events: Event) -> None:
        if self.broken:
            raise ClientDisconnected
        self.writes += 1
        self.sent.extend(events)

    async def send_file(self, path: str) -> int:
        with open(path, "rb") as file:
            data = file.read()
        await self.send(Data(1, data))
        return len(data)

    def finish(self) -> None:
        self.finished = True


def cycle_for(app: Any, port: RecordingPort) -> HTTPCycle:
    scope = {"type": "http", "method": "GET", "path": "/"}
    return HTTPCycle(app, scope, port, FixedFields((b"server", b"tricorn")))


def start(status: int = 200, **extra: Any) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": [], **extra}


async def test_small_response_is_one_write_with_default_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(headers=[(b"Content-Type", b"text/plain")]))
        await send({"type": "http.response.body", "body": b"hi"})

    port = RecordingPort()
    cycle = cycle_for(app, port)
    await cycle.run()
    assert port.writes == 1
    assert port.sent == [  # the head, the body and the end in one event
        Response(1, 200, [(b"content-type", b"text/plain"), (b"server", b"tricorn")], b"hi", True),
    ]
    assert cycle.state is State.DONE
    assert port.finished
    assert cycle.sent_bytes == 2


async def test_app_server_header_wins() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start(headers=[(b"server", b"mine")]))
        await send({"type": "http.response.body"})

    port = RecordingPort()
    await cycle_for(app, port).run()
    assert port.sent[0] == Response(1, 200, [(b"server", b"mine")], b"", True)


async def test_receive_body_then_disconnect() -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(3):
            received.append(await receive())

    port = RecordingPort([Body(1, b"a"), EndBody(1), StreamClosed(1)])
    await cycle_for(app, port).run()
    assert received == [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_trailers_and_early_hints() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</a>; rel=preload"]})
        await send(start(trailers=True))
        await send({"type": "http.response.body", "body": b"x"})
        await send(
            {"type": "http.response.trailers", "headers": [(b"a", b"1")], "more_trailers": True}
        )
        await send({"type": "http.response.trailers", "headers": [(b"b", b"2")]})

    port = RecordingPort()
    await cycle_for(app, port).run()
    assert port.sent == [
        InformationalResponse(1, 103, [(b"link", b"</a>; rel=preload")]),
        Response(1, 200, [(b"server", b"tricorn")], b"x"),  # (not the end: trailers follow)
        Trailers(1, [(b"a", b"1"), (b"b", b"2")]),
    ]


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.body", "body": b"x"}],
        [start(), start()],
        [start(status=99)],
        [start(status="200")],  # type: ignore[arg-type]
        [start(headers=[("str", "name")])],
        [start(headers=[(b"only-one",)])],
        [start(), {"type": "http.response.body", "body": "text"}],
        [{"type": "http.response.trailers", "headers": []}],
        [{"no": "type"}],
        [start(), {"type": "http.response.pathsend", "path": "relative"}],
    ],
)
async def test_bad_messages_before_any_bytes_give_500(
    messages: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    port = RecordingPort()
    with caplog.at_level(logging.ERROR):
        cycle = cycle_for(app, port)
        await cycle.run()
    assert isinstance(port.sent[0], Response)
    assert port.sent[0].status == 500
    assert cycle.status == 500
    assert len([r for r in caplog.records if r.exc_info]) == 1


async def test_exception_after_start_resets_the_stream() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError

    port = RecordingPort()
    await cycle_for(app, port).run()
    assert port.sent[-1] == ResetStream(1)


async def test_returning_mid_body_resets_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    port = RecordingPort()
    await cycle_for(app, port).run()
    assert port.sent[-1] == ResetStream(1)
    assert "without completing" in caplog.text


async def test_returning_a_value_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> int:
        return 42

    port = RecordingPort()
    await cycle_for(app, port).run()
    assert isinstance(port.sent[0], Response)
    assert port.sent[0].status == 500
    assert "42" in caplog.text


async def test_send_after_disconnect_raises_oserror() -> None:
    outcome: list[type[BaseException]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.disconnect"
        try:
            await send(start())
        except OSError as exc:
            outcome.append(type(exc))
            raise

    port = RecordingPort([StreamClosed(1)])
    await cycle_for(app, port).run()
    assert outcome == [ClientDisconnected]
    assert port.sent == []


async def test_broken_port_while_sending() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"x"})

    port = RecordingPort(broken=True)
    cycle = cycle_for(app, port)
    await cycle.run()
    assert cycle.disconnected


async def test_cancellation_propagates() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.05) as scope:
        await cycle_for(app, RecordingPort()).run()
    assert scope.cancelled_caught


async def test_pathsend(tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"file data")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start())
        await send({"type": "http.response.pathsend", "path": str(path)})

    port = RecordingPort()
    cycle = cycle_for(app, port)
    await cycle.run()
    assert port.sent[1:] == [Data(1, b"file data"), EndData(1)]
    assert cycle.sent_bytes == 9
