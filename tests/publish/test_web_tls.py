"""The status page over TLS with the same certificate files as the broker connection.

Here (not in tests/web/) because it uses this folder's test PKI: the CA, the server
certificate for 127.0.0.1 and the client certificate the MQTT tests use, so the test shows
one set of PEM files serving both. A real WebServer on a free loopback port, real TLS.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from agent.config import ConfigError, WebSettings, load_text
from agent.web.server import Response, WebServer


async def _get(port: int, ctx: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        writer.write(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


def _client(pki: dict, cert: bool = False, ca: str = "ca") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki[ca])
    if cert:
        ctx.load_cert_chain(pki["client_cert"], pki["client_key"])
    return ctx


def test_tls_page_with_the_broker_certificates(pki, arun) -> None:
    async def main() -> None:
        s = WebSettings("127.0.0.1", 0, tls=True, cert_file=pki["server_cert"],
                        key_file=pki["server_key"], header_timeout_s=2.0)
        server = WebServer(s, lambda path: Response(200, "hello %s\n" % path))
        await server.start()
        try:
            resp = await _get(server.port, _client(pki))
            assert resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(b"hello /x\n")
            # A client that trusts another CA refuses the server; plain HTTP gets nothing.
            with pytest.raises(ssl.SSLCertVerificationError):
                await _get(server.port, _client(pki, ca="rogue_ca"))
            assert not (await _get(server.port, None)).startswith(b"HTTP/1.1 200")
        finally:
            await server.close()

    arun(main())


def test_tls_with_ca_file_requires_a_client_certificate(pki, arun) -> None:
    async def main() -> None:
        s = WebSettings("127.0.0.1", 0, tls=True, cert_file=pki["server_cert"],
                        key_file=pki["server_key"], ca_file=pki["ca"], header_timeout_s=2.0)
        server = WebServer(s, lambda path: Response(200, "ok\n"))
        await server.start()
        try:
            assert (await _get(server.port, _client(pki, cert=True))).startswith(
                b"HTTP/1.1 200 ")
            try:
                resp = await _get(server.port, _client(pki, cert=False))
            except (ssl.SSLError, ConnectionError):
                resp = b""
            assert not resp.startswith(b"HTTP/1.1 200")
        finally:
            await server.close()

    arun(main())


def test_tls_config_takes_the_same_keys_as_the_broker(pki, tmp_path) -> None:
    base = ('site = "s"\ngateway = "g"\n[[buses]]\nname = "b"\nkind = "tcp"\n'
            'host = "127.0.0.1"\n[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm120"\n')
    web = load_text(base + '[web]\ntls = true\ncert_file = %r\nkey_file = %r\nca_file = %r\n'
                    % (pki["server_cert"], pki["server_key"], pki["ca"]), "t").web
    assert web is not None and web.tls and web.ca_file == pki["ca"]
    with pytest.raises(ConfigError, match="cert_file: tls = true needs"):
        load_text(base + "[web]\ntls = true\n", "t")
    with pytest.raises(ConfigError, match="does not exist"):
        load_text(base + '[web]\ntls = true\ncert_file = "nope.pem"\nkey_file = "k"\n', "t",
                  tmp_path)
