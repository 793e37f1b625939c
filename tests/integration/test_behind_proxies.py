"""tricorn behind real HAProxy and nginx processes, configured as
docs/deployment.md and examples/deploy/ say, all on 127.0.0.1 ports.

The client connects from 127.0.0.2, the proxies reach tricorn from
127.0.0.1: the app seeing 127.0.0.2 proves that the client's address came
through (PROXY protocol v1/v2, or X-Forwarded-For from a trusted peer), and
a client's own forwarding headers must not change that. Health checks, HTTP/2
(client side, and HAProxy to tricorn) and WebSockets go through the proxies
too. The example files themselves are checked by ``haproxy -c`` and
``nginx -t``.

Skipped when a binary is missing (.ci/run installs haproxy, nginx and
libnginx-mod-stream). Every process is started on free ports, bounded by
timeouts and killed by its pid in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from ..cli.test_cli_serve import REPO, STOP_TIMEOUT, Child, free_port, tricorn, write_app
from ..conftest import TLSFiles

DEPLOY = REPO / "examples" / "deploy"
CLIENT = "127.0.0.2"  # the client's source address; the proxies connect from 127.0.0.1
SPOOFED = "203.0.113.66"
TIMEOUT = 10.0


def find_binary(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (not on a non-root PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    return found


HAPROXY = find_binary("haproxy")
NGINX = find_binary("nginx")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

# Answers with what the scope says about the client; WebSockets get the
# same as their first message, then an echo.
SCOPE_APP = """
    import json

    def described(scope):
        forwarded_for = [v.decode() for k, v in scope["headers"] if k == b"x-forwarded-for"]
        return json.dumps({
            "client": scope["client"],
            "server": scope["server"],
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "x_forwarded_for": ", ".join(forwarded_for),
        })

    async def app(scope, receive, send):
        if scope["type"] == "http":
            body = described(scope).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": described(scope)})
            message = await receive()
            if message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message.get("text") or ""})
                await send({"type": "websocket.close", "code": 1000})
