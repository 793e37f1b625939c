"""``TLSByteStream`` (tricorn.server.transport) against a sans-IO TLS
client over an in-memory transport: the handshake, records in pieces,
the ways a connection ends, and the path where records arrive in the
transport's callback (``set_receiver``) and are decrypted there."""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Callable

import anyio
import pytest
import trustme
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from tricorn.server.transport import TLSByteStream, start_tls

pytestmark = pytest.mark.anyio


class Transport(ByteStream):
    """An in-memory transport: the test ``deliver``s the client's bytes,
    the server's are kept in ``sent``."""

    def __init__(self) -> None:
        self.inbox: deque[bytes] = deque()
        self.sent: list[bytes] = []
        self.eof = False
        self.waiting = False
        self._wake = anyio.Event()

    def deliver(self, data: bytes) -> None:
        self.inbox.append(data)
        self._wake.set()

    def close_input(self) -> None:
        self.eof = True
        self._wake.set()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self.inbox:
            if self.eof:
                raise anyio.EndOfStream
            self._wake = anyio.Event()
            self.waiting = True
            try:
                await self._wake.wait()
            finally:
                self.waiting = False
        return self.inbox.popleft()

    async def send(self, item: bytes) -> None:
        self.sent.append(item)

    def take_sent(self) -> bytes:
        data = b"".join(self.sent)
        self.sent.clear()
        return data

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.eof = True


class CallbackTransport(Transport):
    """With the asyncio stream's hook: bytes that arrive while a receive
    waits go to the receiver first."""

    def __init__(self) -> None:
        super().__init__()
        self.receiver: Callable[[bytes], bool] | None = None

    def set_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        self.receiver = receiver

    def deliver(self, data: bytes) -> None:
        if self.receiver is not None and self.waiting and not self.inbox and self.receiver(data):
            return
        super().deliver(data)


