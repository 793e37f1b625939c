"""WSGI applications (PEP 3333) served as ASGI 3 applications, on anyio only.

Theory of operation
-------------------
:class:`WSGIApp` wraps a WSGI callable. One HTTP call goes like this:

1. The request body is read whole into memory, at most ``max_body_size``
   bytes. A declared ``content-length`` over the limit is answered ``413``
   at once: the app is not called and the body is not read (HTTP/1.1 then
   closes the connection after the answer). A body that grows past the
   limit (chunked, or HTTP/2 and HTTP/3 without a length) is a ``413`` too.
2. :func:`build_environ` turns the scope and the body into the environ.
3. The app runs in a worker thread (``anyio.to_thread.run_sync``) under a
   :class:`anyio.CapacityLimiter` of ``max_threads`` tokens, so requests past
   the bound wait in the event loop, not in threads. The thread is never
   abandoned: a cancelled call waits for it, so nothing outlives its
   connection.
4. The thread iterates the app's response. Each chunk goes back to the event
   loop through ``anyio.from_thread.run`` and the thread waits until the
   cycle's ``send()`` has taken it: a slow client slows the app down instead
   of filling memory. The response head is sent with the first non-empty
   chunk (PEP 3333), so ``start_response`` may still be called again with
   ``exc_info`` until then.
5. Meanwhile a task waits for ``http.disconnect``. Once the client is gone
   the thread stops iterating at the next chunk; an app still queued for a
   thread is not called at all.

The iterable's ``close()`` is called in every case, in the worker thread.
Exceptions are not handled here: they escape to the ASGI cycle, whose one
error policy answers ``500`` (nothing sent yet) or aborts the stream, and
logs the traceback once.

Other scopes: a WebSocket handshake is refused (``403``), and a lifespan call
returns at once, which the server takes as "lifespan unsupported".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from types import TracebackType
from typing import Any, Final, Protocol, final
from urllib.parse import unquote_to_bytes

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ..errors import AppProtocolError, ClientDisconnected
from .types import ASGIReceive, ASGISend, Message, Scope

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_THREADS",
    "Environ",
    "FileWrapper",
    "StartResponse",
    "WSGIApp",
    "WSGIApplication",
    "build_environ",
]

log = logging.getLogger("tricorn.error")

DEFAULT_MAX_BODY_SIZE: Final = 16 * 1024 * 1024
"""``max_body_size`` outside tricorn's ``serve()`` (the ``wsgi_max_body_size`` default)."""
DEFAULT_MAX_THREADS: Final = 10
"""``max_threads`` outside tricorn's ``serve()`` (the ``wsgi_max_threads`` default)."""

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
OptExcInfo = ExcInfo | tuple[None, None, None]
Write = Callable[[bytes], None]


class StartResponse(Protocol):
    """PEP 3333's ``start_response(status, headers, exc_info=None)``."""

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> Write: ...


WSGIApplication = Callable[[Environ, StartResponse], Iterable[bytes]]

_TOO_LARGE_BODY = b"Payload Too Large"
_TOO_LARGE_HEADERS = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_TOO_LARGE_BODY)).encode()),
)
# Statuses whose responses have no body, so no content-length is added to them.
_NO_BODY_STATUSES = frozenset({204, 304})


