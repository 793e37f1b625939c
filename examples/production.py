"""The application of ``config/production.toml``: the site, with cleartext
requests (the ``insecure_bind`` on port 80) redirected to HTTPS and HTTP/3
advertised on the redirect.

Replace ``site`` with your application; keep the wrapping.
"""

from __future__ import annotations

from tricorn.middleware import HTTPToHTTPSRedirectMiddleware

from .hello import app as site

app = HTTPToHTTPSRedirectMiddleware(site, alt_svc='h3=":443"; ma=86400')