class Client:
    """The client's side of TLS, sans-IO."""

    def __init__(self, ca: trustme.CA) -> None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def out(self) -> bytes:
        return self.outgoing.read()

    def feed(self, data: bytes) -> None:
        self.incoming.write(data)

    def read(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return data
            if not chunk:
                return data
            data += chunk


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


async def connect(
    transport: Transport, server_context: ssl.SSLContext, client: Client
) -> TLSByteStream:
    """Both sides of the handshake, pumped by hand."""
    result: list[TLSByteStream] = []

    async def server() -> None:
        result.append(await start_tls(transport, server_context, 5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        with anyio.fail_after(5):
            while True:
                try:
                    client.tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                if data := client.out():
                    Transport.deliver(transport, data)  # (the handshake: no callback path)
                await anyio.sleep(0)
                client.feed(transport.take_sent())
                if done and result:
                    break
    client.feed(transport.take_sent())
    client.read()  # (TLS 1.3 session tickets)
    return result[0]


async def test_handshake_attributes_and_data_both_ways(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client = Transport(), Client(ca)
    stream = await connect(transport, server_context, client)
    assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
    assert stream.extra(TLSAttribute.tls_version) == "TLSv1.3"
    assert isinstance(stream.extra(TLSAttribute.ssl_object), ssl.SSLObject)
    client.tls.write(b"hello")
    transport.deliver(client.out())
    assert await stream.receive() == b"hello"
    await stream.send(b"world")
    client.feed(transport.take_sent())
    assert client.read() == b"world"


async def test_a_record_in_pieces_and_a_small_max_bytes(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client = Transport(), Client(ca)
    stream = await connect(transport, server_context, client)
    client.tls.write(b"x" * 1000)
    record = client.out()
    for index in range(len(record)):
        transport.deliver(record[index : index + 1])
    assert await stream.receive(600) == b"x" * 600
    assert await stream.receive() == b"x" * 400


async def test_close_notify_and_a_bare_tcp_close_end_the_stream(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client = Transport(), Client(ca)
    stream = await connect(transport, server_context, client)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()  # (sends close_notify, waits for ours)
    transport.deliver(client.out())
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    transport, client = Transport(), Client(ca)
    stream = await connect(transport, server_context, client)
    transport.close_input()
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()


async def test_garbage_fails_the_handshake(server_context: ssl.SSLContext) -> None:
    transport = Transport()
    transport.deliver(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(anyio.BrokenResourceError):
        await start_tls(transport, server_context, 5.0)
    transport = Transport()
    transport.close_input()
    with pytest.raises(anyio.BrokenResourceError):
        await start_tls(transport, server_context, 5.0)


async def test_garbage_after_the_handshake_breaks_the_stream(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client = Transport(), Client(ca)
    stream = await connect(transport, server_context, client)
    transport.deliver(b"\x17\x03\x03\x00\x20" + bytes(32))  # a record that fails to decrypt
    with pytest.raises(anyio.BrokenResourceError):
        await stream.receive()


# ---------------------------------------------------------------- callback path


async def receive_while(stream: TLSByteStream, deliver: Callable[[], None]) -> bytes:
    """``stream.receive()`` with ``deliver`` called once it waits."""
    result: list[bytes] = []
    failed: list[Exception] = []

    async def receive() -> None:
        try:
            result.append(await stream.receive())
        except Exception as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        await anyio.sleep(0.01)
        deliver()
    if failed:
        raise failed[0]
    return result[0]


async def offering(
    ca: trustme.CA, server_context: ssl.SSLContext, *, take: bool
) -> tuple[CallbackTransport, Client, TLSByteStream, list[bytes]]:
    """A connection whose receiver records what it is offered and takes
    it (``take``) or declines it."""
    transport, client = CallbackTransport(), Client(ca)
    stream = await connect(transport, server_context, client)
    offered: list[bytes] = []

    def receiver(data: bytes) -> bool:
        offered.append(data)
        return take

    stream.set_receiver(receiver)  # type: ignore[attr-defined]
    return transport, client, stream, offered


async def all_taken(stream: TLSByteStream, deliver: Callable[[], None]) -> None:
    """``deliver`` while a ``stream.receive()`` waits, which must go on
    waiting: the receiver takes everything in the callback."""

    async def receive() -> None:
        await stream.receive()
        raise AssertionError("received")

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        await anyio.sleep(0.01)
        deliver()
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_records_taken_in_the_callback_never_reach_receive(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client, stream, taken = await offering(ca, server_context, take=True)
    client.tls.write(b"first")
    record = client.out()

    def deliver() -> None:
        transport.deliver(record[:7])  # part of a record: held by TLS
        transport.deliver(record[7:])
        client.tls.write(b"second")
        transport.deliver(client.out())

    await all_taken(stream, deliver)
    assert taken == [b"first", b"second"]


async def test_the_callback_reads_each_record_once_and_never_past_the_last(
    ca: trustme.CA, server_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read past the last record would raise SSLWantReadError: on every
    # request over TLS, a formatted error raised and caught for nothing.
    transport, client, stream, taken = await offering(ca, server_context, take=True)
    ssl_object = stream.extra(TLSAttribute.ssl_object)
    reads: list[str] = []
    read = ssl_object.read

    def counting_read(size: int = 1024, buffer: None = None) -> bytes:
        try:
            data = read(size, buffer)
        except ssl.SSLWantReadError:
            reads.append("want-read")
            raise
        reads.append("data")
        return data

    monkeypatch.setattr(ssl_object, "read", counting_read)

    def deliver() -> None:
        client.tls.write(b"first")
        transport.deliver(client.out())
        client.tls.write(b"second")
        client.tls.write(b"third")
        transport.deliver(client.out())  # two records at once: both read
        client.tls.write(b"fourth")
        record = client.out()
        transport.deliver(record[:9])  # part of a record: the one read that waits
        transport.deliver(record[9:])

    await all_taken(stream, deliver)
    assert taken == [b"first", b"secondthird", b"fourth"]
    assert reads == ["data", "data", "data", "want-read", "data"]


async def test_records_declined_in_the_callback_go_to_receive_once(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client, stream, offered = await offering(ca, server_context, take=False)
    client.tls.write(b"one")
    client.tls.write(b"two")
    both = client.out()
    assert await receive_while(stream, lambda: transport.deliver(both)) == b"onetwo"
    assert offered == [b"onetwo"]
    client.tls.write(b"three")  # arrives while nobody waits: the plain path
    transport.deliver(client.out())
    assert await stream.receive() == b"three"
    assert offered == [b"onetwo"]


async def test_an_error_in_the_callback_is_raised_by_receive(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    transport, client = CallbackTransport(), Client(ca)
    stream = await connect(transport, server_context, client)
    stream.set_receiver(lambda data: True)  # type: ignore[attr-defined]
    garbage = b"\x17\x03\x03\x00\x20" + bytes(32)
    with pytest.raises(anyio.BrokenResourceError):
        await receive_while(stream, lambda: transport.deliver(garbage))


async def test_set_receiver_only_where_the_transport_has_it(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    stream = await connect(Transport(), server_context, Client(ca))
    assert not hasattr(stream, "set_receiver")
    stream = await connect(CallbackTransport(), server_context, Client(ca))
    assert hasattr(stream, "set_receiver")
