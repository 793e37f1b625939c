"""The one exception hierarchy of tricorn.

Three families, kept apart because they are handled in different places:

* :class:`ConfigError` -- the user's configuration is wrong. Raised while
  loading or checking settings; only ``cli.main`` turns it into one line on
  stderr and exit status 2.
* :class:`ProtocolViolation` -- the *peer* broke the protocol. It carries its
  wire meaning (an HTTP status for HTTP/1.1, an error code for HTTP/2 and
  HTTP/3) and is converted into a response, RST or GOAWAY in exactly one place
  inside each protocol adapter.
* :class:`AppProtocolError` -- the *application* broke the ASGI contract
  (a message out of order, a bad field). Handled by the one app-error policy in
  ``tricorn.asgi``.

Nothing here does I/O.
"""

from __future__ import annotations

__all__ = [
    "AppProtocolError",
    "ClientDisconnected",
    "ConfigError",
    "ProtocolViolation",
    "StartupFailure",
    "TricornError",
]


class TricornError(Exception):
    """Base class of every error tricorn raises on purpose."""


class ConfigError(TricornError):
    """A setting has a bad value, or an unknown key was given.

    :param key: the setting's name as the user wrote it (TOML key, flag or
        environment variable).
    :param value: the offending value (``None`` for an unknown key).
    :param allowed: a short phrase saying what would be accepted.
    :param hint: an optional extra sentence, e.g. "did you mean 'bind'?".
    """

    def __init__(self, key: str, value: object, allowed: str, hint: str = "") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The one line printed on stderr before exiting with status 2."""
        text = f"config error: {self.key} = {self.value!r}: {self.allowed}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class StartupFailure(TricornError):
    """The server could not start: lifespan startup failed, a bind failed, the
    application could not be imported. The process exits non-zero."""


class ProtocolViolation(TricornError):
    """The peer sent something the protocol forbids.

    :param message: a short human-readable reason (also used as the body of
        an HTTP/1.1 error response).
    :param status: the HTTP status to answer with on HTTP/1.1 (400, 413, 414,
        431, 501, 505).
    :param error_code: the HTTP/2 or HTTP/3 error code for GOAWAY/RST.
    """

    def __init__(self, message: str, *, status: int = 400, error_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code


class AppProtocolError(TricornError):
    """The application broke the ASGI contract, e.g. sent
    ``http.response.body`` before ``http.response.start``."""


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI spec 2.4:
    "a server-specific subclass of OSError")."""
