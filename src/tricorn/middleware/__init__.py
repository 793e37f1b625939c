"""ASGI middlewares shipped with tricorn; plain ASGI, usable under any server.

* :class:`DispatcherMiddleware`: mount applications under path prefixes.
* :class:`HTTPToHTTPSRedirectMiddleware`: cleartext to HTTPS (308), with an
  optional ``Alt-Svc`` for HTTP/3.
* :class:`ProxyHeadersMiddleware`: trusted ``Forwarded`` / ``X-Forwarded-*``.
"""

from __future__ import annotations

from .dispatcher import DispatcherMiddleware
from .https_redirect import HTTPToHTTPSRedirectMiddleware
from .proxy_headers import ProxyHeadersMiddleware

__all__ = ["DispatcherMiddleware", "HTTPToHTTPSRedirectMiddleware", "ProxyHeadersMiddleware"]