"""


@contextmanager
def tricorn_with(tmp_path: Path, settings: str) -> Iterator[tuple[Child, int]]:
    """``python -m tricorn -c FILE`` serving SCOPE_APP on a free port, with
    ``settings`` (TOML lines) added; the child and its port."""
    env = write_app(tmp_path, "scope_app", SCOPE_APP)
    port = free_port()
    config = tmp_path / "tricorn.toml"
    config.write_text(
        f'app = "scope_app:app"\nbind = ["127.0.0.1:{port}"]\n' + textwrap.dedent(settings)
    )
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        yield child, port


@contextmanager
def proxy(tmp_path: Path, name: str, argv: list[str], port: int) -> Iterator[Child]:
    """Run a proxy in the foreground until the block ends; wait until
    ``port`` accepts connections."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    child = Child(proc, out, err)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}: {child.stderr()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not listen on {port}: {child.stderr()}")
                time.sleep(0.05)
            else:
                break
        yield child
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def from_client(port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` from 127.0.0.2."""
    return socket.create_connection(
        ("127.0.0.1", port), timeout=TIMEOUT, source_address=(CLIENT, 0)
    )


def exchange(sock: socket.socket, requests: int = 1, headers: str = "") -> list[dict[str, Any]]:
    """``requests`` GETs, one after the other on ``sock`` (keep-alive; the
    last says Connection: close); the JSON bodies."""
    answers = []
    # (closed even when an assertion fails: an open reader keeps the
    # socket's descriptor past its close, a ResourceWarning in a later test)
    with sock.makefile("rb") as reader:
        for i in range(requests):
            close = "Connection: close\r\n" if i == requests - 1 else ""
            sock.sendall(f"GET / HTTP/1.1\r\nHost: localhost\r\n{headers}{close}\r\n".encode())
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = None
            chunked = False
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value:
                    chunked = True
            if chunked:
                body = b""
                while (size := int(reader.readline().split(b";")[0], 16)) > 0:
                    body += reader.read(size)
                    reader.readline()
                reader.readline()
            else:
                assert length is not None
                body = reader.read(length)
            answers.append(json.loads(body))
    return answers


SPOOFING = f"X-Forwarded-For: {SPOOFED}\r\nForwarded: for={SPOOFED}\r\n"


def websocket_scope(port: int, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Open a WebSocket from 127.0.0.2 through the proxy on ``port``, check the
    echo; the scope the app described."""
    scheme = "ws" if context is None else "wss"
    with ws_connect(
        f"{scheme}://localhost:{port}/chat",
        sock=from_client(port),
        ssl=context,
        proxy=None,
        open_timeout=TIMEOUT,
        additional_headers={"Forwarded": f"for={SPOOFED}"},
    ) as ws:
        scope: dict[str, Any] = json.loads(ws.recv(timeout=TIMEOUT))
        ws.send("ping")
        assert ws.recv(timeout=TIMEOUT) == "ping"
    return scope


def trusting(tls_files: TLSFiles) -> ssl.SSLContext:
    """A client context that trusts the test CA (a fresh one: httpx sets
    ALPN on the context it is given)."""
    return ssl.create_default_context(cafile=tls_files.ca_file)


def h2_client(context: ssl.SSLContext) -> httpx.Client:
    """httpx with HTTP/2, connecting from 127.0.0.2."""
    transport = httpx.HTTPTransport(verify=context, http2=True, local_address=CLIENT)
    return httpx.Client(transport=transport, timeout=TIMEOUT)


# --- HAProxy ---------------------------------------------------------------------------------


def haproxy_config(tmp_path: Path, body: str) -> tuple[Path, Path]:
    """A configuration with a stats socket (to read health-check results)."""
    stats = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(f"""\
        global
            stats socket {stats} mode 600 level admin
        defaults
            timeout connect 5s
            timeout client 30s
            timeout server 30s
            timeout tunnel 1h
        """)
        + textwrap.dedent(body)
    )
    return config, stats


def check_status(stats: Path) -> dict[str, str]:
    """Each server's last health-check result and state (``L7OK UP``,
    ``L4CON DOWN``, ``L7OK DOWN 1/2`` while a server comes back up, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {
        row["svname"]: f"{row['check_status']} {row['status']}"
        for row in rows
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_healthy(stats: Path, server: str = "t1") -> None:
    """Until the last check passed and HAProxy counts the server up: under
    load a check can time out (its timeout is ``inter``, 100 ms), and a
    server marked down needs ``rise`` (2) passed checks before HAProxy
    sends it requests again (a 503 meanwhile). HAProxy may make its stats
    socket a moment after it listens on the front port: until then the
    status is that error."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            status = check_status(stats).get(server)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            status = f"no stats socket yet ({exc.strerror})"
        if status == "L7OK UP":
            return
        if time.monotonic() > deadline:
            pytest.fail(f"HAProxy's check of {server}: {status}")
        time.sleep(0.1)


@needs_haproxy
def test_haproxy_tcp_send_proxy_v2_to_tls(tmp_path: Path, tls_files: TLSFiles) -> None:
    """examples/deploy/haproxy-tcp.cfg: layer 4, TLS passed through, PROXY v2;
    HTTPS health checks (PROXY LOCAL) pass; h2 by ALPN end to end."""
    assert HAPROXY is not None
    settings = f"""\
        certfile = "{tls_files.certfile}"
        keyfile = "{tls_files.keyfile}"
        proxy_protocol = true
        """
    with tricorn_with(tmp_path, settings) as (server, port):
        front = free_port()
        config, stats = haproxy_config(
            tmp_path,
            f"""\
            frontend tls
                mode tcp
                bind 127.0.0.1:{front}
                default_backend tricorn
            backend tricorn
                mode tcp
                option httpchk GET /healthz
                http-check expect status 200
                server t1 127.0.0.1:{port} send-proxy-v2 check check-ssl verify none inter 100ms
            """,
        )
        with proxy(tmp_path, "haproxy", [HAPROXY, "-db", "-f", str(config)], front):
            wait_healthy(stats)
            context = trusting(tls_files)
            with from_client(front) as raw:
                client_port = raw.getsockname()[1]
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    (scope,) = exchange(tls, headers=SPOOFING)
            assert scope["client"] == [CLIENT, client_port]
            assert scope["server"] == ["127.0.0.1", front]
            assert scope["scheme"] == "https"
            with h2_client(context) as client:
                response = client.get(f"https://localhost:{front}/")
            assert response.http_version == "HTTP/2"
            assert response.json()["client"][0] == CLIENT
            assert response.json()["http_version"] == "2"
            assert websocket_scope(front, trusting(tls_files))["client"][0] == CLIENT
        assert server.terminate() == 0, server.stderr()


@needs_haproxy
@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2-to-tricorn"])
def test_haproxy_http_forwardfor(tmp_path: Path, h2: bool) -> None:
    """examples/deploy/haproxy-http.cfg: HAProxy parses HTTP and adds
    X-Forwarded-For, tricorn trusts 127.0.0.1; a client's own forwarding
    headers change nothing. With ``proto h2`` HAProxy speaks cleartext
    HTTP/2 (prior knowledge) to tricorn."""
    assert HAPROXY is not None
    with tricorn_with(tmp_path, 'forwarded_allow_ips = ["127.0.0.1"]\n') as (server, port):
        front = free_port()
        config, stats = haproxy_config(
            tmp_path,
            f"""\
            frontend public
                mode http
                bind 127.0.0.1:{front}
                http-request del-header Forwarded
                option forwardfor
                default_backend tricorn
            backend tricorn
                mode http
                option httpchk GET /healthz
                http-check expect status 200
                server t1 127.0.0.1:{port} check inter 100ms{" proto h2" if h2 else ""}
            """,
        )
        with proxy(tmp_path, "haproxy", [HAPROXY, "-db", "-f", str(config)], front):
            wait_healthy(stats)
            with from_client(front) as sock:
                scopes = exchange(sock, requests=3, headers=SPOOFING)
            assert [scope["client"][0] for scope in scopes] == [CLIENT] * 3
            assert {scope["http_version"] for scope in scopes} == {"2" if h2 else "1.1"}
            assert SPOOFED in scopes[0]["x_forwarded_for"]  # it was there, and not believed
            if not h2:  # (HAProxy 2.6 has no WebSockets over HTTP/2 to a server)
                ws = websocket_scope(front)
                assert (ws["client"][0], ws["scheme"]) == (CLIENT, "ws")
        assert server.terminate() == 0, server.stderr()


@needs_haproxy
@pytest.mark.parametrize("name", ["haproxy-http.cfg", "haproxy-tcp.cfg"])
def test_example_haproxy_config_is_valid(tmp_path: Path, tls_files: TLSFiles, name: str) -> None:
    assert HAPROXY is not None
    pem = tmp_path / "site.pem"
    pem.write_text(Path(tls_files.certfile).read_text() + Path(tls_files.keyfile).read_text())
    text = (DEPLOY / name).read_text().replace("/etc/haproxy/tls/site.pem", str(pem))
    config = tmp_path / name
    config.write_text(text)
    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout + result.stderr


# --- nginx -----------------------------------------------------------------------------------


def stream_module() -> str | None:
    """The ``load_module`` line the stream module needs ("" when built in);
    None when this nginx has no stream module."""
    assert NGINX is not None
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=30).stderr
    if re.search(r"--with-stream(\s|$)", built):
        return ""
    if "--with-stream=dynamic" not in built:
        return None
    match = re.search(r"--modules-path=(\S+)", built)
    directory = Path(match.group(1) if match else "/usr/lib/nginx/modules")
    module = directory / "ngx_stream_module.so"
    return f"load_module {module};" if module.exists() else None


def nginx_config(tmp_path: Path, *, http: str = "", stream: str = "") -> Path:
    """A complete nginx.conf in the foreground, one process, every file in
    ``tmp_path``."""
    module = ""
    if stream:
        found = stream_module()
        if found is None:
            pytest.skip("this nginx has no stream module (Debian: libnginx-mod-stream)")
        module = found
    config = tmp_path / "nginx.conf"
    temp = "\n".join(
        f"{kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config.write_text(
        f"{module}\n"
        "daemon off;\nmaster_process off;\n"
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        + (f"http {{\naccess_log {tmp_path / 'access.log'};\n{temp}\n{http}\n}}\n" if http else "")
        + (f"stream {{\n{stream}\n}}\n" if stream else "")
    )
    return config


def nginx_argv(tmp_path: Path, config: Path) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-c", str(config), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]


@needs_nginx
def test_nginx_http_proxy_with_forwarded_headers(tmp_path: Path, tls_files: TLSFiles) -> None:
    """examples/deploy/nginx-site.conf: nginx terminates TLS and HTTP/2,
    proxies HTTP/1.1 with keep-alive and WebSockets, sets X-Forwarded-*."""
    settings = 'forwarded_allow_ips = ["127.0.0.1"]\nkeep_alive_timeout = 30\n'
    with tricorn_with(tmp_path, settings) as (server, port):
        front = free_port()
        config = nginx_config(
            tmp_path,
            http=f"""
            upstream tricorn {{
                server 127.0.0.1:{port};
                keepalive 8;
                keepalive_timeout 20s;
            }}
            map $http_upgrade $connection_upgrade {{
                default upgrade;
                ''      '';
            }}
            server {{
                listen 127.0.0.1:{front} ssl http2;
                ssl_certificate {tls_files.certfile};
                ssl_certificate_key {tls_files.keyfile};
                location / {{
                    proxy_pass http://tricorn;
                    proxy_http_version 1.1;
                    proxy_set_header Host $host;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $connection_upgrade;
                    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    proxy_set_header X-Forwarded-Proto $scheme;
                    proxy_set_header Forwarded "";
                }}
            }}
            """,
        )
        with proxy(tmp_path, "nginx", nginx_argv(tmp_path, config), front):
            context = trusting(tls_files)
            with h2_client(context) as client:
                spoofing = {"X-Forwarded-For": SPOOFED, "Forwarded": f"for={SPOOFED}"}
                responses = [
                    client.get(f"https://localhost:{front}/", headers=spoofing) for _ in range(3)
                ]
            for response in responses:
                assert response.http_version == "HTTP/2"  # client to nginx
                scope = response.json()
                assert (scope["client"][0], scope["scheme"]) == (CLIENT, "https")
                assert scope["http_version"] == "1.1"  # nginx to tricorn
            ws = websocket_scope(front, trusting(tls_files))
            assert (ws["client"][0], ws["scheme"]) == (CLIENT, "wss")
        assert server.terminate() == 0, server.stderr()


@needs_nginx
def test_nginx_stream_proxy_protocol_v1_to_tls(tmp_path: Path, tls_files: TLSFiles) -> None:
    """examples/deploy/nginx-stream.conf: layer 4, TLS passed through,
    ``proxy_protocol on`` (v1)."""
    settings = f"""\
        certfile = "{tls_files.certfile}"
        keyfile = "{tls_files.keyfile}"
        proxy_protocol = true
        """
    with tricorn_with(tmp_path, settings) as (server, port):
        front = free_port()
        config = nginx_config(
            tmp_path,
            stream=f"""
            server {{
                listen 127.0.0.1:{front};
                proxy_pass 127.0.0.1:{port};
                proxy_protocol on;
            }}
            """,
        )
        with proxy(tmp_path, "nginx", nginx_argv(tmp_path, config), front):
            context = trusting(tls_files)
            with from_client(front) as raw:
                client_port = raw.getsockname()[1]
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    (scope,) = exchange(tls, headers=SPOOFING)
            assert scope["client"] == [CLIENT, client_port]
            assert scope["server"] == ["127.0.0.1", front]
            with h2_client(context) as client:
                response = client.get(f"https://localhost:{front}/")
            assert (response.http_version, response.json()["client"][0]) == ("HTTP/2", CLIENT)
        assert server.terminate() == 0, server.stderr()


@needs_nginx
def test_example_nginx_configs_are_valid(tmp_path: Path, tls_files: TLSFiles) -> None:
    """nginx-site.conf in http {}, nginx-stream.conf in the main context."""
    module = stream_module()
    if module is None:
        pytest.skip("this nginx has no stream module (Debian: libnginx-mod-stream)")
    site = (DEPLOY / "nginx-site.conf").read_text()
    site = site.replace("/etc/nginx/tls/fullchain.pem", tls_files.certfile)
    site = site.replace("/etc/nginx/tls/privkey.pem", tls_files.keyfile)
    (tmp_path / "site.conf").write_text(site)
    shutil.copy(DEPLOY / "nginx-stream.conf", tmp_path / "stream.conf")
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"{module}\npid {tmp_path / 'nginx.pid'};\n"
        "events { worker_connections 64; }\n"
        f"http {{\ninclude {tmp_path / 'site.conf'};\n}}\n"
        f"include {tmp_path / 'stream.conf'};\n"
    )
    result = subprocess.run(
        [*nginx_argv(tmp_path, config), "-t"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr
