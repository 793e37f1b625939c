"""TLS contexts from the settings, checked with real in-memory handshakes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tricorn.config import Config
from tricorn.config.tls import create_ssl_context, offered_alpn
from tricorn.errors import ConfigError


@dataclass
class Files:
    ca: trustme.CA
    certfile: str
    keyfile: str
    ca_file: str


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    certfile, keyfile, ca_file = (str(directory / n) for n in ("c.pem", "k.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(ca_file)
    return Files(ca, certfile, keyfile, ca_file)


def tls_config(files: Files, **settings: object) -> Config:
    return Config(certfile=files.certfile, keyfile=files.keyfile).replace(**settings)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> ssl.SSLObject:
    """Run a client/server handshake over memory BIOs; return the server side."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    done: set[str] = set()
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if name not in done:
                try:
                    side.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
        c_in.write(s_out.read())
        s_in.write(c_out.read())
        if len(done) == 2:
            return server
    raise AssertionError("handshake did not finish")


def client_context(files: Files, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca_file)
    context.set_alpn_protocols(alpn)
    return context


def test_alpn_offers_only_configured_protocols_the_server_speaks(files: Files):
    context = create_ssl_context(tls_config(files), ["http/1.1"])
    server = handshake(context, client_context(files, ["h2", "http/1.1"]))
    assert server.selected_alpn_protocol() == "http/1.1"
    context = tls_config(files).create_ssl_context(("h2", "http/1.1"))
    server = handshake(context, client_context(files, ["h2", "http/1.1"]))
    assert server.selected_alpn_protocol() == "h2"


def test_offered_alpn_keeps_the_configured_order():
    assert offered_alpn(["h2", "http/1.1"], ["http/1.1"]) == ["http/1.1"]
    assert offered_alpn(["http/1.1", "h2"], ["h2", "http/1.1"]) == ["http/1.1", "h2"]


def test_no_servable_alpn_protocol_is_an_error(files: Files):
    with pytest.raises(ConfigError) as info:
        tls_config(files, alpn_protocols=["h2"]).create_ssl_context(["http/1.1"])
    assert info.value.key == "alpn_protocols"


def test_protocol_floor_and_options(files: Files):
    context = create_ssl_context(tls_config(files), ["http/1.1"])
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE


def test_a_tls_1_1_client_is_refused(files: Files):
    client = client_context(files, ["http/1.1"])
    with pytest.warns(DeprecationWarning, match="TLSv1_1"):  # the stdlib warns about TLS 1.1 itself
        client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    server_ctx = create_ssl_context(tls_config(files), ["http/1.1"])
    with pytest.raises(ssl.SSLError):
        handshake(server_ctx, client)


@pytest.mark.parametrize(
    ("name", "mode"),
    [("CERT_NONE", ssl.CERT_NONE), ("CERT_OPTIONAL", ssl.CERT_OPTIONAL),
     ("CERT_REQUIRED", ssl.CERT_REQUIRED)],
)  # fmt: skip
def test_verify_modes(files: Files, name: str, mode: ssl.VerifyMode):
    config = tls_config(files, verify_mode=name, ca_certs=files.ca_file)
    assert create_ssl_context(config, ["http/1.1"]).verify_mode == mode


def test_required_client_certificate(files: Files):
    config = tls_config(files, verify_mode="CERT_REQUIRED", ca_certs=files.ca_file)
    server_ctx = create_ssl_context(config, ["http/1.1"])
    with pytest.raises(ssl.SSLError):
        handshake(server_ctx, client_context(files, ["http/1.1"]))
    client = client_context(files, ["http/1.1"])
    files.ca.issue_cert("client@example.com").configure_cert(client)
    server = handshake(server_ctx, client)
    assert server.getpeercert() is not None


def test_verify_flags_are_applied(files: Files):
    config = tls_config(files, verify_flags="VERIFY_X509_STRICT|VERIFY_X509_TRUSTED_FIRST")
    context = create_ssl_context(config, ["http/1.1"])
    assert context.verify_flags & ssl.VERIFY_X509_STRICT


def test_unreadable_files_name_their_setting(files: Files, tmp_path: Path):
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError) as info:
        create_ssl_context(tls_config(files, certfile=missing), ["http/1.1"])
    assert (info.value.key, info.value.value) == ("certfile", missing)
    with pytest.raises(ConfigError) as info:
        create_ssl_context(tls_config(files, keyfile=missing), ["http/1.1"])
    assert (info.value.key, info.value.value) == ("keyfile", missing)
    with pytest.raises(ConfigError) as info:
        create_ssl_context(tls_config(files, ca_certs=missing), ["http/1.1"])
    assert info.value.key == "ca_certs"


def test_a_key_that_is_no_key_names_keyfile(files: Files):
    with pytest.raises(ConfigError) as info:
        create_ssl_context(tls_config(files, keyfile=files.ca_file), ["http/1.1"])
    assert info.value.key == "keyfile"
    assert "\n" not in info.value.line()


def test_encrypted_key_needs_its_password(files: Files, tmp_path: Path):
    key = serialization.load_pem_private_key(Path(files.keyfile).read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    keyfile = tmp_path / "enc.pem"
    keyfile.write_bytes(encrypted)
    ok = tls_config(files, keyfile=str(keyfile), keyfile_password="s3cret")
    create_ssl_context(ok, ["http/1.1"])
    for password in (None, "wrong"):
        with pytest.raises(ConfigError) as info:
            create_ssl_context(ok.replace(keyfile_password=password), ["http/1.1"])
        assert info.value.key == "keyfile"


def test_bad_cipher_string(files: Files):
    with pytest.raises(ConfigError) as info:
        create_ssl_context(tls_config(files, ciphers="NOT-A-CIPHER"), ["http/1.1"])
    assert (info.value.key, info.value.value) == ("ciphers", "NOT-A-CIPHER")


def test_without_tls_settings_there_is_no_context():
    with pytest.raises(ConfigError, match="certfile"):
        Config().create_ssl_context(["http/1.1"])
