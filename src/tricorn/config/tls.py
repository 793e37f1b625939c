"""Server-side TLS contexts from the settings (stdlib :mod:`ssl` only).

Called once at startup and again on every certificate reload (SIGHUP), so it
reads the certificate files each time. Choices that are not settings:

* TLS 1.2 at least: RFC 9113 9.2 requires it for HTTP/2, and older versions
  are broken anyway.
* No TLS compression (RFC 9113 9.2.1; CRIME) and no renegotiation (a cheap
  way for a client to make the server burn CPU).

ALPN offers the configured ``alpn_protocols`` that the caller can serve, in
the configured order (the default: ``h2``, then ``http/1.1``).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .model import Config

__all__ = ["create_ssl_context", "offered_alpn"]


def offered_alpn(configured: Sequence[str], servable: Sequence[str]) -> list[str]:
    """The configured protocols the server can speak, in configured order."""
    return [protocol for protocol in configured if protocol in servable]


def create_ssl_context(config: Config, alpn: Sequence[str]) -> ssl.SSLContext:
    """Build the context for ``config``'s TLS binds.

    :param alpn: the ALPN protocols the caller can serve (e.g. ``("http/1.1",)``).
    :raises ConfigError: TLS is not configured; a certificate, key or CA file
        cannot be read or used (naming ``certfile``, ``keyfile`` or
        ``ca_certs``); the cipher string is unusable; or no configured ALPN
        protocol can be served.
    """
    if config.certfile is None or config.keyfile is None:
        raise ConfigError(
            "certfile", config.certfile, "a file path (TLS needs certfile and keyfile)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    _set_ciphers(context, config.ciphers)
    _load_chain(context, config.certfile, config.keyfile, config.keyfile_password)
    if config.ca_certs is not None:
        _load_ca(context, config.ca_certs)
    if config.verify_mode is not None:
        context.verify_mode = config.verify_mode
    if config.verify_flags is not None:
        context.verify_flags = config.verify_flags
    _set_alpn(context, config.alpn_protocols, alpn)
    return context


def _reason(exc: BaseException) -> str:
    """One line for an OSError or SSLError (OpenSSL's reason when it gives one)."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    if not isinstance(reason, str):
        last = exc.args[-1] if exc.args else exc
        reason = last if isinstance(last, str) else str(exc)
    return " ".join(reason.split())


def _set_ciphers(context: ssl.SSLContext, ciphers: str) -> None:
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise ConfigError("ciphers", ciphers, "an OpenSSL cipher string", _reason(exc)) from None


def _load_chain(context: ssl.SSLContext, certfile: str, keyfile: str, password: str | None) -> None:
    # Parse the certificate alone first, so a bad certificate is reported as
    # certfile and every later failure can be blamed on the key.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=certfile)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "certfile", certfile, "a readable PEM certificate", _reason(exc)
        ) from None
    try:
        # Without a password OpenSSL would prompt on the terminal for an
        # encrypted key; an empty one makes it fail instead.
        context.load_cert_chain(certfile, keyfile, password=password or (lambda: ""))
    except (OSError, ValueError) as exc:
        allowed = "a readable PEM private key matching certfile (encrypted: set keyfile_password)"
        raise ConfigError("keyfile", keyfile, allowed, _reason(exc)) from None


def _load_ca(context: ssl.SSLContext, ca_certs: str) -> None:
    try:
        context.load_verify_locations(cafile=ca_certs)
    except (OSError, ValueError) as exc:
        raise ConfigError("ca_certs", ca_certs, "a readable PEM CA bundle", _reason(exc)) from None


def _set_alpn(context: ssl.SSLContext, configured: Sequence[str], servable: Sequence[str]) -> None:
    offered = offered_alpn(configured, servable)
    if not offered:
        allowed = f"a list including one of {', '.join(servable)} (what this server speaks now)"
        raise ConfigError("alpn_protocols", list(configured), allowed)
    context.set_alpn_protocols(offered)