@final
class WSGIApp:
    """An ASGI 3 application that serves the WSGI application ``app``.

    ``tricorn.serve()`` wraps WSGI apps in this by itself (see
    :func:`tricorn.asgi.app.wrap_app`); wrap one yourself to force WSGI mode
    when auto-detection cannot tell, or to serve a WSGI app from another
    ASGI server. ``None`` settings take the server's ``wsgi_max_body_size``
    and ``wsgi_max_threads`` under ``tricorn.serve()``, else
    :data:`DEFAULT_MAX_BODY_SIZE` and :data:`DEFAULT_MAX_THREADS`.

    :param app: the WSGI callable, ``app(environ, start_response)``.
    :param max_body_size: the largest request body read into ``wsgi.input``;
        a larger one is answered ``413`` without calling the app.
    :param max_threads: how many requests run in the app at once (worker
        threads); the rest wait in the event loop.
    :param multiprocess: the value of ``wsgi.multiprocess``.
    """

    __slots__ = ("_limiter", "app", "max_body_size", "max_threads", "multiprocess")

    def __init__(
        self,
        app: WSGIApplication,
        *,
        max_body_size: int | None = None,
        max_threads: int | None = None,
        multiprocess: bool | None = None,
    ) -> None:
        if max_body_size is not None and max_body_size < 1:
            raise ValueError(f"max_body_size must be at least 1: {max_body_size!r}")
        if max_threads is not None and max_threads < 1:
            raise ValueError(f"max_threads must be at least 1: {max_threads!r}")
        self.app = app
        self.max_body_size = max_body_size
        self.max_threads = max_threads
        self.multiprocess = multiprocess
        self._limiter: anyio.CapacityLimiter | None = None

    def with_defaults(self, *, max_body_size: int, max_threads: int, multiprocess: bool) -> WSGIApp:
        """A new adapter (with its own thread bound) where the settings left
        ``None`` take these values."""
        return WSGIApp(
            self.app,
            max_body_size=self.max_body_size if self.max_body_size is not None else max_body_size,
            max_threads=self.max_threads if self.max_threads is not None else max_threads,
            multiprocess=self.multiprocess if self.multiprocess is not None else multiprocess,
        )

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The thread bound. Made on first use, inside the event loop, so
        one adapter serves one event loop at a time."""
        if self._limiter is None:
            total = self.max_threads if self.max_threads is not None else DEFAULT_MAX_THREADS
            self._limiter = anyio.CapacityLimiter(total)
        return self._limiter

    def __repr__(self) -> str:
        return f"WSGIApp({self.app!r})"

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # before accept: 403
        elif kind != "lifespan":  # lifespan: returning means "unsupported"
            raise ValueError(f"WSGIApp cannot serve a {kind!r} scope")

    async def _http(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        response = _Response(send, head=scope["method"] == "HEAD")
        environ = build_environ(
            scope, body, multiprocess=bool(self.multiprocess), errors=response.errors
        )
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_disconnect, receive, response.gone)
            try:
                await anyio.to_thread.run_sync(
                    response.run, self.app, environ, limiter=self.limiter
                )
            except Exception as exc:
                # Raised outside the task group, so the cycle sees the app's
                # own exception (ClientDisconnected included), not a group.
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            # Cancelled while the thread ran: its failed send() surfaces here as
            # whatever the backend raised in the thread; cancellation wins.
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise failure

    async def _read_body(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> bytes | None:
        """The whole request body; ``None`` if the client left or the body is
        over the limit (then ``413`` has been answered)."""
        limit = self.max_body_size if self.max_body_size is not None else DEFAULT_MAX_BODY_SIZE
        declared = _declared_length(scope["headers"])
        if declared is not None and declared > limit:
            await _too_large(scope, send, limit)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # http.disconnect: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(scope, send, limit)
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _too_large(scope: Scope, send: ASGISend, limit: int) -> None:
    log.info(
        "request body over wsgi_max_body_size (%d bytes): 413 (%s %s)",
        limit,
        scope["method"],
        scope["path"],
    )
    await send({"type": "http.response.start", "status": 413, "headers": list(_TOO_LARGE_HEADERS)})
    await send({"type": "http.response.body", "body": _TOO_LARGE_BODY})


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _watch_disconnect(receive: ASGIReceive, gone: threading.Event) -> None:
    """Set ``gone`` once the client has left (or the response is complete:
    the cycle reports that as a disconnect too)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _send_all(send: ASGISend, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


class _Response:
    """The server side of PEP 3333 for one request: ``start_response``,
    ``write`` and the iteration, all run in the worker thread."""

    __slots__ = (
        "_head",
        "_send",
        "done",
        "errors",
        "gone",
        "headers",
        "remaining",
        "started",
        "status",
    )

    def __init__(self, send: ASGISend, *, head: bool = False) -> None:
        self._send = send
        self._head = head  # a HEAD request
        self.gone = threading.Event()  # set by the event loop: the client left
        self.errors = _ErrorStream()
        self.status: int | None = None  # from start_response
        self.headers: list[tuple[bytes, bytes]] = []
        self.remaining: int | None = None  # bytes the content-length still allows
        self.started = False  # http.response.start has been sent
        self.done = False  # the last body message has been sent

    def run(self, app: WSGIApplication, environ: Environ) -> None:
        """Call the app, send its response, close its iterable."""
        if self.gone.is_set():  # left while the request waited for a thread
            raise ClientDisconnected("the client left before the app was called")
        try:
            result = app(environ, self.start_response)
            try:
                self._iterate(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            self.errors.flush()

    def _iterate(self, result: Iterable[bytes]) -> None:
        if (
            isinstance(result, list | tuple)
            and len(result) == 1
            and type(result[0]) is bytes
            and self.status is not None
            and not self.started  # (nothing written with write() yet)
            and self.remaining is None
            and self.status not in _NO_BODY_STATUSES
            and not (self._head and not result[0])
        ):
            # One chunk (PEP 3333: the server may compute content-length
            # then): one write, and no chunked framing on HTTP/1.1. (An empty
            # answer to HEAD says nothing about the length of the GET's body.)
            self.remaining = len(result[0])
            self.headers.append((b"content-length", str(self.remaining).encode()))
        for chunk in result:
            if self.status is None:
                raise AppProtocolError("the WSGI app yielded data before calling start_response()")
            if self.gone.is_set():
                raise ClientDisconnected("the client has disconnected")
            self._body(chunk)
            if self.done:
                break  # content-length reached: PEP 3333 says stop iterating
        if self.status is None:
            raise AppProtocolError("the WSGI app returned without calling start_response()")
        if not self.done:
            self._body(b"", last=True)

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> Write:
        """PEP 3333's ``start_response``: may be called again with
        ``exc_info`` until the head is sent; after that it re-raises it."""
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AppProtocolError("start_response() called twice without exc_info")
        code = _status_code(status)
        self.headers, self.remaining = _response_headers(headers)
        self.status = code
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``: sends ``data`` before returning."""
        if self.status is None:
            raise AppProtocolError("write() called before start_response()")
        if self.done:
            if data:
                raise AppProtocolError("write() past the response's content-length")
            return
        self._body(data)

    def _body(self, data: object, *, last: bool = False) -> None:
        """Send ``data`` (with the head first, once); ``last`` ends the body.
        The thread waits until the event loop has sent it."""
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise AppProtocolError(
                    f"WSGI response data must be bytes, got {type(data).__name__}"
                )
            data = bytes(data)
        if not data and not last and self.remaining != 0:
            return  # an empty chunk sends nothing, not even the head
        if self.remaining is not None:
            if len(data) >= self.remaining:
                data, last = data[: self.remaining], True
            self.remaining -= len(data)
        messages: list[Message] = []
        if not self.started:
            self.started = True
            messages.append(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
        messages.append({"type": "http.response.body", "body": data, "more_body": not last})
        self.done = last
        anyio.from_thread.check_cancelled()  # the call was cancelled: stop the app here
        anyio.from_thread.run(_send_all, self._send, messages)


def _status_code(status: object) -> int:
    """The code of a PEP 3333 status line such as ``"200 OK"``."""
    if (
        not isinstance(status, str)
        or len(status) < 3
        or not (status[:3].isascii() and status[:3].isdigit())
        or status[3:4] not in ("", " ")
    ):
        raise AppProtocolError(f"WSGI status must look like '200 OK': {status!r}")
    return int(status[:3])


def _response_headers(headers: object) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """The app's ``(str, str)`` headers as lower-cased latin-1 bytes, and
    its content-length if it gave a valid one."""
    encoded: list[tuple[bytes, bytes]] = []
    length: int | None = None
    try:
        for name, value in headers:  # type: ignore[attr-defined]
            pair = (name.lower().encode("latin-1"), value.encode("latin-1"))
            if pair[0] == b"content-length" and pair[1].strip().isdigit():
                length = int(pair[1])
            encoded.append(pair)
    except (TypeError, ValueError, AttributeError, UnicodeEncodeError):
        raise AppProtocolError(
            f"WSGI headers must be a list of (str, str) pairs in latin-1: {headers!r}"
        ) from None
    return encoded, length


class _ErrorStream:
    """``wsgi.errors``: what the app writes goes to the ``tricorn.error``
    log, one record per write ending in a newline (or per flush), so a
    multi-line traceback stays one record."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[str] = []

    def write(self, text: str) -> int:
        self._pending.append(text)
        if text.endswith("\n"):
            self.flush()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        text = "".join(self._pending).rstrip("\n")
        self._pending.clear()
        if text:
            log.error("%s", text)


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object's content in blocks, and its
    ``close()`` called when the server closes the response (PEP 3333)."""

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.block_size):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def build_environ(
    scope: Scope, body: bytes, *, multiprocess: bool = False, errors: Any = None
) -> Environ:
    """The PEP 3333 environ of an ASGI ``http`` scope and its whole body.

    Text is "native strings" decoded as latin-1, as PEP 3333 has it for
    Python 3: ``PATH_INFO`` comes from the percent-decoded ``raw_path``
    bytes. ``SCRIPT_NAME`` is ``root_path``; it is cut off the front of
    ``PATH_INFO`` when the path starts with it (at a segment boundary),
    otherwise ``PATH_INFO`` is the whole path (a proxy that strips the prefix).
    Headers become ``HTTP_*`` keys (``-`` to ``_``, upper case, as Hypercorn
    and Uvicorn do); repeated ones are joined with ``", "`` (``"; "`` for
    cookies, RFC 9113 §8.2.3). A header whose name has an underscore is
    dropped, as Gunicorn and nginx do: ``X_Forwarded_For`` would otherwise
    land on the key of ``X-Forwarded-For`` a proxy vouches for. A body
    without a ``content-length`` (chunked) gets ``CONTENT_LENGTH``, since it
    has been read whole.

    :param errors: ``wsgi.errors``; by default a stream into the
        ``tricorn.error`` log.
    """
    root_path: str = scope.get("root_path", "")
    script_name = root_path.encode("utf-8")
    raw_path = scope.get("raw_path")
    path = unquote_to_bytes(raw_path) if raw_path is not None else scope["path"].encode()
    if script_name and (path == script_name or path.startswith(script_name + b"/")):
        path = path[len(script_name) :]
    scheme: str = scope.get("scheme", "http")
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": errors if errors is not None else _ErrorStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    for raw_name, raw_value in scope["headers"]:
        if raw_name.find(b"_") >= 0:  # (not ``in``: it makes and drops a TypeError first)
            continue
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        present = environ.get(key)
        if present is None:
            environ[key] = value
        elif key.startswith("HTTP_"):
            environ[key] = present + ("; " if key == "HTTP_COOKIE" else ", ") + value
    if body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    server = scope.get("server")
    if server is not None and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:  # a UNIX socket: what the client asked for
        host, _, port = environ.get("HTTP_HOST", "localhost").rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            host, port = environ.get("HTTP_HOST", "localhost"), ""
        environ["SERVER_NAME"] = host
        environ["SERVER_PORT"] = port or ("443" if scheme == "https" else "80")
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    return environ
